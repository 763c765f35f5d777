"""bot.engine.DockerEngine against the real private engine of tests/stack.

Seeds are read, never changed: tests that remove, prune or pull work on their
own uniquely named images (``make_image``), and everything they create is
removed in teardown even when they fail. Containers are only ever created
(never started), with ``--network none``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import socket
import tarfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.engine import DockerEngine
from handlers import errors as E
from handlers.ports import ContainerRef, ImageSummary, PullEvent, SearchResult
from handlers.replies import Status
from tests.fakes.registry_image import image_documents, sha

pytestmark = pytest.mark.integration

DAEMON = "Error response from daemon: "


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
async def engine(stack):
    e = DockerEngine(stack.docker_host, timeout=60)
    try:
        yield e
    finally:
        await e.close()
        assert e.active_pulls == 0
        assert not any(t.is_alive() for t in e._executor._threads)


@pytest.fixture(scope="session")
def api(stack):
    """A raw docker-py client for set-up steps the docker CLI has no verb for."""
    import docker

    client = docker.APIClient(base_url=stack.docker_host, version="auto", timeout=120)
    try:
        yield client
    finally:
        client.close()


def uniq() -> str:
    return uuid.uuid4().hex[:10]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def image_exists(stack, ref: str) -> bool:
    return stack.docker("image", "inspect", ref, check=False).returncode == 0


async def collect(it) -> list[PullEvent]:
    return [ev async for ev in it]


def random_tar(name: str, size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.mode = 0o644
        tf.addfile(ti, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


def commit_layer(api, make_image, base_ref: str, repo: str, tag: str, size: int) -> str:
    """A child of ``base_ref`` with one more layer (a random file), made with
    create + put_archive + commit: the container is never started. Returns its ID."""
    name = f"dockhand-test-commit-{uniq()}"
    make_image.containers.append(name)
    cid = api.create_container(base_ref, command=["/bin/true"], name=name,
                               host_config=api.create_host_config(network_mode="none"))["Id"]
    assert api.put_archive(cid, "/", random_tar(f"layer-{uniq()}.bin", size))
    make_image.refs.append(f"{repo}:{tag}")
    image_id = api.commit(cid, repository=repo, tag=tag)["Id"]
    make_image.ids.append(image_id)
    api.remove_container(cid, force=True)
    return image_id


def push(stack, make_image, ref: str) -> None:
    make_image.pushed.append(ref)
    stack.docker("push", ref)


# --- a registry of our own, for failures the real one will not produce ---------------




class FakeRegistry:
    """A minimal registry v2 on 127.0.0.1 serving one image, with a fault.

    mode "auth":    every request answers 401 with ``WWW-Authenticate: Basic``;
    mode "corrupt": the layer blob is served with one byte changed;
    mode "stall":   the first 256 KiB of the layer, then a byte every 0.5 s;
    mode "hang":    no answer at all to the manifest request (until closed).
    """

    def __init__(self, mode: str, arch: str, layer_size: int = 2 * 1024 * 1024):
        self.mode = mode
        self.release = threading.Event()
        self.requests: list[str] = []
        self.blob_aborted = threading.Event()
        self.hanging = threading.Event()
        layer_tar = random_tar("payload.bin", layer_size)
        self.layer = gzip.compress(layer_tar, compresslevel=1)
        self.config, self.manifest = image_documents(layer_tar, self.layer, arch, "fake registry")
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", ctype="application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                reg.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?", 1)[0]
                if reg.mode == "auth":
                    body = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                                   "message": "authentication required"}]}).encode()
                    self._send(401, body, headers={"WWW-Authenticate": 'Basic realm="x"'})
                elif path in ("/v2", "/v2/"):
                    self._send(200, b"{}")
                elif "/manifests/" in path:
                    if reg.mode == "hang":  # the engine gets no answer, so neither do we
                        reg.hanging.set()
                        reg.release.wait(60)
                        return
                    self._send(200, reg.manifest, "application/vnd.docker.distribution.manifest.v2+json",
                               {"Docker-Content-Digest": sha(reg.manifest)})
                elif path.endswith("/blobs/" + sha(reg.config)):
                    self._send(200, reg.config, "application/octet-stream",
                               {"Docker-Content-Digest": sha(reg.config)})
                elif path.endswith("/blobs/" + sha(reg.layer)):
                    self._layer()
                else:
                    self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')

            def _layer(self):
                data = reg.layer
                if reg.mode == "corrupt":
                    mid = len(data) // 2
                    data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
                if self.command == "HEAD" or reg.mode != "stall":
                    self._send(200, data, "application/octet-stream")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data[:256 * 1024])
                    self.wfile.flush()
                    # trickle a byte now and then: the daemon notices a closed peer
                    for i in range(256 * 1024, len(data)):
                        if reg.release.wait(0.5):
                            return
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                except OSError:
                    reg.blob_aborted.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_registry(stack, engine_arch):
    made = []

    def start(mode: str, **kw) -> FakeRegistry:
        reg = FakeRegistry(mode, engine_arch, **kw).__enter__()
        made.append(reg)
        return reg

    try:
        yield start
    finally:
        for reg in made:
            reg.__exit__(None, None, None)
            stack.docker("rmi", "-f", f"{reg.address}/fake/image:latest", check=False)


@pytest.fixture(scope="session")
def engine_arch(stack):
    return stack.docker("version", "-f", "{{.Server.Arch}}").stdout.strip() or "amd64"


# --------------------------------------------------------------------------
# info, version, inspect


async def test_info_and_version(engine, stack):
    assert engine.host == stack.docker_host
    info = await engine.info()
    assert info["ServerVersion"].startswith("20.10")
    assert info["Images"] >= 7
    version = await engine.version()
    assert version["ApiVersion"] == "1.41"
    assert version["Version"] == info["ServerVersion"]


async def test_inspect_image(engine, stack):
    seed = stack.seeds["hello_world"]
    raw = await engine.inspect_image(seed["ref"])
    assert raw["Id"] == seed["id"]
    assert seed["ref"] in raw["RepoTags"]
    # by short ID too
    raw = await engine.inspect_image(seed["id"][7:19])
    assert raw["Id"] == seed["id"]


async def test_inspect_missing_image(engine, stack):
    ref = f"{stack.registry}/dockhand-test/absent-{uniq()}"
    with pytest.raises(E.ImageNotFound) as info:
        await engine.inspect_image(ref)
    # the engine says "no such image: R/x: No such image: R/x:latest"; we keep the last part
    assert info.value.message == f"{DAEMON}No such image: {ref}:latest"
    assert info.value.status is Status.FAILED


async def test_inspect_invalid_reference(engine):
    with pytest.raises(E.InvalidArgument) as info:
        await engine.inspect_image("UPPER:case")
    assert "invalid reference format" in info.value.message
    assert info.value.message.startswith(DAEMON)


# --------------------------------------------------------------------------
# list_images


def tags_of(images: list[ImageSummary]) -> set[str]:
    return {t for i in images for t in i.repo_tags}


async def test_list_images_default(engine, stack):
    images = await engine.list_images()
    assert all(isinstance(i, ImageSummary) for i in images)
    assert set(stack.state["seed_images"]) <= tags_of(images)
    by_id = {i.id: i for i in images}
    big = by_id[stack.seeds["big"]["id"]]
    assert big.size >= 20 * 1024 * 1024
    assert big.created > 1_600_000_000
    assert big.containers == -1  # this engine does not count them
    assert any(d.startswith(f"{stack.registry}/dockhand/big@sha256:") for d in big.repo_digests)
    busybox = by_id[stack.seeds["busybox_136"]["id"]]
    assert {stack.seed("busybox_136"), stack.seed("busybox_latest")} <= set(busybox.repo_tags)
    dangling = by_id[stack.state["dangling_id"]]
    assert dangling.repo_tags == () and dangling.repo_digests == ()  # no "<none>:<none>"


async def test_list_filter_reference(engine, stack):
    images = await engine.list_images(filters={"reference": [f"{stack.registry}/dockhand/busybox"]})
    assert tags_of(images) == {stack.seed("busybox_135"), stack.seed("busybox_136"), stack.seed("busybox_latest")}
    assert len(images) == 2
    images = await engine.list_images(filters={"reference": [f"{stack.registry}/dockhand/busybox:1.3*"]})
    assert {i.id for i in images} == {stack.seeds["busybox_135"]["id"], stack.seeds["busybox_136"]["id"]}


async def test_list_filter_dangling(engine, stack):
    dangling = await engine.list_images(filters={"dangling": ["true"]})
    assert stack.state["dangling_id"] in {i.id for i in dangling}
    assert all(i.repo_tags == () for i in dangling)
    tagged = await engine.list_images(filters={"dangling": ["false"]})
    assert stack.state["dangling_id"] not in {i.id for i in tagged}
    assert set(stack.state["seed_images"]) <= tags_of(tagged)


async def test_list_filter_label(engine, stack):
    images = await engine.list_images(filters={"label": [stack.state["seed_label"]]})
    assert [i.id for i in images] == [stack.seeds["labelled"]["id"]]
    assert images[0].labels == {"org.dockhand.seed": "labelled"}
    images = await engine.list_images(filters={"label": ["org.dockhand.seed"]})  # key only
    assert stack.seeds["labelled"]["id"] in {i.id for i in images}


async def test_list_filter_before_since(engine, make_image):
    label = f"dockhand.test={uniq()}"
    k, v = label.split("=")
    first = make_image(labels={k: v})
    time.sleep(1.1)  # Created is compared; keep the two apart
    second = make_image(labels={k: v})
    mine = {"label": [label]}
    both = await engine.list_images(filters=mine)
    assert {i.id for i in both} == {first.id, second.id}
    since = await engine.list_images(filters={**mine, "since": [first.ref]})
    assert [i.id for i in since] == [second.id]
    before = await engine.list_images(filters={**mine, "before": [second.ref]})
    assert [i.id for i in before] == [first.id]
    # by ID as well
    before = await engine.list_images(filters={**mine, "before": [second.id]})
    assert [i.id for i in before] == [first.id]


async def test_list_all_shows_untagged_parents(engine, stack, api, make_image):
    base = make_image()
    child_repo = f"{stack.registry}/dockhand-test/child-{uniq()}"
    child_id = commit_layer(api, make_image, base.ref, child_repo, "latest", 1024)
    stack.docker("rmi", base.ref)  # untags only: the child still needs it
    assert image_exists(stack, base.id)
    default = {i.id for i in await engine.list_images()}
    everything = await engine.list_images(all=True)
    assert child_id in default and base.id not in default
    assert base.id in {i.id for i in everything}
    assert default < {i.id for i in everything}
    parent = next(i for i in everything if i.id == base.id)
    assert parent.repo_tags == ()
    child = next(i for i in everything if i.id == child_id)
    assert child.parent_id == base.id
    # an untagged parent is not dangling
    assert base.id not in {i.id for i in await engine.list_images(filters={"dangling": ["true"]})}


async def test_list_bad_filter_is_invalid_argument(engine):
    with pytest.raises(E.InvalidArgument) as info:
        await engine.list_images(filters={"bogus": ["x"]})
    assert info.value.message == f"{DAEMON}Invalid filter 'bogus'"
    assert info.value.status is Status.USAGE
    with pytest.raises(E.InvalidArgument) as info:
        await engine.list_images(filters={"dangling": ["maybe"]})
    assert info.value.message == f"{DAEMON}Invalid filter 'dangling=[maybe]'"


async def test_list_before_a_missing_image(engine, stack):
    ref = f"{stack.registry}/dockhand-test/absent-{uniq()}:x"
    with pytest.raises(E.ImageNotFound) as info:
        await engine.list_images(filters={"before": [ref]})
    assert info.value.message == f"{DAEMON}No such image: {ref}"


# --------------------------------------------------------------------------
# remove_image


async def test_remove_untags_then_deletes(engine, stack, make_image):
    img = make_image(extra_tags=["second"])
    result = await engine.remove_image(img.refs[1])
    assert result.untagged == (img.refs[1],) and result.deleted == ()
    assert image_exists(stack, img.id)
    result = await engine.remove_image(img.ref)
    assert result.untagged == (img.ref,)
    assert result.deleted[0] == img.id
    assert len(result.deleted) >= 2  # the image and its layer
    assert not image_exists(stack, img.id)


async def test_remove_by_id_with_two_tags_is_a_conflict(engine, stack, make_image):
    img = make_image(extra_tags=["second"])
    with pytest.raises(E.Conflict) as info:
        await engine.remove_image(img.id)
    short = img.id[7:19]
    assert info.value.message == (f"{DAEMON}conflict: unable to delete {short} (must be forced) - "
                                  "image is referenced in multiple repositories")
    assert info.value.containers == ()
    result = await engine.remove_image(img.id, force=True)
    assert set(result.untagged) == set(img.refs)
    assert img.id in result.deleted


async def test_remove_missing_image(engine, stack):
    ref = f"{stack.registry}/dockhand-test/absent-{uniq()}:latest"
    with pytest.raises(E.ImageNotFound) as info:
        await engine.remove_image(ref)
    assert info.value.message == f"{DAEMON}No such image: {ref}"


async def test_remove_image_used_by_a_container(engine, stack, make_image):
    img = make_image()
    name = make_image.container(img)
    cid = stack.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    with pytest.raises(E.Conflict) as info:
        await engine.remove_image(img.ref)
    assert info.value.containers == (cid[:12],)
    assert info.value.message == (
        f'{DAEMON}conflict: unable to remove repository reference "{img.ref}" (must force) - '
        f"container {cid[:12]} is using its referenced image {img.id[7:19]}")
    assert "remove the container first" in info.value.hint
    assert image_exists(stack, img.ref)
    # the seeded user is refused the same way (and stays)
    with pytest.raises(E.Conflict) as info:
        await engine.remove_image(stack.seed("used"))
    assert info.value.containers == (stack.state["seed_container"]["id"][:12],)
    # force removes it although the (stopped) container still refers to it
    result = await engine.remove_image(img.ref, force=True)
    assert result.untagged == (img.ref,)
    assert img.id in result.deleted
    assert not image_exists(stack, img.id)


async def test_remove_noprune_keeps_untagged_parents(engine, stack, api, make_image):
    results = {}
    for noprune in (True, False):
        base = make_image()
        repo = f"{stack.registry}/dockhand-test/child-{uniq()}"
        child_id = commit_layer(api, make_image, base.ref, repo, "latest", 1024)
        stack.docker("rmi", base.ref)  # base is now an untagged parent
        result = await engine.remove_image(f"{repo}:latest", noprune=noprune)
        assert result.untagged == (f"{repo}:latest",)
        assert child_id in result.deleted
        results[noprune] = (result, image_exists(stack, base.id), base.id)
    result, parent_left, base_id = results[True]
    assert parent_left and base_id not in result.deleted
    result, parent_left, base_id = results[False]
    assert not parent_left and base_id in result.deleted


# --------------------------------------------------------------------------
# prune_images


async def test_prune_dangling_with_a_label(engine, stack, make_image):
    label_value = uniq()
    mine = {"label": [f"dockhand.test={label_value}"]}
    name = f"prune-{uniq()}"
    old = make_image(name, labels={"dockhand.test": label_value}, size=300_000)
    make_image(name)  # same name: `old` loses its tag and dangles
    assert [i.id for i in await engine.list_images(filters={**mine, "dangling": ["true"]})] == [old.id]
    result = await engine.prune_images(filters=mine)
    assert result.deleted[0] == old.id
    assert result.untagged == ()
    assert result.space_reclaimed >= 300_000
    assert not image_exists(stack, old.id)
    # the seeded dangling image is untouched
    assert image_exists(stack, stack.state["dangling_id"])
    # nothing left to prune
    again = await engine.prune_images(filters=mine)
    assert again.deleted == () and again.space_reclaimed == 0


async def test_prune_all_removes_unused_tagged_images(engine, stack, make_image):
    label_value = uniq()
    mine = {"label": [f"dockhand.test={label_value}"]}
    unused = make_image(labels={"dockhand.test": label_value})
    used = make_image(labels={"dockhand.test": label_value})
    make_image.container(used)
    # without all, tagged images stay
    result = await engine.prune_images(filters=mine)
    assert result.deleted == ()
    assert image_exists(stack, unused.ref)
    result = await engine.prune_images(all=True, filters=mine)
    assert result.untagged == (unused.ref,)
    assert unused.id in result.deleted
    assert result.space_reclaimed > 0
    assert image_exists(stack, used.ref)  # a container uses it
    assert image_exists(stack, stack.seed("hello_world"))


async def test_prune_bad_filter(engine):
    with pytest.raises(E.InvalidArgument) as info:
        await engine.prune_images(filters={"dangling": ["maybe"]})
    assert info.value.message == f"{DAEMON}Invalid filter 'dangling=[maybe]'"


# --------------------------------------------------------------------------
# containers_using


async def test_containers_using(engine, stack, make_image):
    seed = stack.seeds["used"]
    found = await engine.containers_using(seed["id"])
    assert ContainerRef(id=stack.state["seed_container"]["id"], name="dockhand-seed-user",
                        state="created", image=seed["ref"], image_id=seed["id"]) in found
    img = make_image()
    assert await engine.containers_using(img.id) == []
    names = {make_image.container(img), make_image.container(img.ref)}
    found = await engine.containers_using(img.id)
    assert {c.name for c in found} == names
    assert all(c.image_id == img.id and c.state == "created" for c in found)
    # a reference or a short ID is resolved first
    assert {c.name for c in await engine.containers_using(img.ref)} == names
    assert {c.name for c in await engine.containers_using(img.id[7:19])} == names
    # a child image's containers do not count for the parent
    assert await engine.containers_using(stack.seeds["hello_world"]["id"]) == []


async def test_images_in_use(engine, stack, make_image):
    img, unused = make_image(), make_image()
    make_image.container(img)
    in_use = await engine.images_in_use()
    assert img.id in in_use and stack.seeds["used"]["id"] in in_use
    assert unused.id not in in_use and stack.seeds["hello_world"]["id"] not in in_use


async def test_containers_using_missing_image(engine, stack):
    with pytest.raises(E.ImageNotFound):
        await engine.containers_using(f"{stack.registry}/dockhand-test/absent-{uniq()}")


# --------------------------------------------------------------------------
# search


async def test_search(engine, stack):
    results = await engine.search(f"{stack.index}/ubuntu")
    assert all(isinstance(r, SearchResult) for r in results)
    assert results[0] == SearchResult(
        name="ubuntu", description="Ubuntu is a Debian-based Linux operating system based on free software.",
        star_count=9616, is_official=True, is_automated=False)
    assert len(results) > 2


async def test_search_limit(engine, stack):
    assert len(await engine.search(f"{stack.index}/bulk")) == 25  # the engine's default
    assert len(await engine.search(f"{stack.index}/bulk", limit=5)) == 5
    results = await engine.search(f"{stack.index}/bulk", limit=100)
    assert len(results) == 100
    assert results[0].name == "bulk/image-001"
    assert len(await engine.search(f"{stack.index}/bulk", limit=1)) == 1


@pytest.mark.parametrize("limit", [0, 101])
async def test_search_bad_limit(engine, stack, limit):
    with pytest.raises(E.InvalidArgument) as info:
        await engine.search(f"{stack.index}/ubuntu", limit=limit)
    assert info.value.message == f"invalid limit {limit}: must be between 1 and 100"
    assert info.value.status is Status.USAGE


async def test_search_filters(engine, stack):
    official = await engine.search(f"{stack.index}/ubuntu", filters={"is-official": ["true"]})
    assert official and all(r.is_official for r in official)
    assert official[0].name == "ubuntu"
    starred = await engine.search(f"{stack.index}/ubuntu", filters={"stars": ["300"]})
    assert starred and all(r.star_count >= 300 for r in starred)
    everything = await engine.search(f"{stack.index}/ubuntu")
    assert len(starred) < len(everything) and len(official) < len(everything)


async def test_search_bad_filter(engine, stack):
    with pytest.raises(E.InvalidArgument) as info:
        await engine.search(f"{stack.index}/ubuntu", filters={"bogus": ["x"]})
    assert info.value.message == f"{DAEMON}Invalid filter 'bogus'"


async def test_search_index_error(engine, stack):
    with pytest.raises(E.EngineError) as info:
        await engine.search(f"{stack.index}/error-500")
    assert type(info.value) is E.EngineError
    assert info.value.message == f"{DAEMON}Unexpected status code 500"


async def test_search_index_unreachable(engine):
    port = closed_port()
    with pytest.raises(E.RegistryUnreachable) as info:
        await engine.search(f"127.0.0.1:{port}/ubuntu")
    msg = info.value.message
    assert msg.startswith(f'{DAEMON}invalid registry endpoint "http://127.0.0.1:{port}/v1/"')
    assert "connection refused" in msg


async def test_search_timeout(stack):
    slow = DockerEngine(stack.docker_host, timeout=1)
    try:
        t0 = time.monotonic()
        with pytest.raises(E.EngineTimeout) as info:
            await slow.search(f"{stack.index}/slow-3")
        assert time.monotonic() - t0 < 2.9
        assert info.value.message == (
            f"the engine at {stack.docker_host} did not answer within 1 s (image search)")
        assert "DOCKHAND_ENGINE_TIMEOUT" in info.value.hint
        # the engine object is still usable
        assert (await slow.version())["ApiVersion"] == "1.41"
    finally:
        await slow.close()


async def test_calls_do_not_block_the_event_loop(engine, stack):
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.05)

    t = asyncio.create_task(ticker())
    t0 = time.monotonic()
    slow = asyncio.create_task(engine.search(f"{stack.index}/slow-2-ubuntu"))
    await asyncio.sleep(0.1)
    info = await engine.info()  # answered while the slow search still runs
    assert not slow.done() and info["ServerVersion"]
    results = await slow
    done.set()
    await t
    elapsed = time.monotonic() - t0
    assert results and results[0].name == "ubuntu"
    assert elapsed >= 2
    assert ticks >= elapsed / 0.05 * 0.6


async def test_slow_registries_cannot_take_every_worker(stack):
    """More slow searches than workers: local calls still answer at once."""
    eng = DockerEngine(stack.docker_host, max_workers=4)
    try:
        await eng.version()
        searches = [asyncio.create_task(eng.search(f"{stack.index}/slow-2-ubuntu")) for _ in range(6)]
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        images = await eng.list_images()
        info = await eng.info()
        assert time.monotonic() - t0 < 1.0 and images and info["ServerVersion"]
        assert not any(s.done() for s in searches)
        assert all(await asyncio.gather(*searches))
    finally:
        await eng.close()


# --------------------------------------------------------------------------
# engine unreachable, and recovery


async def test_engine_unreachable_then_recovers(stack, tmp_path):
    sock = tmp_path / "docker.sock"
    host = f"unix://{sock}"
    e = DockerEngine(host, timeout=5)
    try:
        for call in (e.info, e.version, e.list_images):
            with pytest.raises(E.EngineUnreachable) as info:
                await call()
            assert info.value.message == (f"Cannot connect to the Docker daemon at {host}. "
                                          "Is the docker daemon running? (No such file or directory)")
            assert f"DOCKER_HOST={host}" in info.value.hint
            assert info.value.host == host
        with pytest.raises(E.EngineUnreachable):
            await collect(e.pull(f"{stack.registry}/dockhand/pullme", "latest"))
        # the engine appears at that address: the same object now works
        os.symlink(stack.state["docker_socket"], sock)
        assert (await e.version())["ApiVersion"] == "1.41"
        assert (await e.inspect_image(stack.seed("hello_world")))["Id"] == stack.seeds["hello_world"]["id"]
    finally:
        await e.close()


class SocketForwarder:
    """A unix socket (or a TCP port on 127.0.0.1 when ``path`` is None) that
    forwards to the engine's socket, and can be taken away: the engine "goes
    down" and "comes back" at the same DOCKER_HOST."""

    def __init__(self, path: str | None, target: str):
        self.path, self.target = path, target
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.port = 0

    @property
    def host(self) -> str:
        return f"unix://{self.path}" if self.path else f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.path:
            self.server = socket.socket(socket.AF_UNIX)
            self.server.bind(self.path)
        else:
            self.server = socket.socket()
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.server.bind(("127.0.0.1", self.port))
            self.port = self.server.getsockname()[1]
        self.server.listen(16)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(OSError):  # wakes accept() (close alone would not)
                self.server.shutdown(socket.SHUT_RDWR)
            self.server.close()
            self.server = None
        if self.path:
            os.unlink(self.path)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.conns.clear()


async def test_engine_goes_away_and_comes_back(stack, tmp_path):
    path = str(tmp_path / "fwd.sock")
    host = f"unix://{path}"
    fwd = SocketForwarder(path, stack.state["docker_socket"])
    fwd.start()
    e = DockerEngine(host, timeout=5)
    try:
        assert (await e.version())["ApiVersion"] == "1.41"  # the client exists now
        fwd.stop()
        for _ in range(2):
            with pytest.raises(E.EngineUnreachable) as info:
                await e.info()
            assert info.value.message.startswith(f"Cannot connect to the Docker daemon at {host}.")
        fwd.start()
        assert (await e.info())["ServerVersion"].startswith("20.10")
        assert len(await e.list_images(filters={"reference": [stack.seed("hello_world")]})) == 1
    finally:
        await e.close()
        with contextlib.suppress(FileNotFoundError):
            fwd.stop()


async def test_engine_over_tcp(stack, fake_registry):
    """The same engine behind tcp:// (requests' own adapter, not docker-py's
    unix one): calls work, and a pull still stops before the engine answers."""
    fwd = SocketForwarder(None, stack.state["docker_socket"])
    fwd.start()
    e = DockerEngine(fwd.host, timeout=10)
    try:
        assert (await e.version())["ApiVersion"] == "1.41"
        assert await e.list_images(filters={"reference": [stack.seed("hello_world")]})
        reg = fake_registry("hang")
        task = asyncio.create_task(e.pull(f"{reg.address}/fake/image", "latest").__anext__())
        assert await asyncio.to_thread(reg.hanging.wait, 30)
        await asyncio.sleep(0.3)
        assert e.active_pulls == 1
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 3
        assert e.active_pulls == 0
        fwd.stop()
        with pytest.raises(E.EngineUnreachable) as info:
            await e.info()
        assert info.value.message.startswith(f"Cannot connect to the Docker daemon at {fwd.host}.")
        fwd.start()  # same port
        assert (await e.info())["ServerVersion"].startswith("20.10")
    finally:
        await e.close()
        with contextlib.suppress(Exception):
            fwd.stop()


async def test_engine_unreachable_over_tcp(stack):
    host = f"tcp://127.0.0.1:{closed_port()}"
    e = DockerEngine(host, timeout=5)
    try:
        with pytest.raises(E.EngineUnreachable) as info:
            await e.info()
        assert info.value.message.endswith("Is the docker daemon running? (Connection refused)")
        assert host in info.value.message
    finally:
        await e.close()


# --------------------------------------------------------------------------
# pull


@pytest.fixture
def pushed_big(stack, api, make_image):
    """A two-layer image (~1 MiB busybox base + 8 MiB random) in the registry
    only: pushed, then removed locally so a pull downloads every layer."""
    base = make_image()
    repo = f"{stack.registry}/dockhand-test/big-{uniq()}"
    ref = f"{repo}:v1"
    commit_layer(api, make_image, base.ref, repo, "v1", 8 * 1024 * 1024)
    push(stack, make_image, ref)
    stack.docker("rmi", ref, base.ref)
    assert not image_exists(stack, ref) and not image_exists(stack, base.id)
    return repo, "v1"


async def test_pull_reports_layer_progress(engine, stack, pushed_big):
    repo, tag = pushed_big
    ref = f"{repo}:{tag}"
    events = await collect(engine.pull(repo, tag))
    assert all(isinstance(ev, PullEvent) and not ev.error for ev in events)
    assert events[0].status == f"Pulling from {repo.split('/', 1)[1]}" and events[0].id == tag
    layers = {ev.id for ev in events if ev.status == "Pull complete"}
    assert len(layers) == 2 and all(len(i) == 12 for i in layers)
    downloading = [ev for ev in events if ev.status == "Downloading"]
    assert downloading and all(0 < ev.current <= ev.total for ev in downloading)
    big_layer = max(downloading, key=lambda ev: ev.total)
    assert big_layer.total >= 8 * 1024 * 1024
    # (over loopback the engine's progress, sent at most every ~100 ms, may come only once
    # per layer; test_pull_stops_when_the_consumer_stops sees a partial download)
    assert any(ev.status.startswith("Digest: sha256:") for ev in events)
    assert events[-1].status == f"Status: Downloaded newer image for {ref}"
    assert image_exists(stack, ref)
    # again: nothing to download
    events = await collect(engine.pull(repo, tag))
    assert events[-1].status == f"Status: Image is up to date for {ref}"
    assert not [ev for ev in events if ev.status == "Downloading"]


async def test_pull_missing_tag(engine, stack):
    repo = f"{stack.registry}/dockhand/hello-world"
    tag = f"nope-{uniq()}"
    with pytest.raises(E.ManifestNotFound) as info:
        await collect(engine.pull(repo, tag))
    assert info.value.message == (f"{DAEMON}manifest for {repo}:{tag} not found: "
                                  "manifest unknown: manifest unknown")
    assert "docker search" in info.value.hint


async def test_pull_missing_repository(engine, stack):
    repo = f"{stack.registry}/dockhand-test/absent-{uniq()}"
    with pytest.raises(E.ManifestNotFound) as info:
        await collect(engine.pull(repo, "latest"))
    assert info.value.message == f"{DAEMON}manifest for {repo}:latest not found: manifest unknown: manifest unknown"


async def test_pull_invalid_reference(engine, stack):
    with pytest.raises(E.InvalidArgument) as info:
        await collect(engine.pull(f"{stack.registry}/UPPER", "latest"))
    assert info.value.message == f"{DAEMON}invalid reference format: repository name must be lowercase"


async def test_pull_registry_unreachable(engine):
    port = closed_port()
    with pytest.raises(E.RegistryUnreachable) as info:
        await collect(engine.pull(f"127.0.0.1:{port}/x", "latest"))
    assert info.value.message == (f'{DAEMON}Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: '
                                  "connect: connection refused")


async def test_pull_registry_unauthorized(engine, fake_registry):
    reg = fake_registry("auth")
    with pytest.raises(E.RegistryUnauthorized) as info:
        await collect(engine.pull(f"{reg.address}/fake/image", "latest"))
    # a 500 from the engine, recognised by its words
    assert info.value.message == (f'{DAEMON}Head "http://{reg.address}/v2/fake/image/manifests/latest": '
                                  "no basic auth credentials")
    assert "docker login" in info.value.hint
    assert reg.requests  # the engine did ask it


async def test_pull_error_inside_the_stream(engine, stack, fake_registry):
    reg = fake_registry("corrupt")
    seen: list[PullEvent] = []
    with pytest.raises(E.EngineError) as info:
        async for ev in engine.pull(f"{reg.address}/fake/image", "latest"):
            seen.append(ev)
    # the stream started fine (200), the last event carried the error
    assert seen[0].status == "Pulling from fake/image"
    assert seen[-1].error
    assert info.value.message == seen[-1].error
    assert info.value.message.startswith("filesystem layer verification failed for digest sha256:")
    assert not image_exists(stack, f"{reg.address}/fake/image:latest")


async def test_pull_command_fails_on_an_error_inside_the_stream(engine, stack, fake_registry):
    """The same corrupted blob through the pull command: a failed reply, not a success."""
    from handlers.dispatch import dispatch
    from handlers.context import Actor, Services
    from handlers.replies import Status

    reg = fake_registry("corrupt")
    reply = await dispatch(f"docker pull {reg.address}/fake/image", Actor("t"), Services(engine=engine))
    assert reply.status is Status.FAILED
    error = next(p for p in reply.parts if hasattr(p, "message"))  # after "Using default tag: latest"
    assert error.message.startswith("filesystem layer verification failed for digest sha256:")


async def _until_downloading(it) -> PullEvent:
    async for ev in it:
        if ev.status == "Downloading" and ev.current:
            return ev
    raise AssertionError("the pull ended without downloading")


async def test_pull_stops_when_the_consumer_stops(engine, stack, fake_registry):
    reg = fake_registry("stall")
    it = engine.pull(f"{reg.address}/fake/image", "latest")
    async with contextlib.aclosing(it):
        ev = await asyncio.wait_for(_until_downloading(it), 30)
        assert ev.total == len(reg.layer) and ev.current >= 1
        assert engine.active_pulls == 1
        t0 = time.monotonic()
    # aclose() returned: the worker thread is free again
    assert time.monotonic() - t0 < 3
    assert engine.active_pulls == 0
    assert (await engine.version())["ApiVersion"] == "1.41"
    # the engine gave up its download too
    assert await asyncio.to_thread(reg.blob_aborted.wait, 10)
    assert not image_exists(stack, f"{reg.address}/fake/image:latest")


async def test_pull_cancelled_task_frees_its_thread(engine, fake_registry):
    reg = fake_registry("stall")
    started = asyncio.Event()

    async def consume():
        async for ev in engine.pull(f"{reg.address}/fake/image", "latest"):
            if ev.status == "Downloading":
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.sleep(0.2)  # the worker is now blocked reading the quiet stream
    assert engine.active_pulls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.active_pulls == 0
    assert await engine.info()


async def test_pull_abandoned_iterator_is_cleaned_up(engine, fake_registry):
    reg = fake_registry("stall")

    async def walk_away():
        async for ev in engine.pull(f"{reg.address}/fake/image", "latest"):
            if ev.status == "Downloading":
                break  # no aclose(): the event loop finalises the generator

    await asyncio.wait_for(walk_away(), 30)
    for _ in range(50):
        if engine.active_pulls == 0:
            break
        await asyncio.sleep(0.1)
    assert engine.active_pulls == 0


async def test_pull_cancelled_before_the_engine_answers(engine, fake_registry):
    """The engine sends no header until the registry has answered: the worker
    is then blocked waiting for them, and must still be freed."""
    reg = fake_registry("hang")
    it = engine.pull(f"{reg.address}/fake/image", "latest")
    task = asyncio.create_task(it.__anext__())
    assert await asyncio.to_thread(reg.hanging.wait, 30)
    await asyncio.sleep(0.3)
    assert not task.done() and engine.active_pulls == 1
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 3
    assert engine.active_pulls == 0
    assert (await engine.version())["ApiVersion"] == "1.41"


async def test_close_stops_running_pulls(stack, fake_registry):
    reg = fake_registry("stall")
    e = DockerEngine(stack.docker_host, timeout=30)
    it = e.pull(f"{reg.address}/fake/image", "latest")
    await asyncio.wait_for(_until_downloading(it), 30)
    t0 = time.monotonic()
    await e.close()
    assert time.monotonic() - t0 < 3
    assert e.active_pulls == 0
    assert not any(t.is_alive() for t in e._executor._threads)
    with pytest.raises(E.EngineError, match="stopped"):
        await it.__anext__()
    with pytest.raises(E.EngineError, match="closed"):
        await e.info()


# remove_many: a plan's steps in one batch, errors worded as remove_image words them


async def test_remove_many_gives_one_outcome_per_call_worded_like_remove_image(engine, stack, make_image):
    from handlers.errors import Conflict, ImageNotFound
    from handlers.ports import RemoveResult

    gone, used, kept = make_image(extra_tags=["2"]), make_image(), make_image()
    make_image.container(used)
    missing = f"{stack.registry}/dockhand-test/nothere-{uniq()}:1"
    outcomes = await engine.remove_many([(gone.ref, False, False), (f"{gone.repo}:2", False, False),
                                         (used.ref, False, False), (missing, False, False), (kept.id, True, False)])
    assert isinstance(outcomes[0], RemoveResult) and outcomes[0].untagged and not outcomes[0].deleted
    assert gone.id in outcomes[1].deleted
    assert isinstance(outcomes[2], Conflict) and "must force" in outcomes[2].message
    assert isinstance(outcomes[3], ImageNotFound)
    assert kept.id in outcomes[4].deleted and not image_exists(stack, kept.id)
    # the same errors, one call at a time
    with pytest.raises(Conflict) as one:
        await engine.remove_image(used.ref)
    assert one.value.message == outcomes[2].message
    with pytest.raises(ImageNotFound) as two:
        await engine.remove_image(missing)
    assert two.value.message == outcomes[3].message


async def test_remove_many_with_the_engine_gone_fails_every_remaining_call(tmp_path):
    from handlers.errors import EngineUnreachable

    e = DockerEngine(f"unix://{tmp_path}/nothing.sock", timeout=5)
    try:
        with pytest.raises(EngineUnreachable):
            await e.remove_many([("a:1", False, False), ("b:1", False, False)])
    finally:
        await e.close()

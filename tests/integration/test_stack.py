"""The private test stack itself: engine, registry, fake index and seeds (tests/stack/stack.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from bot.config import DEFAULT_DOCKER_HOST

pytestmark = pytest.mark.integration

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK_PY = os.path.join(TESTS_DIR, "stack", "stack.py")


def run_stack(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, STACK_PY, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def search_rows(stack, term, *opts, check=True):
    r = stack.docker("search", "--no-trunc", "--format", "{{json .}}", *opts, f"{stack.index}/{term}", check=check)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- the stack


def test_stack_is_up_and_private(stack, docker_client):
    assert stack.docker_host.startswith("unix://")
    assert stack.docker_host != DEFAULT_DOCKER_HOST
    assert os.path.exists(stack.docker_host[len("unix://"):])
    assert stack.registry.startswith("127.0.0.1:") and stack.index.startswith("127.0.0.1:")
    assert docker_client.ping() is True
    version = stack.docker("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}").stdout.split()
    assert version[0].startswith("20.10") and version[1] == "1.41"
    assert stack.state["engine"]["api_version"] == "1.41"
    # the session points docker.from_env() at the private engine
    assert os.environ["DOCKER_HOST"] == stack.docker_host
    assert os.environ["DOCKER_CONFIG"] == stack.docker_config


def test_dockerd_runs_with_safety_net(stack):
    pid = stack.state["pids"]["dockerd"]
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    assert environ[b"HTTPS_PROXY"] == b"http://127.0.0.1:9"
    assert environ[b"HTTP_PROXY"] == b"http://127.0.0.1:9"
    assert b"127.0.0.1" in environ[b"NO_PROXY"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().split(b"\0")
    assert b"--bridge=none" in cmdline and b"--iptables=false" in cmdline
    assert stack.state["state_dir"].encode() in b" ".join(cmdline)


def test_unprefixed_name_never_reaches_docker_hub(stack):
    t0 = time.monotonic()
    r = stack.docker("pull", "dockhand-surely-not-an-image:latest", check=False, timeout=60)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 30
    assert "127.0.0.1:9" in r.stderr or "proxy" in r.stderr.lower() or "connection refused" in r.stderr.lower()


def test_status_and_env(stack):
    r = run_stack("status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "seeds:" in r.stdout and "ok" in r.stdout.split("seeds:")[1]
    r = run_stack("env")
    assert r.returncode == 0
    assert f"export DOCKER_HOST={stack.docker_host}" in r.stdout
    assert f"export DOCKHAND_TEST_REGISTRY={stack.registry}" in r.stdout
    assert f"export DOCKHAND_TEST_INDEX={stack.index}" in r.stdout
    assert f"export DOCKER_CONFIG={stack.docker_config}" in r.stdout
    out = subprocess.run(["bash", "-c", f'eval "$({sys.executable} {STACK_PY} env)"; echo "$DOCKER_HOST|$DOCKHAND_TEST_REGISTRY"'],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert out == f"{stack.docker_host}|{stack.registry}"


def test_up_again_is_fast_and_changes_nothing(stack):
    before = dict(stack.state)
    t0 = time.monotonic()
    r = run_stack("up")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed < 10, f"warm up took {elapsed:.1f}s"
    after = stack.reload()
    assert after["pids"] == before["pids"]
    assert after["registry"] == before["registry"] and after["index"] == before["index"]
    assert {k: v.get("id") for k, v in after["seeds"].items()} == {k: v.get("id") for k, v in before["seeds"].items()}


# --------------------------------------------------------------------------- seeds


def test_seed_names(stack):
    r = f"{stack.registry}/dockhand"
    assert stack.seed("hello_world") == f"{r}/hello-world:latest"
    assert stack.seed("busybox_135") == f"{r}/busybox:1.35"
    assert stack.seed("busybox_136") == f"{r}/busybox:1.36"
    assert stack.seed("busybox_latest") == f"{r}/busybox:latest"
    assert stack.seed("labelled") == f"{r}/labelled:latest"
    assert stack.seed("used") == f"{r}/used:latest"
    assert stack.seed("big") == f"{r}/big:latest"
    assert stack.seed("pullme_latest") == f"{r}/pullme:latest"
    assert stack.seed("pullme_v2") == f"{r}/pullme:v2"
    assert stack.state["seed_containers"] == ["dockhand-seed-user"]


def test_local_seeds_exist_and_are_pushed(stack, docker_client):
    for ref in stack.state["seed_images"]:
        attrs = docker_client.api.inspect_image(ref)
        repo = ref.rsplit(":", 1)[0]
        digests = [d for d in attrs["RepoDigests"] if d.startswith(repo + "@sha256:")]
        assert digests, f"{ref} has no RepoDigest: {attrs['RepoDigests']}"


def test_busybox_tags(stack, docker_client):
    i135 = docker_client.images.get(stack.seed("busybox_135"))
    i136 = docker_client.images.get(stack.seed("busybox_136"))
    latest = docker_client.images.get(stack.seed("busybox_latest"))
    assert i135.id != i136.id
    assert latest.id == i136.id
    assert {stack.seed("busybox_136"), stack.seed("busybox_latest")} <= set(i136.tags)
    # `docker images -q` prints one line per tag: the 1.36 id shows up twice.
    repo = f"{stack.registry}/dockhand/busybox"
    ids = stack.docker("images", "-q", repo).stdout.split()
    assert sorted(ids) == sorted([i135.short_id[7:], i136.short_id[7:], i136.short_id[7:]])
    # the two images differ in content
    out = {t: stack.docker("run", "--rm", "--network", "none", t, "cat", "/etc/dockhand-version").stdout.strip()
           for t in (stack.seed("busybox_135"), stack.seed("busybox_136"))}  # fmt: skip
    assert out == {stack.seed("busybox_135"): "busybox 1.35", stack.seed("busybox_136"): "busybox 1.36"}


def test_labelled(stack, docker_client):
    attrs = docker_client.api.inspect_image(stack.seed("labelled"))
    assert attrs["Config"]["Labels"] == {"org.dockhand.seed": "labelled"}
    refs = stack.docker("images", "--filter", "label=org.dockhand.seed=labelled", "--format",
                        "{{.Repository}}:{{.Tag}}").stdout.split()  # fmt: skip
    assert stack.seed("labelled") in refs
    assert all("/dockhand/" not in r or r == stack.seed("labelled") for r in refs)


def test_dangling_image_present(stack, docker_client):
    stack.reseed()  # an `image prune` elsewhere in the session deletes it
    dangling_id = stack.state["dangling_id"]
    ids = [i["Id"] for i in docker_client.api.images(filters={"dangling": True})]
    assert dangling_id in ids
    assert stack.docker("images", "-q", "--filter", "dangling=true").stdout.split().count(dangling_id[7:19]) == 1
    attrs = docker_client.api.inspect_image(dangling_id)
    assert not attrs["RepoTags"]


def test_seed_container_exists_and_is_stopped(stack, docker_client):
    c = docker_client.containers.get("dockhand-seed-user")
    assert c.status in ("created", "exited")
    assert c.attrs["State"]["Running"] is False
    assert c.image.id == docker_client.images.get(stack.seed("used")).id
    assert c.attrs["HostConfig"]["NetworkMode"] == "none"
    listed = stack.docker("ps", "-a", "--filter", "name=^dockhand-seed-user$", "--format", "{{.Names}} {{.Image}}").stdout
    assert listed.strip() == f"dockhand-seed-user {stack.seed('used')}"
    assert "dockhand-seed-user" not in stack.docker("ps", "--format", "{{.Names}}").stdout


def test_big_image(stack, docker_client):
    attrs = docker_client.api.inspect_image(stack.seed("big"))
    assert attrs["Size"] >= 20 * 1000 * 1000
    assert len(attrs["RootFS"]["Layers"]) >= 3
    assert len(set(attrs["RootFS"]["Layers"])) == len(attrs["RootFS"]["Layers"])
    history = docker_client.api.history(stack.seed("big"))
    assert len([h for h in history if h["Size"] > 0]) >= 3
    assert sum(h["Size"] for h in history) >= 20 * 1000 * 1000


def test_registry_only_images(stack, docker_client):
    import docker

    stack.reseed()  # pull tests elsewhere in the session may have pulled them

    for key in ("pullme_latest", "pullme_v2"):
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.api.inspect_image(stack.seed(key))
    status, _, body = stack.registry_get("/v2/dockhand/pullme/tags/list")
    assert status == 200
    assert set(json.loads(body)["tags"]) >= {"latest", "v2"}


def test_registry_catalog(stack):
    status, _, body = stack.registry_get("/v2/")
    assert status == 200 and body.strip() == b"{}"
    status, _, body = stack.registry_get("/v2/_catalog?n=1000")
    assert status == 200
    repos = set(json.loads(body)["repositories"])
    assert {"dockhand/hello-world", "dockhand/busybox", "dockhand/labelled", "dockhand/used", "dockhand/big",
            "dockhand/pullme"} <= repos  # fmt: skip
    status, _, body = stack.registry_get("/v2/dockhand/busybox/tags/list")
    assert set(json.loads(body)["tags"]) >= {"1.35", "1.36", "latest"}
    # 1.36 and latest are the same manifest
    d136 = stack.seeds["busybox_136"]["digest"]
    assert d136 and d136 == stack.seeds["busybox_latest"]["digest"]


# --------------------------------------------------------------------------- fake index / search


def test_search_ubuntu_through_the_engine(stack):
    rows = search_rows(stack, "ubuntu")
    assert len(rows) == 25  # the daemon's default limit
    first = rows[0]
    assert first["Name"] == "ubuntu"
    assert first["StarCount"] == "9616"
    assert first["IsOfficial"] in ("[OK]", "true")
    assert first["Description"] == "Ubuntu is a Debian-based Linux operating system based on free software."
    assert "pivotaldata/ubuntu-gpdb-dev" in [r["Name"] for r in search_rows(stack, "ubuntu", "--limit", "100")]


def test_search_table_output(stack):
    out = stack.docker("search", f"{stack.index}/ubuntu").stdout.splitlines()
    assert out[0].split()[:4] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert out[1].startswith("ubuntu ") and "9616" in out[1] and "[OK]" in out[1]
    assert "…" in out[1]  # long descriptions are truncated without --no-trunc


def test_search_limit_and_filters(stack):
    assert len(search_rows(stack, "ubuntu", "--limit", "3")) == 3
    official = search_rows(stack, "ubuntu", "--filter", "is-official=true", "--limit", "100")
    assert official and all(r["IsOfficial"] in ("[OK]", "true") for r in official)
    assert "ubuntu" in [r["Name"] for r in official]
    starred = search_rows(stack, "nginx", "--filter", "stars=1000")
    assert starred and all(int(r["StarCount"]) >= 1000 for r in starred)
    assert len(search_rows(stack, "bulk", "--limit", "100")) == 100
    r = stack.docker("search", "--limit", "101", f"{stack.index}/bulk", check=False)
    assert r.returncode != 0 and "1, 100" in r.stderr


def test_search_odd_descriptions(stack):
    uni = search_rows(stack, "unicode")
    assert any("ünïcödé" in r["Description"] for r in uni)
    multi = search_rows(stack, "ubuntu-16-sshd")
    assert multi and multi[0]["Name"] == "1and1internet/ubuntu-16-sshd"
    assert search_rows(stack, "no-such-thing-anywhere") == []


def test_search_hooks(stack, docker_client):
    import docker

    r = stack.docker("search", f"{stack.index}/error-500", check=False)
    assert r.returncode != 0 and "500" in r.stderr
    with pytest.raises(docker.errors.APIError):
        docker_client.api.search(f"{stack.index}/error-500")
    t0 = time.monotonic()
    rows = search_rows(stack, "slow-1-nginx")
    assert time.monotonic() - t0 >= 1.0
    assert rows and any(r["Name"] == "nginx" for r in rows)


def test_search_with_docker_py(stack, docker_client):
    results = docker_client.api.search(f"{stack.index}/ubuntu", limit=5)
    assert len(results) == 5
    assert set(results[0]) >= {"name", "description", "star_count", "is_official", "is_automated"}
    assert results[0]["name"] == "ubuntu" and results[0]["star_count"] == 9616 and results[0]["is_official"] is True


def test_fake_index_shape(stack):
    status, _, body = stack.index_get("/v1/_ping")
    assert status == 200
    status, _, body = stack.index_get("/v1/search?q=UBUNTU&n=5&page=2")
    assert status == 200
    data = json.loads(body)
    assert set(data) == {"num_pages", "num_results", "page_size", "page", "query", "results"}
    assert data["page"] == 2 and data["page_size"] == 5 and data["query"] == "UBUNTU"
    assert data["num_results"] >= 20 and data["num_pages"] == -(-data["num_results"] // 5)
    assert len(data["results"]) == 5
    assert set(data["results"][0]) == {"name", "description", "star_count", "is_official", "is_automated"}
    status, _, body = stack.index_get("/v1/search?q=bulk&n=100")
    data = json.loads(body)
    assert data["num_results"] == 150 and len(data["results"]) == 100
    assert data["results"][0]["name"] == "bulk/image-001"
    status, _, _ = stack.index_get("/v1/search?q=error-500")
    assert status == 500


# --------------------------------------------------------------------------- fixtures


def test_make_image_creates_distinct_images(stack, make_image, docker_client):
    a = make_image()
    b = make_image("mine", "1.0", extra_tags=["2.0"], labels={"org.dockhand.test": "yes"})
    assert a.id != b.id
    assert a.ref.startswith(f"{stack.registry}/dockhand-test/img-")
    assert b.refs == [f"{stack.registry}/dockhand-test/mine:1.0", f"{stack.registry}/dockhand-test/mine:2.0"]
    assert docker_client.images.get(b.refs[1]).id == b.id
    assert docker_client.api.inspect_image(b.ref)["Config"]["Labels"] == {"org.dockhand.test": "yes"}


def test_make_image_cleanup(stack, docker_client):
    import docker

    from tests.conftest import ImageFactory, stackmod

    factory = ImageFactory(stack)
    img = factory(push=True, size=100_000)
    name = factory.container(img)
    assert img.digest
    assert docker_client.containers.get(name).status == "created"
    assert factory.cleanup() == []
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.api.inspect_image(img.id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)
    _, repo, tag = stackmod.split_ref(img.ref)
    status, _, _ = stack.registry_get(f"/v2/{repo}/manifests/{tag}", method="HEAD")
    assert status == 404


# --------------------------------------------------------------------------- lifecycle (second, private stack)


def test_lifecycle_in_a_separate_stack_dir(stack):
    """up, up, down, down, up, down --purge on a second stack next to the shared one."""
    shared_pids = dict(stack.state["pids"])
    d = tempfile.mkdtemp(prefix="dh-", dir="/tmp")
    env = dict(os.environ, DOCKHAND_STACK_DIR=d)
    try:
        t0 = time.monotonic()
        r = run_stack("up", env=env)
        cold = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert cold < 120
        with open(os.path.join(d, "state.json")) as f:
            st1 = json.load(f)
        assert st1["docker_host"] == f"unix://{d}/docker.sock"
        assert st1["registry"] != stack.registry

        t0 = time.monotonic()
        r = run_stack("up", env=env)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 10
        with open(os.path.join(d, "state.json")) as f:
            st2 = json.load(f)
        assert st2["pids"] == st1["pids"] and st2["seeds"] == st1["seeds"]

        assert run_stack("down", env=env).returncode == 0
        assert run_stack("status", env=env).returncode == 1
        r = run_stack("down", env=env)
        assert r.returncode == 0 and "nothing was running" in r.stderr
        r = run_stack("up", env=env)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(d, "state.json")) as f:
            st3 = json.load(f)
        assert st3["registry"] == st1["registry"]  # same port again when free
        assert st3["seeds"]["big"]["id"] == st1["seeds"]["big"]["id"]  # data kept across down/up
        assert run_stack("status", env=env).returncode == 0
        # the shared stack was never disturbed
        assert stack.docker("version", "--format", "{{.Server.Version}}").returncode == 0
        assert stack.reload()["pids"] == shared_pids
    finally:
        r = run_stack("down", "--purge", env=env)
        assert r.returncode == 0, r.stderr
        assert not os.path.exists(d)


# --------------------------------------------------------------------------- sample engine, Docker Hub mirror


def test_engine_says_it_is_the_sample_engine_and_mirrors_docker_hub(stack, docker_client):
    info = docker_client.info()
    assert "org.dockhand.engine=sample" in info["Labels"]
    mirror = next(label for label in info["Labels"] if label.startswith("org.dockhand.mirror="))
    assert set(mirror.split("=", 1)[1].split(",")) == {"hello-world:latest", "ubuntu:22.04", "ubuntu:latest",
                                                       "ubuntu:16.04", "busybox:latest"}
    assert info["RegistryConfig"]["Mirrors"] == [f"http://{stack.registry}/"]
    assert stack.state["mirror"]["registry"] == stack.registry


def test_docker_pull_hello_world_comes_from_the_mirror(stack, docker_client):
    import docker

    refs = ("hello-world:latest", "ubuntu:22.04", "ubuntu:latest", "ubuntu:16.04", "busybox:latest")
    try:
        for ref in refs:
            r = stack.docker("pull", ref, timeout=60)
            assert f"docker.io/library/{ref}" in r.stdout, r.stdout
        out = stack.docker("run", "--rm", "--network", "none", "hello-world").stdout
        assert out.startswith("Hello from Docker!") and "NOT Docker Hub's hello-world" in out
        ids = {ref: docker_client.images.get(ref).id for ref in refs}
        assert ids["ubuntu:latest"] == ids["ubuntu:22.04"]  # one image, two tags, like Docker Hub's
        assert len({ids[r] for r in ("hello-world:latest", "ubuntu:22.04", "ubuntu:16.04", "busybox:latest")}) == 4
        release = {t: stack.docker("run", "--rm", "--network", "none", t, "cat", "/etc/os-release").stdout
                   for t in ("ubuntu:16.04", "ubuntu:22.04")}  # fmt: skip
        assert 'VERSION_ID="16.04"' in release["ubuntu:16.04"] and 'VERSION_ID="22.04"' in release["ubuntu:22.04"]
        # the mirror's images are not kept under the registry's own name on the engine
        for ref in refs:
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client.images.get(f"{stack.registry}/library/{ref}")
    finally:
        stack.docker("rmi", *refs, check=False)


def test_an_image_the_mirror_lacks_fails_at_once(stack):
    t0 = time.monotonic()
    r = stack.docker("pull", "nginx:1.25", check=False, timeout=60)
    assert r.returncode != 0 and "127.0.0.1:9" in r.stderr  # fell back to Docker Hub: the dead proxy
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------- one stack per checkout


def test_the_state_dir_is_derived_from_the_checkout(monkeypatch):
    from tests.conftest import stackmod

    repo = os.path.dirname(TESTS_DIR)
    assert stackmod.DEFAULT_DIR == stackmod.default_dir(repo)
    assert re.fullmatch(r"/tmp/dockhand-stack-[0-9a-f]{10}", stackmod.DEFAULT_DIR)
    assert stackmod.default_dir("/tmp/a/dockhand") != stackmod.default_dir("/tmp/b/dockhand")
    monkeypatch.delenv("DOCKHAND_STACK_DIR", raising=False)
    assert stackmod.stack_dir() == stackmod.DEFAULT_DIR
    monkeypatch.setenv("DOCKHAND_STACK_DIR", "/tmp/mine")
    assert stackmod.stack_dir() == "/tmp/mine"  # an explicit setting wins


def test_two_checkouts_side_by_side_never_share_or_stop_each_other(stack, tmp_path):
    """Two copies of the stack's files at two checkout paths, no DOCKHAND_STACK_DIR: two engines."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKHAND_STACK_DIR" and not k.startswith("DOCKER_")}
    clones = []
    for name in ("clone-a", "clone-b"):
        root = tmp_path / name
        shutil.copytree(os.path.join(TESTS_DIR, "stack"), root / "tests" / "stack",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        clones.append(str(root / "tests" / "stack" / "stack.py"))

    def run(clone, *args):
        return subprocess.run([sys.executable, clone, *args], capture_output=True, text=True, env=env,
                              timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip

    dirs = []
    try:
        for clone in clones:
            r = run(clone, "up", "--no-seed")
            assert r.returncode == 0, r.stderr
            exports = dict(line[len("export "):].split("=", 1) for line in run(clone, "env").stdout.splitlines())
            dirs.append(exports["DOCKHAND_STACK_DIR"])
        a, b = dirs
        assert a != b and stack.dir not in (a, b)
        assert all(re.fullmatch(r"/tmp/dockhand-stack-[0-9a-f]{10}", d) for d in dirs)
        pa, pb = (stackmod_paths(d) for d in dirs)
        assert pa.docker_host != pb.docker_host
        assert engine_pid(pa) != engine_pid(pb)
        # down in clone a: its engine stops, b's and the session's keep answering
        r = run(clones[0], "down")
        assert r.returncode == 0 and "stopped" in r.stderr
        assert f"left on disk: {a}" in r.stderr and "purge" in r.stderr
        assert os.path.isdir(a)
        assert run(clones[0], "status").returncode == 1
        assert docker_version(pb) and not docker_version(pa)
        assert stack.docker("version", "--format", "{{.Server.Version}}").returncode == 0
        # purge deletes a's state dir and nothing of b's
        r = run(clones[0], "purge")
        assert r.returncode == 0 and f"removed {a}" in r.stderr and not os.path.exists(a)
        assert docker_version(pb)
        # b's registry comes back on another port (its old one taken): the running dockerd's
        # Docker Hub mirror follows it (config reloaded, engine not restarted)
        from tests.conftest import stackmod

        old = stackmod.load_state(pb)["registry"]
        pid_before = engine_pid(pb)
        stackmod.stop_pid(stackmod.read_pid(pb.registry_pid), pb.registry_config, "registry")
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old port may be in TIME_WAIT
            taken.bind(("127.0.0.1", int(old.rsplit(":", 1)[1])))
            taken.listen()
            r = run(clones[1], "up", "--no-seed")
        assert r.returncode == 0, r.stderr
        new = stackmod.load_state(pb)["registry"]
        assert new != old and engine_pid(pb) == pid_before
        assert stackmod.engine_mirrors(pb) == [f"http://{new}/"]
    finally:
        for clone, d in zip(clones, dirs):
            run(clone, "purge")
            assert not os.path.exists(d)


def stackmod_paths(d):
    from tests.conftest import stackmod

    return stackmod.Paths(d)


def engine_pid(paths):
    from tests.conftest import stackmod

    return stackmod.dockerd_pid(paths)


def docker_version(paths) -> str:
    from tests.conftest import stackmod

    if not stackmod.engine_ping(paths):
        return ""
    return stackmod.engine(paths, "GET", "/version")[1].get("Version", "")

"""THE ORACLE for handlers/plans.py: the real engine decides.

Every situation is built on the private engine of tests/stack, then:

1. Dockhand reads its model of the engine (``read_model``) and plans the
   command (``plan_rmi`` / ``plan_prune``) without touching anything;
2. the real ``docker rmi …`` / ``docker image prune -f …`` runs with the same
   arguments on the same situation;
3. the CLI's output is compared with the plan: the references untagged, the
   image IDs deleted (layer chain IDs, which the engine also reports as
   ``Deleted:``, are dropped by keeping only IDs of images in the model), each
   refused argument with the engine's words (container IDs aside: the daemon
   picks one arbitrarily when several match), the CLI's exit status, and the
   bytes freed: the plan's ``freed`` must equal the DiffSize of every layer the
   engine released (read per chain ID before the command), and for a prune
   also the CLI's "Total reclaimed space" (rounded by ``units.HumanSize``).

Prunes are scoped with a label unique to the situation
(``--filter label=dockhand.oracle=<uuid>``): the engine holds seeds that other
tests need, and ``prune -a`` takes every unused image matching the filters.
Everything a situation creates is removed afterwards (children before their
bases, containers before their images).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field

import pytest

from bot.engine import DockerEngine
from handlers import plans
from handlers.units import human_size

try:  # written by another helper; used when it is there
    from handlers import prunefilters
except ImportError:  # pragma: no cover - depends on the tree
    prunefilters = None

pytestmark = pytest.mark.integration

stackmod = sys.modules["dockhand_test_stack"]  # loaded by tests/conftest.py

LABEL_KEY = "dockhand.oracle"
DAEMON = "Error response from daemon: "


# --------------------------------------------------------------------------
# building situations


@dataclass
class Rmi:
    args: list[str]
    force: bool = False
    noprune: bool = False


@dataclass
class Prune:
    all: bool = False
    until: str | None = None  # a Unix timestamp, as typed after until=
    extra_filters: list[str] = field(default_factory=list)  # e.g. "label!=keep"


class World:
    """One situation's images and containers; removes what it made."""

    def __init__(self, stack, make_image, tmp_path):
        self.stack = stack
        self.mk = make_image
        self.tmp = tmp_path
        self.label = uuid.uuid4().hex
        self.labels = {LABEL_KEY: self.label}
        self.refs: list[str] = []  # extra references (tags, built children, loads)
        self.ids: list[str] = []  # extra image IDs, removed in order (children first)
        self.containers: list[str] = []
        self.registry: list[tuple[str, str]] = []  # (repository path, digest) pushed outside make_image

    @property
    def reg(self) -> str:
        return self.stack.registry

    def docker(self, *args, **kw):
        return self.stack.docker(*args, **kw)

    def repo(self, name: str | None = None) -> str:
        return f"{self.reg}/dockhand-oracle/{name or 'r'}-{uuid.uuid4().hex[:10]}"

    # -- images

    def image(self, repo: str | None = None, tag: str = "latest", *, extra_tags=(), labels=None, push=False,
              size: int = 0):
        """A fresh image (distinct content), labelled with this situation's label."""
        all_labels = dict(self.labels)
        all_labels.update(labels or {})
        return self.mk(repo or self.repo(), tag, extra_tags=extra_tags, labels=all_labels, push=push, size=size)

    def tag(self, source: str, ref: str) -> str:
        self.refs.append(ref)
        self.docker("tag", source, ref)
        return ref

    def inspect(self, ref: str) -> dict:
        return json.loads(self.docker("image", "inspect", ref).stdout)[0]

    def dangle(self, img) -> None:
        """Give ``img``'s tag to a new image, so ``img`` keeps no tag."""
        self.mk(img.repo, img.tag, labels=self.labels)
        assert not self.inspect(img.id)["RepoTags"]

    def child(self, base_ref: str, ref: str | None = None, *, steps: int = 2, label: str | None = None,
              size: int = 0) -> str:
        """Legacy-builder child of ``base_ref``: COPY steps (and a LABEL step),
        so intermediate untagged images link it to its base. Returns its ID."""
        ctx = self.tmp / f"ctx-{uuid.uuid4().hex[:8]}"
        ctx.mkdir()
        lines = [f"FROM {base_ref}"]
        for n in range(steps):
            data = f"{uuid.uuid4().hex}\n".encode() + (os.urandom(size) if size and n == steps - 1 else b"")
            (ctx / f"f{n}.txt").write_bytes(data)
            lines.append(f"COPY f{n}.txt /f{n}.txt")
            if n == 0 and label:
                lines.append(f"LABEL {label}")
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        argv = [stackmod.docker_cli(), "-H", self.stack.docker_host, "build", "--network", "none", "-q"]
        if ref:
            argv += ["-t", ref]
            self.refs.append(ref)
        argv.append(str(ctx))
        env = dict(self.stack.env, DOCKER_BUILDKIT="0")
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        image_id = r.stdout.strip().splitlines()[-1]
        # the child, then every intermediate image up to the base: removed in that order
        base_id = self.inspect(base_ref)["Id"]
        chain, cur = [], image_id
        while cur and cur != base_id:
            chain.append(cur)
            cur = self.inspect(cur)["Parent"]
        self.ids[:0] = chain
        return image_id

    def load(self, ref: str | None, created: int, *, labels=None, size: int = 64, id_prefix: str = "") -> str:
        """`docker load` of a hand-made archive whose config says ``created``
        (a whole second, UTC). One small layer of distinct content. With
        ``id_prefix``, the config is varied until the image ID starts so."""
        layer = stackmod.rootfs_tar({"data/blob": uuid.uuid4().hex.encode() + os.urandom(size)}, with_busybox=False)
        diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
        all_labels = dict(self.labels)
        all_labels.update(labels or {})
        config = {
            "architecture": stackmod.docker_arch(), "os": "linux", "created": stamp,
            "config": {"Cmd": ["/bin/sh"], "Labels": all_labels},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": stamp, "created_by": "dockhand oracle"}],
        }
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        n = 0
        while not image_id[7:].startswith(id_prefix):
            n += 1
            config["config"]["Env"] = [f"DOCKHAND_ORACLE_N={n}"]
            config_bytes = json.dumps(config, separators=(",", ":")).encode()
            image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = [{"Config": image_id[7:] + ".json", "RepoTags": [ref] if ref else None,
                     "Layers": [diff_id[7:] + "/layer.tar"]}]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for name, data in ((image_id[7:] + ".json", config_bytes), (diff_id[7:] + "/layer.tar", layer),
                               ("manifest.json", json.dumps(manifest).encode())):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), stackmod.FIXED_MTIME, 0o644
                tf.addfile(ti, io.BytesIO(data))
        if ref:
            self.refs.append(ref)
        self.ids.append(image_id)
        self.docker("load", "-q", input=buf.getvalue())
        return image_id

    def digest_only(self, img) -> str:
        """``img`` (pushed) pulled back by digest alone: no tag, one digest reference."""
        assert img.digest
        self.docker("rmi", *img.refs)
        ref = f"{img.repo}@{img.digest}"
        self.docker("pull", "-q", ref)
        info = self.inspect(img.id)
        assert not info["RepoTags"] and info["RepoDigests"] == [ref], info
        return ref

    def push_as(self, img, repo: str) -> str:
        """Tag ``img`` into ``repo`` and push it there; returns ``repo@digest``
        (the manifest, hence the digest, is the same in every repository)."""
        ref = self.tag(img.ref, f"{repo}:pushed")
        self.docker("push", ref)
        digest = stackmod.registry_digest(ref)
        self.registry.append((stackmod.split_ref(ref)[1], digest))
        return f"{repo}@{digest}"

    # -- containers

    def stopped(self, ref: str) -> str:
        return self.mk.container(ref)

    def running(self, ref: str) -> str:
        name = f"dockhand-oracle-{uuid.uuid4().hex[:12]}"
        self.containers.append(name)
        self.docker("run", "-d", "--network", "none", "--name", name, ref, "sleep", "600")
        return name

    def paused(self, ref: str) -> str:
        name = self.running(ref)
        self.docker("pause", name)
        return name

    def cleanup(self) -> None:
        for c in reversed(self.containers):
            self.docker("rm", "-f", c, check=False)
        for c in self.mk.containers:  # before their images go
            self.docker("rm", "-f", c, check=False)
        for ref in dict.fromkeys(self.refs):
            self.docker("rmi", "-f", ref, check=False)
        for image_id in dict.fromkeys(self.ids):
            if self.docker("image", "inspect", image_id, check=False).returncode == 0:
                self.docker("rmi", "-f", image_id, check=False)
        for path, digest in self.registry:
            self.stack.registry_get(f"/v2/{path}/manifests/{digest}", method="DELETE")


@pytest.fixture
def world(stack, make_image, tmp_path):
    w = World(stack, make_image, tmp_path)
    try:
        yield w
    finally:
        w.cleanup()


# --------------------------------------------------------------------------
# the situations: each builds on the engine and returns the command to compare


def s_rmi_single_tag(w):
    img = w.image()
    return Rmi([img.ref])


def s_rmi_default_tag(w):
    img = w.image()
    return Rmi([img.repo])  # no tag: the CLI sends it as typed, the daemon adds :latest


def s_rmi_one_of_two_tags(w):
    img = w.image(extra_tags=["v2"])
    return Rmi([img.ref])


def s_rmi_id_two_tags_one_repo(w):
    img = w.image(extra_tags=["v2", "v3"])
    return Rmi([img.id])


def s_rmi_id_tags_in_two_repos(w):
    img = w.image()
    w.tag(img.ref, w.repo("other") + ":latest")
    return Rmi([img.id[7:19]])


def s_rmi_force_id_tags_in_two_repos(w):
    img = w.image(extra_tags=["v2"])
    w.tag(img.ref, w.repo("other") + ":1")
    return Rmi([img.id], force=True)


def s_rmi_id_prefix_single_tag(w):
    img = w.image()
    return Rmi([img.id[7:19]])


def s_rmi_full_hex_id(w):
    img = w.image()
    return Rmi([img.id[7:]])


def s_rmi_same_name_twice(w):
    img = w.image()
    return Rmi([img.ref, img.ref])


def s_rmi_name_then_id_two_tags(w):
    img = w.image(extra_tags=["v2"])
    return Rmi([img.ref, img.id[7:19], img.refs[1]])


def s_rmi_id_then_name(w):
    img = w.image()
    return Rmi([img.id, img.ref])


def s_rmi_missing_and_present(w):
    img = w.image()
    gone = w.repo("gone")
    return Rmi([f"{gone}:nope", img.ref, "sha256:" + "0" * 64])


def s_rmi_force_missing(w):
    img = w.image()
    return Rmi([f"{w.repo('gone')}:nope", img.ref], force=True)


def s_rmi_stopped_container_by_name(w):
    img = w.image()
    w.stopped(img.ref)
    return Rmi([img.ref])


def s_rmi_stopped_container_by_id(w):
    img = w.image()
    w.stopped(img.ref)
    return Rmi([img.id[7:19]])


def s_rmi_force_stopped_container(w):
    img = w.image()
    w.stopped(img.ref)
    w.stopped(img.id)
    return Rmi([img.ref], force=True)


def s_rmi_force_id_stopped_container_two_repos(w):
    img = w.image()
    w.tag(img.ref, w.repo("other") + ":x")
    w.stopped(img.ref)
    return Rmi([img.id], force=True)


def s_rmi_two_tags_one_used_by_stopped(w):
    img = w.image(extra_tags=["v2"])
    w.stopped(img.ref)
    return Rmi([img.ref, img.refs[1]])


def s_rmi_running_by_name(w):
    img = w.image()
    w.running(img.ref)
    return Rmi([img.ref])


def s_rmi_force_running_by_name(w):
    img = w.image()
    w.running(img.ref)
    return Rmi([img.ref], force=True)


def s_rmi_running_by_id(w):
    img = w.image()
    w.running(img.ref)
    w.stopped(img.ref)
    return Rmi([img.id[7:19]])


def s_rmi_force_running_by_id_two_tags(w):
    img = w.image(extra_tags=["v2"])
    w.running(img.ref)
    return Rmi([img.id], force=True)


def s_rmi_digest_reference(w):
    img = w.image(push=True)
    return Rmi([f"{img.repo}@{img.digest}"])


def s_rmi_tag_takes_same_repo_digest(w):
    img = w.image(push=True)
    w.tag(img.ref, w.repo("other") + ":keep")
    return Rmi([img.ref])


def s_rmi_id_tag_and_digest_one_repo(w):
    img = w.image(push=True)
    return Rmi([img.id[7:19]])


def s_rmi_digest_only_image_by_name(w):
    img = w.image(push=True)
    ref = w.digest_only(img)
    w.stopped(ref)
    return Rmi([ref, img.id[7:19]])


def s_rmi_child_prunes_intermediates(w):
    base = w.image()
    w.child(base.ref, w.repo("child") + ":1")
    return Rmi([w.refs[-1]])


def s_rmi_child_no_prune(w):
    base = w.image()
    w.child(base.ref, w.repo("child") + ":1", label="extra=yes")
    return Rmi([w.refs[-1]], noprune=True)


def s_rmi_base_with_child(w):
    base = w.image()
    w.child(base.ref, w.repo("child") + ":1")
    return Rmi([base.ref, base.id[7:19]])


def s_rmi_force_base_id_with_child(w):
    base = w.image(extra_tags=["v2"])
    w.child(base.ref, w.repo("child") + ":1")
    return Rmi([base.id], force=True)


def s_rmi_child_then_untagged_base(w):
    base = w.image()
    child_ref = w.repo("child") + ":1"
    w.child(base.ref, child_ref)
    w.docker("rmi", base.ref)  # the base only loses its tag: it has a child
    return Rmi([child_ref])


def s_rmi_intermediate_by_id(w):
    base = w.image()
    child_id = w.child(base.ref, w.repo("child") + ":1", steps=3)
    parent = w.inspect(child_id)["Parent"]
    return Rmi([parent[7:19], child_id])


def s_rmi_dangling_by_id(w):
    old = w.image()
    w.dangle(old)
    return Rmi([old.id[7:19]])


def s_rmi_mixed_batch(w):
    a = w.image(extra_tags=["v2"])
    b = w.image()
    w.stopped(b.ref)
    c = w.image()
    w.tag(c.ref, w.repo("other") + ":c")
    return Rmi([a.refs[1], b.ref, c.id[7:19], a.id, c.ref, b.id])


def s_rmi_name_is_own_id_prefix(w):
    img = w.image()
    prefix = img.id[7:19]
    w.tag(img.ref, prefix)  # a local name (docker.io/library/<hex>) that is also the image's ID prefix
    return Rmi([prefix])


def s_rmi_name_is_other_id_prefix(w):
    a = w.image()
    b = w.image()
    prefix = a.id[7:19]
    w.tag(b.ref, prefix)  # the name wins over the ID prefix
    return Rmi([prefix, prefix])


def s_rmi_missing_id_forms(w):
    w.image()
    nowhere = uuid.uuid4().hex
    return Rmi(["sha256:" + nowhere[:12], nowhere[:12], "sha256:" + hashlib.sha256(nowhere.encode()).hexdigest()])


def s_rmi_ambiguous_id_prefix(w):
    prefix = uuid.uuid4().hex[:4]
    a = w.load(w.repo("amb") + ":1", 1577836800, id_prefix=prefix)
    w.load(w.repo("amb") + ":2", 1577836800, id_prefix=prefix)
    return Rmi([prefix, a[7:19]])


def s_rmi_tag_and_digest_reference(w):
    img = w.image(push=True)
    return Rmi([f"{img.ref}@{img.digest}"])


def s_rmi_other_tag_with_digest(w):
    img = w.image(push=True, extra_tags=["v2"])
    return Rmi([f"{img.repo}:nosuchtag@{img.digest}", img.ref])


def s_rmi_id_digests_in_two_repos(w):
    img = w.image()
    first = w.push_as(img, w.repo("one"))
    second = w.push_as(img, w.repo("two"))
    w.docker("rmi", *w.refs[-2:], img.ref)
    w.docker("pull", "-q", first)
    w.docker("pull", "-q", second)
    return Rmi([img.id[7:19], first, img.id[7:19]])


def s_rmi_paused_container(w):
    img = w.image()
    w.paused(img.ref)
    return Rmi([img.id[7:19], img.ref], force=True)


def s_rmi_id_tag_and_digest_in_other_repo(w):
    img = w.image()
    other = w.push_as(img, w.repo("other"))
    w.docker("rmi", w.refs[-1])  # the other repository keeps nothing ...
    w.docker("pull", "-q", other)  # ... but the digest, pulled back onto the same image
    assert w.inspect(img.id)["RepoDigests"] == [other]
    return Rmi([img.id[7:19], img.ref, img.id[7:19]])


def s_rmi_child_with_container_on_intermediate(w):
    base = w.image()
    child_id = w.child(base.ref, w.repo("child") + ":1", steps=3, size=5_000)
    grandparent = w.inspect(w.inspect(child_id)["Parent"])["Parent"]
    w.stopped(grandparent)  # the prune of parents stops there, quietly
    return Rmi([w.refs[-1]])


def s_prune_dangling(w):
    old = w.image(size=20_000)
    w.dangle(old)
    kept = w.image()  # tagged: a plain prune leaves it
    w.stopped(kept.ref)
    return Prune()


def s_prune_dangling_used(w):
    a = w.image(size=10_000)
    w.dangle(a)
    b = w.image()
    w.dangle(b)
    w.stopped(b.id)
    return Prune()


def s_prune_all_unused(w):
    w.image(size=30_000)
    w.image(extra_tags=["v2"])
    used = w.image()
    w.stopped(used.ref)
    run = w.image()
    w.running(run.ref)
    return Prune(all=True)


def s_prune_all_used_with_two_tags(w):
    img = w.image(extra_tags=["v2"])
    w.stopped(img.ref)
    return Prune(all=True)


def s_prune_all_child_chain(w):
    base = w.image(size=5_000)
    w.child(base.ref, w.repo("child") + ":1", steps=3, size=7_000)
    return Prune(all=True)


def s_prune_dangling_child_chain(w):
    base = w.image()
    ref = w.repo("child") + ":1"
    w.child(base.ref, ref, size=9_000)
    w.child(base.ref, ref)  # takes the tag: the first child dangles, with its intermediates
    return Prune()


def s_prune_digest_only(w):
    img = w.image(push=True, size=4_000)
    w.digest_only(img)
    return Prune()


def s_prune_label_not(w):
    w.image(size=1_000)
    w.image(labels={"keep": "yes"})
    w.image(labels={"keep": "no"})
    return Prune(all=True, extra_filters=["label!=keep=yes"])


def s_prune_until(w):
    w.load(w.repo("old") + ":2020", 1577836800)  # 2020-01-01
    w.load(w.repo("edge") + ":2021", 1609459200)  # exactly the cutoff: pruned (only "after" is kept)
    w.load(w.repo("new") + ":2022", 1640995200)
    w.image()  # created now
    return Prune(all=True, until="1609459200")


def s_prune_until_dangling(w):
    w.load(None, 1577836800, size=3_000)
    w.load(None, 1640995200)
    w.load(w.repo("tagged") + ":1", 1577836800)
    return Prune(until="1609459200")


def s_prune_until_base_older_than_child(w):
    base_ref = w.repo("base") + ":1"
    w.load(base_ref, 1577836800)
    w.child(base_ref, w.repo("child") + ":1")  # created now: after the cutoff
    return Prune(all=True, until="1609459200")


def s_prune_until_duration(w):
    w.load(w.repo("old") + ":1", 1577836800)
    w.load(None, 1577836800)
    w.image()  # created now: not older than an hour
    return Prune(all=True, until="1h")


def s_prune_until_date(w):
    w.load(w.repo("old") + ":1", 1577836800)
    w.load(w.repo("new") + ":1", 1640995200)
    return Prune(all=True, until="2021-01-01T00:00:00Z")


def s_prune_all_used_base_with_child(w):
    base = w.image(size=3_000)
    w.stopped(base.ref)
    w.child(base.ref, w.repo("child") + ":1", size=6_000)
    return Prune(all=True)


def s_prune_all_base_two_tags_with_child(w):
    base = w.image(extra_tags=["v2"], size=2_000)
    w.tag(base.ref, w.repo("elsewhere") + ":b")
    w.child(base.ref, w.repo("child") + ":1", steps=3)
    return Prune(all=True)


def s_prune_digest_only_two_repos(w):
    img = w.image(size=2_000)
    first = w.push_as(img, w.repo("one"))
    second = w.push_as(img, w.repo("two"))
    w.docker("rmi", *w.refs[-2:], img.ref)
    w.docker("pull", "-q", first)
    w.docker("pull", "-q", second)
    return Prune()


def s_prune_all_tags_and_digests(w):
    img = w.image(push=True, extra_tags=["v2"], size=1_000)
    w.push_as(img, w.repo("other"))
    return Prune(all=True)


SITUATIONS = {name[2:]: fn for name, fn in list(globals().items()) if name.startswith("s_") and callable(fn)}


# --------------------------------------------------------------------------
# comparing


def _model(stack) -> plans.Model:
    async def read():
        engine = DockerEngine(stack.docker_host)
        try:
            return await plans.read_model(engine)
        finally:
            await engine.close()

    return asyncio.run(read())


def _normalise(message: str) -> str:
    """The daemon names one of the containers using an image, picked arbitrarily."""
    return re.sub(r"\bcontainer [0-9a-f]{12}\b", "container <id>", message)


def _filters(w: World, action: Prune) -> list[str]:
    return [f"label={LABEL_KEY}={w.label}", *action.extra_filters] + ([f"until={action.until}"] if action.until else [])


def _label_match(filters: list[str]):
    """image_prune.go's matchLabels for label= / label!= (key or key=value)."""
    pos = [f[len("label="):] for f in filters if f.startswith("label=")]
    neg = [f[len("label!="):] for f in filters if f.startswith("label!=")]
    if prunefilters is not None and hasattr(prunefilters, "match_labels"):
        spec = {"label": pos, "label!": neg}
        spec = {k: v for k, v in spec.items() if v}
        return lambda labels: prunefilters.match_labels(spec, labels)

    def one(f: str, labels) -> bool:
        k, eq, v = f.partition("=")
        return k in labels and (not eq or labels[k] == v)

    def match(labels) -> bool:
        labels = labels or {}
        return all(one(f, labels) for f in pos) and not (neg and all(one(f, labels) for f in neg))

    return match


def _until(value: str | None) -> float | None:
    if value is None:
        return None
    if prunefilters is not None and hasattr(prunefilters, "check_until"):
        # values here carry their zone (or none is needed): the daemon's offset does not matter
        return prunefilters.check_until([value], time.time(), 0)
    if not re.fullmatch(r"[0-9]+", value):
        pytest.skip("handlers/prunefilters.py is needed to read until=" + value)
    return float(value)  # the daemon reads a bare number as Unix seconds


def _layer_sizes(docker_client, model: plans.Model, label: str) -> dict[str, int]:
    """Chain ID -> DiffSize of every layer of this situation's images, read
    before the command (the engine reports deleted layers by chain ID).

    A layer's size is its row of the image history; rows of steps that add no
    layer (LABEL) have size 0, and every layer a situation makes has content,
    so the non-empty rows are the layers, oldest first."""
    sizes: dict[str, int] = {}
    for img in model.images.values():
        if img.labels.get(LABEL_KEY) != label:
            continue
        layers = docker_client.api.inspect_image(img.id)["RootFS"]["Layers"]
        rows = [int(h["Size"]) for h in reversed(docker_client.api.history(img.id)) if int(h["Size"])]
        assert len(rows) == len(layers), (img.id, rows, layers)
        chain = ""
        for diff_id, size in zip(layers, rows):
            chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
            sizes[chain] = size
    return sizes


@pytest.mark.parametrize("name", list(SITUATIONS))
def test_plan_matches_engine(name, stack, docker_client, world):
    action = SITUATIONS[name](world)
    model = _model(stack)
    layer_sizes = _layer_sizes(docker_client, model, world.label)
    if isinstance(action, Rmi):
        _compare_rmi(stack, model, layer_sizes, action)
    else:
        _compare_prune(stack, world, model, layer_sizes, action)


def _show(action, story: str) -> None:
    if os.environ.get("DOCKHAND_ORACLE_SHOW"):  # DOCKHAND_ORACLE_SHOW=1 pytest -s: every comparison
        print(f"\n=== {action}{story}")


def _deleted(lines: list[str], prefix: str, model, layer_sizes) -> tuple[set[str], int]:
    """(image IDs deleted, bytes of the layers released) from the CLI's lines."""
    ids = {line[len(prefix):] for line in lines if line.startswith(prefix)}
    images = ids & set(model.images)
    layers = ids - images
    unknown = layers - set(layer_sizes)
    assert not unknown, f"layers of images outside the situation were released: {unknown}"
    return images, sum(layer_sizes[c] for c in layers)


def _compare_rmi(stack, model, layer_sizes, action: Rmi):
    flags = (["-f"] if action.force else []) + (["--no-prune"] if action.noprune else [])
    plan = plans.plan_rmi(model, list(action.args), force=action.force, noprune=action.noprune,
                          command="docker rmi " + " ".join(flags + action.args))
    r = stack.docker("rmi", *flags, *action.args, check=False)
    out = r.stdout.splitlines()
    untagged = {line[len("Untagged: "):] for line in out if line.startswith("Untagged: ")}
    deleted, released = _deleted(out, "Deleted: ", model, layer_sizes)
    errors = [line[len(DAEMON):] for line in r.stderr.splitlines() if line.startswith(DAEMON)]
    refusals = [i.refusal for i in plan.items if i.refusal]
    story = (f"\nplan: {json.dumps(plan.to_json(), indent=1)}\ncli rc={r.returncode}\nstdout:\n{r.stdout}"
             f"stderr:\n{r.stderr}")
    _show(action, story)
    assert [_normalise(e) for e in errors] == [_normalise(m) for m in refusals], story
    assert set(plan.untagged) == untagged, story
    assert set(plan.deleted) == deleted, story
    assert plan.freed == released, story
    fatal = any(not m.startswith("No such image") for m in refusals)
    assert r.returncode == (1 if refusals and (fatal or not action.force) else 0), story


def _compare_prune(stack, w: World, model, layer_sizes, action: Prune):
    filters = _filters(w, action)
    plan = plans.plan_prune(model, all=action.all, until=_until(action.until), label_match=_label_match(filters),
                            command="docker image prune")
    argv = ["image", "prune", "-f"] + (["-a"] if action.all else [])
    for f in filters:
        argv += ["--filter", f]
    r = stack.docker(*argv)
    out = r.stdout.splitlines()
    untagged = {line[len("untagged: "):] for line in out if line.startswith("untagged: ")}
    deleted, released = _deleted(out, "deleted: ", model, layer_sizes)
    total = [line[len("Total reclaimed space: "):] for line in out if line.startswith("Total reclaimed space: ")]
    story = f"\nplan: {json.dumps(plan.to_json(), indent=1)}\nstdout:\n{r.stdout}stderr:\n{r.stderr}"
    _show(action, story)
    assert set(plan.untagged) == untagged, story
    assert set(plan.deleted) == deleted, story
    assert total == [human_size(released, 4)], story  # our reading of the released layers is the engine's
    assert total == [human_size(plan.freed, 4)], story  # the CLI's units.HumanSize: 4 significant digits
    assert plan.freed == released, story
    assert not plan.refused, story

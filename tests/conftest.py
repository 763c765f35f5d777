"""Shared fixtures for Dockhand's tests.

Integration fixtures use the private test stack from tests/stack/stack.py (a private
dockerd, a registry and a fake Docker Hub index on 127.0.0.1; never the system daemon's socket):

* ``stack`` (session): runs ``stack.py up`` (idempotent; ~0.3 s when already up) and
  returns a :class:`Stack` with ``docker_host``, ``registry``, ``index``, ``state``,
  ``seed(key)``, ``reseed()`` and ``stack.docker(*args, check=True)`` for the real docker
  CLI against the private engine.
  While the session runs, DOCKER_HOST / DOCKER_CONFIG point at the private engine, so
  anything calling ``docker.from_env()`` cannot reach another daemon.
* ``docker_client`` (session): ``docker.DockerClient`` for the private engine.
* ``make_image`` (function): factory for throwaway images with unique names and distinct
  content; everything it creates (tags, pushes, containers) is removed in teardown.

Tests using any of these are marked ``integration`` automatically
(``pytest -m "not integration"`` skips them).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
STACK_PY = TESTS_DIR / "stack" / "stack.py"
STACK_FIXTURES = {"stack", "docker_client", "make_image"}


def _load_stack_module():
    name = "dockhand_test_stack"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STACK_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


stackmod = _load_stack_module()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ()) or ()):
            item.add_marker(pytest.mark.integration)


class DockerCLIError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        cmd = " ".join(self.cmd[3:]) if isinstance(self.cmd, list) else self.cmd
        err = (self.stderr or self.output or "").strip()
        return f"`docker {cmd}` exited {self.returncode}: {err}"


class Stack:
    """The running private stack, as recorded in its state.json."""

    def __init__(self, state_dir: str):
        self.dir = state_dir
        self.paths = stackmod.Paths(state_dir)
        self.reload()

    def reload(self) -> dict:
        with open(self.paths.state, encoding="utf-8") as f:
            self.state = json.load(f)
        self.docker_host: str = self.state["docker_host"]
        self.docker_config: str = self.state["docker_config"]
        self.registry: str = self.state["registry"]
        self.index: str = self.state["index"]
        self.registry_url = f"http://{self.registry}"
        self.index_url = f"http://{self.index}"
        self.seeds: dict = self.state.get("seeds", {})
        return self.state

    def reseed(self) -> dict:
        """Run `stack.py seed` (recreates only what is missing, ~0.2 s otherwise) and reload.

        For tests that rely on volatile seeds: the dangling image (any `image prune`
        deletes it) or the registry-only pullme images being absent locally.
        """
        r = run_stack("seed", env=dict(os.environ, DOCKHAND_STACK_DIR=self.dir))
        if r.returncode != 0:
            raise RuntimeError((r.stderr.strip().splitlines() or ["stack.py seed failed"])[-1])
        return self.reload()

    def seed(self, key: str) -> str:
        """Reference of a seed image, e.g. seed('busybox_136') -> '127.0.0.1:P/dockhand/busybox:1.36'."""
        return self.seeds[key]["ref"]

    @property
    def env(self) -> dict:
        env = stackmod.cli_env(self.paths)
        env["DOCKER_HOST"] = self.docker_host
        env["DOCKER_CONFIG"] = self.docker_config
        return env

    def docker(self, *args: str, check: bool = True, input: str | bytes | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
        """Run the real docker CLI against the private engine; text output."""
        cli = stackmod.docker_cli()
        argv = [cli, "-H", self.docker_host, *map(str, args)]
        if isinstance(input, bytes):
            r = subprocess.run(argv, input=input, capture_output=True, env=self.env, timeout=timeout)
            r = subprocess.CompletedProcess(
                r.args, r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
            )
        else:
            r = subprocess.run(argv, input=input, capture_output=True, text=True, encoding="utf-8",
                               errors="replace", env=self.env, timeout=timeout)  # fmt: skip
        if check and r.returncode != 0:
            raise DockerCLIError(r.returncode, argv, r.stdout, r.stderr)
        return r

    def registry_get(self, path: str, method: str = "GET", headers: dict | None = None):
        """(status, headers, body bytes) from the private registry; path like '/v2/_catalog'."""
        return stackmod.http_request(self.registry_url + path, method=method, headers=headers or {})

    def index_get(self, path: str):
        return stackmod.http_request(self.index_url + path)


def run_stack(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STACK_PY), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="session")
def stack():
    r = run_stack("up")
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.fail(f"private test stack did not come up: {msg}", pytrace=False)
    s = Stack(stackmod.stack_dir())
    mp = pytest.MonkeyPatch()
    for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS"):
        mp.delenv(k, raising=False)
    mp.setenv("DOCKER_HOST", s.docker_host)
    mp.setenv("DOCKER_CONFIG", s.docker_config)
    mp.setenv("DOCKHAND_TEST_REGISTRY", s.registry)
    mp.setenv("DOCKHAND_TEST_INDEX", s.index)
    try:
        yield s
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def docker_client(stack):
    import docker

    client = docker.DockerClient(base_url=stack.docker_host, timeout=120)
    try:
        yield client
    finally:
        client.close()


@dataclass
class TestImage:
    __test__ = False

    ref: str  # first reference, e.g. 127.0.0.1:P/dockhand-test/img-1a2b3c:latest
    id: str  # sha256:...
    repo: str
    tag: str
    refs: list = field(default_factory=list)  # every tag created for it
    digest: str | None = None  # registry digest when pushed


class ImageFactory:
    """Creates throwaway busybox images with unique names and distinct content.

    make_image()                                  -> R/dockhand-test/img-<hex>:latest
    make_image("mine", "1.0", extra_tags=["2.0"], labels={"a": "b"}, push=True, size=1_000_000)
    make_image.container(img)                     -> stopped container (--network none)
    Names without the registry prefix are put under R/dockhand-test/ (never Docker Hub).
    """

    __test__ = False

    def __init__(self, stack: Stack):
        self.stack = stack
        self.refs: list[str] = []
        self.ids: list[str] = []
        self.pushed: list[str] = []
        self.containers: list[str] = []

    def _repo(self, name: str | None) -> str:
        reg = self.stack.registry
        if not name:
            return f"{reg}/dockhand-test/img-{uuid.uuid4().hex[:12]}"
        if name.startswith(reg + "/"):
            return name
        return f"{reg}/dockhand-test/{name}"

    def __call__(self, name: str | None = None, tag: str = "latest", *, extra_tags=(), labels: dict | None = None,
                 push: bool = False, size: int = 0, files: dict | None = None, cmd=("/bin/sh",)) -> TestImage:  # fmt: skip
        repo = self._repo(name)
        ref = f"{repo}:{tag}"
        content = {"etc/dockhand-throwaway": f"{ref} {uuid.uuid4().hex}\n"}
        if size:
            content["data/blob.bin"] = os.urandom(size)
        content.update(files or {})
        args = ["import", "-c", "CMD " + json.dumps(list(cmd))]
        for k, v in (labels or {}).items():
            args += ["-c", f"LABEL {k}={json.dumps(str(v))}"]
        self.refs.append(ref)  # record before creating: clean up even if it half-fails
        out = self.stack.docker(*args, "-", ref, input=stackmod.rootfs_tar(content)).stdout.strip()
        image_id = out.splitlines()[-1].strip() if out else self.stack.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
        self.ids.append(image_id)
        img = TestImage(ref=ref, id=image_id, repo=repo, tag=tag, refs=[ref])
        for t in extra_tags:
            extra = f"{repo}:{t}"
            self.refs.append(extra)
            self.stack.docker("tag", ref, extra)
            img.refs.append(extra)
        if push:
            for r in img.refs:
                self.pushed.append(r)
                self.stack.docker("push", r)
            img.digest = stackmod.registry_digest(ref)
        return img

    def container(self, image, name: str | None = None, cmd=("/bin/true",)) -> str:
        """A created (never started) container using image (TestImage or ref); returns its name."""
        ref = image.ref if isinstance(image, TestImage) else image
        name = name or f"dockhand-test-{uuid.uuid4().hex[:12]}"
        self.containers.append(name)
        self.stack.docker("create", "--name", name, "--network", "none", ref, *cmd)
        return name

    def cleanup(self) -> list[str]:
        """Remove everything created; returns a list of problems (best effort, never raises)."""
        problems = []
        for c in reversed(self.containers):
            r = self.stack.docker("rm", "-f", c, check=False)
            if r.returncode and "No such container" not in r.stderr:
                problems.append(f"rm {c}: {r.stderr.strip()}")
        for ref in dict.fromkeys(self.pushed):
            try:
                digest = stackmod.registry_digest(ref)
                if digest:
                    _, repo, _ = stackmod.split_ref(ref)
                    status, _, body = self.stack.registry_get(f"/v2/{repo}/manifests/{digest}", method="DELETE")
                    if status not in (202, 404):
                        problems.append(f"registry delete {ref}: {status} {body[:200]!r}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"registry delete {ref}: {e}")
        for ref in dict.fromkeys(self.refs):
            self.stack.docker("rmi", "-f", ref, check=False)
        for image_id in dict.fromkeys(self.ids):
            r = self.stack.docker("image", "inspect", image_id, check=False)
            if r.returncode == 0:
                r = self.stack.docker("rmi", "-f", image_id, check=False)
                if r.returncode:
                    problems.append(f"rmi {image_id[:19]}: {r.stderr.strip()}")
        self.containers.clear()
        self.pushed.clear()
        self.refs.clear()
        self.ids.clear()
        return problems


@pytest.fixture
def make_image(stack):
    factory = ImageFactory(stack)
    try:
        yield factory
    finally:
        problems = factory.cleanup()
        if problems:
            import warnings

            warnings.warn("make_image cleanup: " + "; ".join(problems), stacklevel=1)

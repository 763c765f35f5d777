"""Pulls that always end: a registry that stops sending mid-pull.

A small registry of the test's own (127.0.0.1, plain HTTP) serves one image
and can stop in the middle of its layer: it sends the first 256 KiB, then
nothing at all, holding the connection open. With a short stall timeout the
pull must end with a clear error within that time (plus a margin), free its
worker thread, cancel the engine's side of the pull, and leave the engine
able to pull again.

How the engine's side shows it was cancelled: dockerd 20.10 reads a blob
through a reader that only notices a cancelled pull when the next bytes
arrive (moby's CancelReadCloser), so while the registry is silent its
connection stays open. When the registry then goes on sending, a cancelled
engine hangs up at once instead of finishing the download.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import select
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.engine import DockerEngine
from handlers import errors as E
from tests.fakes.registry_image import image_documents, sha

pytestmark = pytest.mark.integration

STALL = 2.0  # seconds: the stall timeout these tests use
MARGIN = 3.0  # what the end of a pull may take beyond it (loaded CI machine)




def _layer(size: int) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("payload.bin")
        info.size = size
        tf.addfile(info, io.BytesIO(os.urandom(size)))
    tar = buf.getvalue()
    return tar, gzip.compress(tar, compresslevel=1)


class StallingRegistry:
    """Registry v2 with one image, ``stall/image:latest``.

    mode "stall": the layer's first 256 KiB, then silence (the connection stays open);
    mode "hang":  no answer at all to the manifest request;
    mode "ok":    everything, at once.
    """

    def __init__(self, arch: str, mode: str = "stall", layer_size: int = 2 * 1024 * 1024):
        self.mode = mode
        self.release = threading.Event()
        self.stalled = threading.Event()  # the registry went quiet (set when it happens)
        self.stalled_at = 0.0
        self.peer_closed = threading.Event()  # the engine hung up on a stalled request
        self.completed = threading.Event()  # a stalled request was served in full after all
        tar, self.layer = _layer(layer_size)
        self.config, self.manifest = image_documents(tar, self.layer, arch, "stalling registry")
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _headers(self, status, length, ctype="application/json", extra=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(length))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()

            def _send(self, status, body=b"", ctype="application/json", extra=None):
                self._headers(status, len(body), ctype, extra)
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _hung_up(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                try:
                    return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    return True

            def _stall_then(self, rest: bytes, first=None):
                """Send nothing until released, then (``first()`` and) ``rest`` in
                small pieces; note whether the engine hung up or took it all."""
                self.close_connection = True
                reg.stalled_at = time.monotonic()
                reg.stalled.set()
                while not reg.release.wait(0.05):
                    if self._hung_up():
                        reg.peer_closed.set()
                        return
                try:
                    if first is not None:
                        first()
                    for i in range(0, len(rest), 16384):
                        self.wfile.write(rest[i:i + 16384])
                        self.wfile.flush()
                        time.sleep(0.02)
                        if self._hung_up():
                            reg.peer_closed.set()
                            return
                except OSError:
                    reg.peer_closed.set()
                    return
                reg.completed.set()

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/v2", "/v2/"):
                    self._send(200, b"{}")
                elif "/manifests/" in path:
                    if reg.mode == "hang" and self.command == "GET":
                        body = reg.manifest
                        self._headers(200, len(body), "application/vnd.docker.distribution.manifest.v2+json",
                                      {"Docker-Content-Digest": sha(body)})
                        self._stall_then(body)
                        return
                    if reg.mode == "hang":  # HEAD: no answer until released
                        self._stall_then(b"", first=lambda: self._send(
                            200, reg.manifest, "application/vnd.docker.distribution.manifest.v2+json",
                            {"Docker-Content-Digest": sha(reg.manifest)}))
                        return
                    self._send(200, reg.manifest, "application/vnd.docker.distribution.manifest.v2+json",
                               {"Docker-Content-Digest": sha(reg.manifest)})
                elif path.endswith("/blobs/" + sha(reg.config)):
                    self._send(200, reg.config, "application/octet-stream",
                               {"Docker-Content-Digest": sha(reg.config)})
                elif path.endswith("/blobs/" + sha(reg.layer)):
                    if self.command == "HEAD" or reg.mode != "stall":
                        self._send(200, reg.layer, "application/octet-stream")
                        return
                    self._headers(200, len(reg.layer), "application/octet-stream")
                    try:
                        self.wfile.write(reg.layer[:256 * 1024])
                        self.wfile.flush()
                    except OSError:
                        return
                    self._stall_then(reg.layer[256 * 1024:])
                else:
                    self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.repository = f"{self.address}/stall/image"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def engine_arch(stack):
    return stack.docker("version", "-f", "{{.Server.Arch}}").stdout.strip() or "amd64"


@pytest.fixture
def registry(stack, engine_arch):
    made: list[StallingRegistry] = []

    def start(mode: str = "stall") -> StallingRegistry:
        reg = StallingRegistry(engine_arch, mode)
        made.append(reg)
        return reg

    try:
        yield start
    finally:
        for reg in made:
            reg.close()
            stack.docker("rmi", "-f", f"{reg.repository}:latest", check=False)


@pytest.fixture
async def engine(stack):
    e = DockerEngine(stack.docker_host, timeout=30, stall_timeout=STALL)
    try:
        yield e
    finally:
        await e.close()
        assert e.active_pulls == 0


def image_exists(stack, ref: str) -> bool:
    return stack.docker("image", "inspect", ref, check=False).returncode == 0


async def test_a_pull_that_receives_nothing_ends_with_a_clear_error(engine, registry, stack):
    reg = registry("stall")
    seen = []
    t0 = time.monotonic()
    with pytest.raises(E.EngineTimeout) as info:
        async for ev in engine.pull(reg.repository, "latest"):
            seen.append(ev)
    ended = time.monotonic()
    assert reg.stalled.is_set()
    # it ended because nothing came for STALL seconds: not before, and not much after
    assert STALL - 0.5 <= ended - reg.stalled_at <= STALL + MARGIN, ended - reg.stalled_at
    assert ended - t0 < 30
    ref = f"{reg.repository}:latest"
    assert info.value.message == f"the pull of {ref} was stopped: the registry sent nothing for 2 s"
    assert "DOCKHAND_PULL_STALL_TIMEOUT" in info.value.hint
    assert any(ev.status == "Downloading" and ev.current for ev in seen), "it was mid-download"
    # the worker thread is free
    assert engine.active_pulls == 0
    # the engine's side was cancelled: when the registry goes on, it hangs up
    reg.mode = "ok"  # (for what comes next)
    reg.release.set()
    assert await asyncio.to_thread(reg.peer_closed.wait, 10), "the engine went on downloading"
    assert not reg.completed.is_set()
    assert not image_exists(stack, ref)
    # the engine pulls again afterwards (the registry answers in full now)
    events = [ev async for ev in engine.pull(reg.repository, "latest")]
    assert events[-1].status == f"Status: Downloaded newer image for {ref}"
    assert image_exists(stack, ref)
    assert engine.active_pulls == 0


async def test_an_engine_that_never_answers_the_pull_ends_too(engine, registry, stack):
    """The engine sends no header until the registry answered the manifest:
    waiting for them is under the same deadline."""
    reg = registry("hang")
    with pytest.raises(E.EngineTimeout) as info:
        [ev async for ev in engine.pull(reg.repository, "latest")]
    assert reg.stalled.is_set()
    assert time.monotonic() - reg.stalled_at <= STALL + MARGIN
    assert "the registry sent nothing for 2 s" in info.value.message
    assert engine.active_pulls == 0
    # the registry answers at last: the cancelled pull does not go on
    reg.mode = "ok"
    reg.release.set()
    await asyncio.sleep(2)
    assert not image_exists(stack, f"{reg.repository}:latest")
    assert (await engine.version())["ApiVersion"]


async def test_the_pull_command_says_so(engine, registry, stack):
    from handlers.dispatch import dispatch
    from handlers.context import Actor, Services
    from handlers.replies import ErrorPart, Status

    reg = registry("stall")
    t0 = time.monotonic()
    reply = await dispatch(f"docker pull {reg.repository}", Actor("t"), Services(engine=engine))
    assert time.monotonic() - t0 < 30
    assert reply.status is Status.FAILED
    error = next(p for p in reply.parts if isinstance(p, ErrorPart))
    assert error.message == f"the pull of {reg.repository}:latest was stopped: the registry sent nothing for 2 s"
    assert "DOCKHAND_PULL_STALL_TIMEOUT" in error.hint
    assert engine.active_pulls == 0


async def test_a_slow_but_steady_registry_is_not_a_stall(stack, registry):
    """Only silence ends a pull: a pull that takes longer than the stall
    timeout in all, receiving all along, finishes."""
    reg = registry("ok")
    e = DockerEngine(stack.docker_host, timeout=30, stall_timeout=0.5)
    try:
        events = [ev async for ev in e.pull(reg.repository, "latest")]
        assert events[-1].status.startswith("Status: Downloaded newer image")
    finally:
        await e.close()


async def test_cancelling_a_stalled_pull_is_immediate(engine, registry):
    reg = registry("stall")

    async def consume():
        async for _ in engine.pull(reg.repository, "latest"):
            pass

    task = asyncio.create_task(consume())
    assert await asyncio.to_thread(reg.stalled.wait, 30)
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 1.5  # well before the stall timeout
    assert engine.active_pulls == 0
    reg.release.set()
    assert await asyncio.to_thread(reg.peer_closed.wait, 10)
    assert not reg.completed.is_set()


async def test_over_tcp_too(stack, registry):
    """The engine behind tcp:// (the pull's own TCP connection): a full pull,
    then a stalled one that ends on time."""
    from tests.integration.test_engine import SocketForwarder

    fwd = SocketForwarder(None, stack.state["docker_socket"])
    fwd.start()
    e = DockerEngine(fwd.host, timeout=10, stall_timeout=STALL)
    try:
        ok = registry("ok")
        events = [ev async for ev in e.pull(ok.repository, "latest")]
        assert events[-1].status == f"Status: Downloaded newer image for {ok.repository}:latest"
        reg = registry("stall")
        with pytest.raises(E.EngineTimeout):
            [ev async for ev in e.pull(reg.repository, "latest")]
        assert time.monotonic() - reg.stalled_at <= STALL + MARGIN
        assert e.active_pulls == 0
    finally:
        await e.close()
        fwd.stop()

"""A unix-socket proxy in front of the private engine that slows chosen requests.

``SlowEngineProxy(real_socket, delay, match)`` listens on a socket of its own
and forwards every byte both ways; a chunk from the client that starts with
one of ``match`` (e.g. ``b"DELETE "``) waits ``delay`` seconds first. Point a
bot at ``proxy.docker_host`` and its removals take as long as a test needs,
while every answer still comes from the real engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile


class SlowEngineProxy:
    def __init__(self, real_socket: str, *, delay: float, match: tuple[bytes, ...] = (b"DELETE ",)):
        self.real_socket, self.delay, self.match = real_socket, delay, match
        self.dir = tempfile.mkdtemp(prefix="dh-slow-")
        self.path = os.path.join(self.dir, "docker.sock")
        self.slowed = 0  # requests delayed so far
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    async def start(self) -> "SlowEngineProxy":
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_unix_connection(self.real_socket)

        async def pump(src, dst, slow: bool) -> None:
            try:
                while True:
                    chunk = await src.read(65536)
                    if not chunk:
                        break
                    if slow and chunk.startswith(self.match):
                        self.slowed += 1
                        await asyncio.sleep(self.delay)
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        tasks = [asyncio.ensure_future(pump(reader, up_w, True)), asyncio.ensure_future(pump(up_r, writer, False))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)

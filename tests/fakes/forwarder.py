"""A TCP forwarder on 127.0.0.1 in front of a test server: every connection's
bytes are passed both ways, and a subclass watches or slows them as they go
(:meth:`Forwarder.chunk`, :meth:`Forwarder.closed`)."""

from __future__ import annotations

import asyncio
import contextlib


class Forwarder:
    def __init__(self, target: str):
        self.host, _, port = target.rpartition(":")
        self.port = int(port)
        self.address = ""  # 127.0.0.1:<port>, once started
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def chunk(self, data: bytes, *, to_target: bool, conn: dict) -> None:
        """Called before ``data`` is passed on; ``conn`` is the connection's own state."""

    def closed(self, conn: dict) -> None:
        """Called once a connection has ended."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        conn: dict = {}
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return

        async def pump(src, dst, to_target: bool) -> None:
            try:
                while data := await src.read(65536):
                    await self.chunk(data, to_target=to_target, conn=conn)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pump(reader, up_w, True), pump(up_r, writer, False))
        finally:
            self.closed(conn)
            self._tasks.discard(task)

"""A unix-socket proxy that delays what an engine sends by a fixed time, to
stand for a host across a network (bench/many_hosts.py --latency).

    python3 bench/latency_proxy.py LISTEN.sock UPSTREAM.sock DELAY_MS

Each chunk from the engine is delivered DELAY_MS after it arrived, in order
(latency, not bandwidth: chunks in flight overlap). What the client sends
goes through at once. Runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        writer.close()

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            chunk = await reader.read(65536)
            await queue.put((loop.time() + delay, chunk))
            if not chunk:
                break
        await task
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()


async def main(listen: str, upstream: str, delay: float) -> None:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_unix_connection(upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw, 0.0), pipe(ur, cw, delay), return_exceptions=True)

    if os.path.exists(listen):
        os.unlink(listen)
    server = await asyncio.start_unix_server(handle, path=listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) / 1000))

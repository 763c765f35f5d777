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
  generator over the chunked response; neither the response nor its socket
  is handed back, and the engine sends no header before the registry
  answered. A pull therefore does not go through docker-py: its worker sends
  ``POST /images/create`` itself with the standard library's HTTP client, on
  a connection it opens (unix or TCP), so it owns the socket. Every read
  waits at most the stall timeout (nothing received for that long ends the
  pull with :class:`EngineTimeout`), and stopping a pull (cancel, close)
  shuts that socket down, which wakes the worker wherever it waits and makes
  the engine cancel its side of the pull. Credentials for the reference's
  registry (:mod:`bot.credentials`) go in ``X-Registry-Auth`` as the CLI
  sends them, and are scrubbed from anything the pull reports.
* A pull can fail inside a 200 stream: the last event is then
  ``{"errorDetail": {"message": …}, "error": …}`` and docker-py raises
  nothing, so every event is scanned.
* A 409 is a plain ``APIError``; a missing tag on pull is ``NotFound`` (not
  ``ImageNotFound``); docker-py turns "repository does not exist" on pull into
  ``ImageNotFound`` although it means "no access".
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import http.client
import json
import logging
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence, TypeVar

import docker
import docker.errors
import requests
import urllib3.exceptions

from bot.credentials import CredentialStore, RegistryAuth, registry_of
from bot.registry_lane import DEFAULT_PER_PERSON, DEFAULT_PER_REGISTRY, RegistryLane
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
    RunLimits,
    RunResult,
    SearchResult,
)

__all__ = ["DockerEngine", "map_error", "map_stream_error", "DAEMON_PREFIX"]

T = TypeVar("T")

log = logging.getLogger("dockhand.engine")

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
OP_RUN = "container run"

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

DEFAULT_STALL_TIMEOUT = 120.0  # seconds without a byte from the engine before a pull ends


class _PullStream:
    """What the event loop and a pull's worker thread share.

    The worker's connection hands over its socket as soon as it has made it,
    before anything is sent, so :meth:`stop` can shut it down at any point
    (while the engine has not answered yet, or mid-stream): that wakes a
    worker blocked on it, and the engine, seeing its client gone, cancels the
    pull. Only public socket calls: ``shutdown``, then ``close``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stopped = False
        self._sock: socket.socket | None = None

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.stopped:
                self._interrupt()

    def stop(self) -> None:
        """Ask the worker to stop; wakes it if it is blocked reading."""
        with self._lock:
            self.stopped = True
            self._interrupt()

    def _interrupt(self) -> None:  # the lock is held
        if self._sock is not None:
            try:
                # the plain socket's shutdown(2), for TLS too: it only wakes the reader
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def release(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class _PullConnection(http.client.HTTPConnection):
    """HTTP to the engine on a socket this module opens itself: a unix socket
    (``unix://``), TCP (``tcp://``, ``http://``) or TLS over TCP with the
    system's CAs (``https://``). ``on_socket`` gets it as soon as it exists;
    once connected, every wait for the engine lasts at most ``stall_timeout``."""

    def __init__(self, docker_host: str, connect_timeout: float, stall_timeout: float,
                 on_socket: Callable[[socket.socket], None]):
        self._unix_path = _unix_socket_path(docker_host)
        self._tls: ssl.SSLContext | None = None
        if self._unix_path is not None:
            host, port = "localhost", None
        else:
            parsed = urllib.parse.urlsplit(docker_host)
            try:
                port = parsed.port
            except ValueError:
                port = None
            host = parsed.hostname or ""
            if parsed.scheme == "https" and host:
                self._tls, port = ssl.create_default_context(), port or 443
            elif not (parsed.scheme in ("tcp", "http") and host and port):
                raise EngineError(f"{OP_PULL} failed: Dockhand pulls through a unix://, tcp:// or https:// "
                                  f"DOCKER_HOST, not {docker_host}")
        super().__init__(host, port, timeout=connect_timeout)
        self._stall_timeout = stall_timeout
        self._on_socket = on_socket

    def connect(self) -> None:
        if self._unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._on_socket(sock)
            sock.settimeout(self.timeout)
            sock.connect(self._unix_path)
        else:
            sock = socket.create_connection((self.host, self.port), self.timeout)
            self._on_socket(sock)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
                self._on_socket(sock)
        sock.settimeout(self._stall_timeout)
        self.sock = sock


def _json_stream(response: http.client.HTTPResponse) -> Iterable[Any]:
    """The JSON values of the engine's progress stream as they arrive (one a
    line, but a value may be split across reads)."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")("replace")
    buf = ""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            return
        buf += text.decode(chunk)
        pos, size = 0, len(buf)
        while True:
            while pos < size and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= size:
                break
            try:
                value, pos = decoder.raw_decode(buf, pos)
            except ValueError:  # not complete yet
                break
            yield value
        buf = buf[pos:]


def _for_person(error: EngineError, auth: RegistryAuth | None) -> EngineError:
    """``error`` without any form of the credentials in its words; a refusal
    gets a hint naming where credentials come from."""
    if auth is None:
        return error
    if isinstance(error, RegistryUnauthorized):
        error.hint = auth.unauthorized_hint()
    error.message = auth.scrub(error.message)
    error.hint = auth.scrub(error.hint)
    error.args = (error.message,)
    return error


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

    def __init__(self, docker_host: str, *, timeout: float = 60.0, max_workers: int = 8,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT, credentials: CredentialStore | None = None,
                 per_person: int = DEFAULT_PER_PERSON, per_registry: int = DEFAULT_PER_REGISTRY):
        if max_workers < 2:
            raise ValueError("max_workers must be at least 2")
        if per_person < 1 or per_registry < 1:
            raise ValueError("per_person and per_registry must be at least 1")
        if stall_timeout <= 0:
            raise ValueError("stall_timeout must be more than 0 seconds")
        self._host = docker_host
        self._timeout = float(timeout)
        # A pull that receives nothing for this long ends (DOCKHAND_PULL_STALL_TIMEOUT).
        self._stall_timeout = float(stall_timeout)
        # Registry credentials for pulls; by default the Docker CLI's config ($DOCKER_CONFIG).
        self._credentials = credentials if credentials is not None else CredentialStore()
        self._executor = ThreadPoolExecutor(max_workers=max_workers,
                                            thread_name_prefix="dockhand-engine")
        self._max_workers = max_workers
        # Pulls and searches wait on registries, sometimes for long: together
        # they may hold all workers but two, so local calls (list, inspect,
        # info, ...) always find a free worker. Within that bound they are
        # shared fairly (bot/registry_lane.py): at most `per_person` for one
        # person and `per_registry` for one registry, so another person's or
        # another registry's call finds a slot at once; a fair queue orders
        # the rest (DOCKHAND_PER_PERSON_REGISTRY_CALLS, DOCKHAND_PER_REGISTRY_CALLS).
        self._registry_slots = max(1, max_workers - 2)
        self._per_person, self._per_registry = per_person, per_registry
        self._gate: RegistryLane | None = None
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

    def _registry_gate(self) -> RegistryLane:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:
            self._gate = RegistryLane(self._registry_slots, per_person=self._per_person,
                                      per_registry=self._per_registry)
            self._gate_loop = loop
        return self._gate

    @property
    def registry_lane(self) -> RegistryLane | None:
        """The registry lane of the loop that last used it (None before any registry call)."""
        return self._gate

    # -- Engine ------------------------------------------------------------

    async def list_images(self, *, all: bool = False, filters: Filters | None = None) -> list[ImageSummary]:
        normalized = _normalize_filters(filters)
        raw = await self._run(OP_LIST, lambda api: api.images(all=all, filters=normalized))
        return [_summary(r) for r in raw or ()]

    async def inspect_image(self, ref: str) -> dict:
        return await self._run(OP_INSPECT, lambda api: api.inspect_image(ref), ref=ref)

    def pull(self, repository: str, tag: str, *, owner: str = "", platform: str = "") -> AsyncIterator[PullEvent]:
        """Pull ``repository:tag`` for ``owner``; events arrive as the engine sends them.

        The tag is required: an empty tag would make the engine pull every
        tag of the repository. Leaving the loop early (``break``, cancel,
        ``aclose()``) stops the transfer and frees its worker thread.
        ``owner`` (a person's id) is whose share of the registry lane it uses.
        """
        # Not a bare `assert`: this must hold under `python -O` too.
        if not tag:
            raise AssertionError("pull() needs a tag: without one the engine pulls every tag")
        if not repository:
            raise AssertionError("pull() needs a repository")
        return self._pull(repository, tag, owner, platform)

    async def _pull(self, repository: str, tag: str, owner: str = "", platform: str = "") -> AsyncIterator[PullEvent]:
        self._check_open()
        loop = asyncio.get_running_loop()
        ref = f"{repository}:{tag}"
        async with self._registry_gate().slot(owner, registry_of(repository)):
            self._check_open()
            queue: asyncio.Queue = asyncio.Queue()
            stream = _PullStream()
            with self._streams_lock:
                self._streams.add(stream)
            try:
                fut = loop.run_in_executor(self._executor, self._pull_worker,
                                           repository, tag, stream, loop, queue, platform)
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
                     loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, platform: str = "") -> None:
        """Runs in a worker thread: send the pull and read the engine's stream
        into ``queue``.

        Puts any number of ("event", PullEvent), then exactly one terminal
        item: ("done", None), ("error", EngineError) or ("stopped", None).
        Nothing that reaches the queue carries the credentials sent."""
        ref = f"{repository}:{tag}"

        def put(kind: str, payload: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
            except RuntimeError:  # the loop is gone: nobody is listening
                pass

        terminal: tuple[str, Any] = ("stopped", None)
        auth: RegistryAuth | None = None
        conn: _PullConnection | None = None
        sent = False
        try:
            if stream.stopped:
                return
            version = self._client().api_version  # negotiated once, by the shared client
            auth = self._credentials.lookup(repository)
            if auth.problem:
                log.warning("pull %s: no credentials for %s: %s", ref, auth.registry, auth.problem)
            elif auth.source:
                log.debug("pull %s: credentials for %s from %s", ref, auth.registry, auth.source)
            if stream.stopped:
                return
            conn = _PullConnection(self._host, self._timeout, self._stall_timeout, stream.attach)
            conn.connect()  # from here on, every wait for the engine lasts at most the stall timeout
            if stream.stopped:
                return
            params = {"fromImage": repository, "tag": tag}
            if platform:
                params["platform"] = platform  # os[/arch[/variant]], as `docker pull --platform` sends it
            query = urllib.parse.urlencode(params)
            headers = {"Content-Length": "0"}
            if auth.header():
                headers["X-Registry-Auth"] = auth.header()
            sent = True
            conn.request("POST", f"/v{version}/images/create?{query}", headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                raise _api_error(response.status, response.reason, response.read())
            for raw in _json_stream(response):
                if stream.stopped:
                    return
                if not isinstance(raw, dict):
                    continue
                event = _event(raw)
                if auth.auth:
                    event = dataclasses.replace(event, status=auth.scrub(event.status),
                                                error=auth.scrub(event.error))
                put("event", event)
                if event.error:  # an error inside a 200 stream: it ends here
                    terminal = ("error", _for_person(map_stream_error(event.error, operation=OP_PULL, ref=ref),
                                                     auth))
                    return
            terminal = ("stopped", None) if stream.stopped else ("done", None)
        except Exception as exc:
            if not stream.stopped:
                if sent and _is_timeout(exc):
                    error: EngineError = EngineTimeout(
                        f"the pull of {ref} was stopped: the registry sent nothing for "
                        f"{_fmt_seconds(self._stall_timeout)} s",
                        f"Nothing arrived from the engine at {self._host} for "
                        f"{_fmt_seconds(self._stall_timeout)} s (DOCKHAND_PULL_STALL_TIMEOUT), so Dockhand "
                        "ended the pull and the engine's transfer with it. Check the registry and the "
                        "host's way to it, then pull again; raise DOCKHAND_PULL_STALL_TIMEOUT if the "
                        "registry is only slow.")
                    log.warning("pull %s: nothing received for %g s: stopped", ref, self._stall_timeout)
                else:
                    error = map_error(exc, host=self._host, operation=OP_PULL, timeout=self._timeout, ref=ref)
                terminal = ("error", _for_person(error, auth))
        finally:
            stream.release()  # first: stop() no longer touches the socket
            if conn is not None:
                conn.close()
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

    async def search(self, term: str, *, limit: int = 25, filters: Filters | None = None,
                     owner: str = "") -> list[SearchResult]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidArgument(f"invalid limit {limit}: must be between 1 and 100")
        params: dict[str, Any] = {"term": term, "limit": limit}
        encoded = _encode_filters(filters)
        if encoded:
            params["filters"] = encoded

        def call(api: docker.APIClient) -> list:
            # APIClient.search() knows no filters: same endpoint, one more parameter.
            return api._result(api._get(api._url("/images/search"), params=params), True)

        # its registry: the index the term names (`host:port/name`), else Docker Hub
        async with self._registry_gate().slot(owner, registry_of(term)):
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

    # -- containers: `docker run` as a smoke test (handlers/run.py) ----------
    #
    # A container's whole life (create, start, wait, output, remove) runs in
    # a thread of its own, not in the pool: it waits up to the time limit, and
    # a pool worker held that long would make local calls queue. The thread
    # removes the container in a `finally`, whatever happens to the caller; a
    # cancelled caller kills the container (by its name, chosen before it is
    # created) so that thread ends at once. Each container carries a deadline
    # label: a run that finds one past it (its Dockhand died mid-run) removes it.

    run_limits: RunLimits = RunLimits()  # wiring sets the host's settings

    def _run_lane(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        lane: asyncio.Semaphore | None = getattr(self, "_runs_lane", None)
        if lane is None or getattr(self, "_runs_lane_loop", None) is not loop:
            lane = asyncio.Semaphore(RUN_SLOTS)
            self._runs_lane, self._runs_lane_loop = lane, loop
        return lane

    async def run_container(self, image: str, command: Sequence[str] = (), *,
                            entrypoint: Sequence[str] | None = None, limits: RunLimits,
                            tail_lines: int = 50, tail_bytes: int = 8192) -> RunResult:
        """``docker run --rm`` of ``image`` (already on the host), sandboxed:
        network mode none, read-only root filesystem, ``limits``, no
        capabilities, no new privileges; killed at ``limits.timeout``. The
        container is removed in every case (see :class:`RunResult`)."""
        if not image:
            raise AssertionError("run_container() needs an image")
        self._check_open()
        async with self._run_lane():
            self._check_open()
            job = _RunJob(image=image, command=list(command), entrypoint=None if entrypoint is None
                          else list(entrypoint), limits=limits, tail_lines=max(1, tail_lines),
                          tail_bytes=max(1, tail_bytes))
            loop = asyncio.get_running_loop()
            job.future = loop.create_future()
            threading.Thread(target=self._run_worker, args=(job, loop), name="dockhand-run", daemon=False).start()
            try:
                outcome = await asyncio.shield(job.future)
            except asyncio.CancelledError:
                job.stop.set()
                with contextlib.suppress(Exception):  # wakes the thread's wait; it removes the container
                    await self._run(OP_RUN, lambda api: _kill_quietly(api, job.name))
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(job.future), timeout=self._timeout + 10)
                raise
            if isinstance(outcome, BaseException):
                raise outcome
            if not isinstance(outcome, RunResult):
                raise EngineError(f"{OP_RUN} of {image} ended without a result")
            return outcome

    def _run_worker(self, job: "_RunJob", loop: asyncio.AbstractEventLoop) -> None:
        """Runs in the run's own thread; hands a RunResult or an EngineError to ``job.future``."""
        outcome: Any = None
        api: docker.APIClient | None = None
        created = False
        try:
            shared = self._client()
            api = docker.APIClient(base_url=self._host, version=shared.api_version, timeout=self._timeout,
                                   max_pool_size=2)
            _sweep_stale_runs(api)
            if job.stop.is_set():
                raise _RunStopped
            created = True  # from here on, whatever happens, try to remove it
            api.create_container(job.image, command=job.command or None, entrypoint=job.entrypoint,
                                 name=job.name, labels=job.labels(), host_config=_run_host_config(api, job.limits),
                                 network_disabled=True, use_config_proxy=False, tty=False, stdin_open=False)
            if job.stop.is_set():
                raise _RunStopped
            started = time.monotonic()
            api.start(job.name)
            timed_out = False
            try:
                status = api.wait(job.name, timeout=job.limits.timeout)
            except Exception as exc:  # noqa: BLE001 - a timeout is the time limit; anything else fails the run
                if not _is_timeout(exc):
                    raise
                timed_out = True
                _kill_quietly(api, job.name)
                status = api.wait(job.name, timeout=self._timeout)
            duration = time.monotonic() - started
            if job.stop.is_set():
                raise _RunStopped
            raw = api.logs(job.name, stdout=True, stderr=True, tail=job.tail_lines + 1)
            output, truncated = _output_tail(raw, job.tail_lines, job.tail_bytes)
            info = api.inspect_container(job.name)
            state = info.get("State") or {}
            code = (status or {}).get("StatusCode")
            outcome = RunResult(exit_code=int(code if code is not None else state.get("ExitCode", -1)),
                                output_tail=output, timed_out=timed_out, image_id=str(info.get("Image") or ""),
                                container=job.name, truncated=truncated, oom_killed=bool(state.get("OOMKilled")),
                                duration=round(duration, 3))
        except _RunStopped:
            outcome = _RunStopped()
        except Exception as exc:  # noqa: BLE001 - every failure reaches the caller as a typed error
            outcome = map_error(exc, host=self._host, operation=OP_RUN, timeout=self._timeout, ref=job.image)
        finally:
            problem = _remove_run(api, job.name) if created and api is not None else ""
            if problem:
                if isinstance(outcome, RunResult):
                    outcome = _replace(outcome, removed=False, cleanup_error=problem)
                elif isinstance(outcome, EngineError):
                    outcome = EngineError(f"{outcome.message} (and the container {job.name} could not be "
                                          f"removed: {problem})", outcome.hint)
            if api is not None:
                with contextlib.suppress(Exception):
                    api.close()
            _settle(loop, job.future, outcome)


# --------------------------------------------------------------------------
# containers: helpers of DockerEngine.run_container

RUN_SLOTS = 4  # smoke tests at once per engine; more wait their turn
RUN_LABEL = "org.dockhand.run"
RUN_DEADLINE_LABEL = "org.dockhand.run.deadline"  # epoch seconds after which any Dockhand removes it
RUN_GRACE = 120.0  # seconds after the time limit for Dockhand's own clean-up, before others step in
RUN_LOG_MAX = "1m"  # the engine keeps at most this much output of a run


class _RunStopped(Exception):
    """The caller went away (cancelled): nothing to report, only clean up."""


class _RunJob:
    def __init__(self, *, image: str, command: list[str], entrypoint: list[str] | None, limits: RunLimits,
                 tail_lines: int, tail_bytes: int):
        self.image = image
        self.command = command
        self.entrypoint = entrypoint
        self.limits = limits
        self.tail_lines = tail_lines
        self.tail_bytes = tail_bytes
        self.name = "dockhand-run-" + secrets.token_hex(6)
        self.deadline = time.time() + limits.timeout + RUN_GRACE
        self.stop = threading.Event()
        self.future: asyncio.Future | None = None

    def labels(self) -> dict[str, str]:
        return {RUN_LABEL: "smoke-test", RUN_DEADLINE_LABEL: f"{self.deadline:.0f}"}


def _run_host_config(api: docker.APIClient, limits: RunLimits) -> dict:
    return api.create_host_config(
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={int(limits.tmpfs)}"},
        mem_limit=int(limits.memory),
        memswap_limit=int(limits.memory),  # no swap beyond the memory limit
        nano_cpus=int(round(limits.cpus * 1e9)),
        pids_limit=int(limits.pids),
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        log_config={"type": "json-file", "config": {"max-size": RUN_LOG_MAX, "max-file": "1"}},
        auto_remove=False,  # removed by Dockhand once its output is read
    )


def _kill_quietly(api: docker.APIClient, name: str) -> None:
    """SIGKILL; a container already stopped (409) or gone (404) is fine."""
    try:
        api.kill(name)
    except docker.errors.APIError as exc:
        if exc.status_code not in (404, 409):
            raise


def _remove_run(api: docker.APIClient, name: str) -> str:
    """Remove a run's container and its anonymous volumes (``--rm``); "" when
    it is gone (or never was), else why not (after one retry)."""
    problem = ""
    for attempt in range(2):
        try:
            api.remove_container(name, force=True, v=True)
            return ""
        except docker.errors.NotFound:
            return ""
        except Exception as exc:  # noqa: BLE001 - reported, never raised from a finally
            problem = map_error(exc, host=str(api.base_url), operation=OP_RUN).message
            if attempt == 0:
                time.sleep(0.5)
    return problem


def _sweep_stale_runs(api: docker.APIClient) -> None:
    """Remove run containers past their deadline (best effort)."""
    now = time.time()
    try:
        stale = [c.get("Id") for c in api.containers(all=True, filters={"label": RUN_LABEL})
                 if _deadline(c.get("Labels") or {}) < now]
    except Exception:  # noqa: BLE001 - a sweep never fails a run
        return
    for cid in stale:
        with contextlib.suppress(Exception):
            api.remove_container(cid, force=True, v=True)


def _deadline(labels: Mapping[str, str]) -> float:
    try:
        return float(labels.get(RUN_DEADLINE_LABEL) or "inf")
    except ValueError:
        return float("inf")


def _output_tail(raw: bytes | str | None, lines: int, limit: int) -> tuple[str, bool]:
    """The last ``lines`` lines and at most ``limit`` bytes of ``raw``, as
    text; and whether anything earlier was left out."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    data = raw or b""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    truncated = len(parts) > lines
    data = b"\n".join(parts[-lines:])
    if len(data) > limit:
        data = data[-limit:]
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data = data[cut + 1:]  # no half line at the top
        truncated = True
    return data.decode("utf-8", "replace"), truncated


def _replace(result: RunResult, **changes: Any) -> RunResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future | None, outcome: Any) -> None:
    """Hand ``outcome`` to the event loop's future, from the run's thread."""
    if future is None:
        return

    def settle() -> None:
        if not future.done():
            future.set_result(outcome)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is gone: nobody is waiting
        pass

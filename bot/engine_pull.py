"""Pulls: ``DockerEngine.pull`` (the :class:`PullStreams` mixin), its worker
thread, its socket and HTTP connection to the engine, and the engine's JSON
stream.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import json
import logging
import socket
import threading
import urllib.parse
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

from bot.connection import EngineTarget
from bot.credentials import RegistryAuth, registry_of
from bot.engine_batch import _api_error
from bot.engine_errors import OP_PULL, _fmt_seconds, _is_timeout, map_stream_error
from bot.engine_http import EngineConnection, EngineResponse
from handlers.errors import EngineError, EngineTimeout, RegistryUnauthorized
from handlers.ports import PullEvent

log = logging.getLogger("dockhand.engine")


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


class _PullConnection(EngineConnection):
    """HTTP to the engine on a socket this module opens itself, as the target
    says (:meth:`bot.connection.EngineTarget.connect`): a unix socket, TCP, or
    TLS over TCP with the target's CA, certificate and key. ``on_socket`` gets
    it as soon as it exists; once connected, every wait for the engine lasts at
    most ``stall_timeout``."""

    def __init__(self, target: EngineTarget, connect_timeout: float, stall_timeout: float,
                 on_socket: Callable[[socket.socket], None]):
        if not target.speaks_http:
            raise EngineError(f"{OP_PULL} failed: Dockhand opens its own connection only to a unix:// or "
                              f"tcp:// engine, not {target.url}")
        super().__init__(target, connect_timeout, stall_timeout, on_socket)


def _pull_through_sdk(api, params: dict, headers: dict, stall_timeout: float) -> Iterable[Any]:
    """A pull over docker-py's own connection, for transports Dockhand does not
    open itself (ssh: a channel of docker-py's paramiko session). Each read
    waits at most ``stall_timeout``; stopping is seen between events."""
    response = api._post(api._url("/images/create"), params=params, headers=headers, stream=True,
                         timeout=stall_timeout)
    api._raise_for_status(response)
    try:
        yield from api._stream_helper(response, decode=True)
    finally:
        response.close()


def _json_stream(response: EngineResponse) -> Iterable[Any]:
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


# --------------------------------------------------------------------------
# the pull, mixed into bot/engine.py's DockerEngine


class PullStreams:
    """``DockerEngine.pull``: the engine's pull stream read in a worker thread
    (on a connection Dockhand opens itself where the engine speaks HTTP), its
    registry-lane slot, its stall deadline and its stop. Uses the engine's
    executor, lane, credentials, error mapping and stream set."""

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
                raise EngineError(f"the connection to the engine at {self._shown} is closed") from exc
            import time

            started, ok = time.monotonic(), False
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
                            f"{self._shown} is closed")
                    else:
                        ok = True
                        return
            finally:
                self._observe(OP_PULL, started, ok)
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
            auth = self._credentials.lookup(repository)
            if auth.problem:
                log.warning("pull %s: no credentials for %s: %s", ref, auth.registry, auth.problem)
            elif auth.source:
                log.debug("pull %s: credentials for %s from %s", ref, auth.registry, auth.source)
            if stream.stopped:
                return
            params = {"fromImage": repository, "tag": tag}
            if platform:
                params["platform"] = platform  # os[/arch[/variant]], as `docker pull --platform` sends it
            headers = {"Content-Length": "0"}
            if auth.header():
                headers["X-Registry-Auth"] = auth.header()
            if self._target.speaks_http:
                conn = _PullConnection(self._target, self._timeout, self._stall_timeout, stream.attach)
                conn.connect()  # from here on, every wait for the engine lasts at most the stall timeout
                if stream.stopped:
                    return
                sent = True
                # no /vX.Y prefix: the engine's own API version, as docker-py would negotiate it
                conn.request("POST", f"/images/create?{urllib.parse.urlencode(params)}", headers=headers)
                response = conn.getresponse()
                if response.status != 200:
                    raise _api_error(response.status, response.reason, response.read())
                events = _json_stream(response)
            else:
                sent = True
                events = _pull_through_sdk(self._client(), params, headers, self._stall_timeout)
            for raw in events:
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
                    terminal = ("error", self._for_people(_for_person(
                        map_stream_error(event.error, operation=OP_PULL, ref=ref), auth)))
                    return
            terminal = ("stopped", None) if stream.stopped else ("done", None)
        except Exception as exc:
            if not stream.stopped:
                if sent and _is_timeout(exc):
                    error: EngineError = EngineTimeout(
                        f"the pull of {ref} was stopped: the registry sent nothing for "
                        f"{_fmt_seconds(self._stall_timeout)} s",
                        f"Nothing arrived from the engine at {self._shown} for "
                        f"{_fmt_seconds(self._stall_timeout)} s (DOCKHAND_PULL_STALL_TIMEOUT), so Dockhand "
                        "ended the pull and the engine's transfer with it. Check the registry and the "
                        "host's way to it, then pull again; raise DOCKHAND_PULL_STALL_TIMEOUT if the "
                        "registry is only slow.")
                    log.warning("pull %s: nothing received for %g s: stopped", ref, self._stall_timeout)
                else:
                    error = self._mapped(exc, operation=OP_PULL, timeout=self._timeout, ref=ref)
                terminal = ("error", self._for_people(_for_person(error, auth)))
        finally:
            stream.release()  # first: stop() no longer touches the socket
            if conn is not None:
                conn.close()
            with self._streams_lock:
                self._streams.discard(stream)
            put(*terminal)

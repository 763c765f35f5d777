"""The pull's plumbing: its socket, its HTTP connection to the engine and the
engine's JSON stream (bot/engine.py's ``DockerEngine.pull`` drives them).
"""

from __future__ import annotations

import codecs
import http.client
import json
import socket
import threading
from typing import Any, Callable, Iterable

from bot.connection import EngineTarget
from bot.credentials import RegistryAuth
from bot.engine_errors import OP_PULL
from handlers.errors import EngineError, RegistryUnauthorized


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
        host, port = ("localhost", None) if target.unix_path is not None else target.address
        super().__init__(host, port, timeout=connect_timeout)
        self._target = target
        self._stall_timeout = stall_timeout
        self._on_socket = on_socket

    def connect(self) -> None:
        sock = self._target.connect(self.timeout, self._on_socket)
        sock.settimeout(self._stall_timeout)
        self.sock = sock


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

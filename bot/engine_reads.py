"""Reads on Dockhand's own connection to the engine (``OwnReads``, mixed
into ``bot.engine.DockerEngine``): ``GET /_ping`` and the JSON reads a
command makes (version, info, image inspect, the image list, search),
answered without docker-py, whose requests stack costs a one-shot command
more than the command itself. Paths carry no ``/vX.Y`` prefix: the engine
then speaks its own API version, the one docker-py's ``version="auto"``
negotiates. Unix sockets and TCP (with TLS) only; over ssh, docker-py reads.
"""

from __future__ import annotations

import json
from typing import Any

from bot.connection import EngineTarget
from bot.engine_batch import _api_error
from bot.engine_errors import tls_reason
from bot.engine_http import EngineConnection
from handlers.errors import EngineError, EngineUnreachable

MAX_JSON_BODY = 8_000_000  # bytes of one JSON answer read on Dockhand's own connection


class OwnReads:
    """``_ping`` and ``_get_json`` for :class:`bot.engine.DockerEngine`, in a worker thread."""

    _target: EngineTarget
    _timeout: float
    _host: str

    def _ping(self) -> bool:
        """``GET /_ping`` on a connection of Dockhand's own: True when a
        Docker Engine answered (200 and its ``Api-Version`` header)."""
        conn = EngineConnection(self._target, self._timeout)
        try:
            conn.connect()
            conn.request("GET", "/_ping")
            response = conn.getresponse()
            body = response.read(4096)
            if response.status == 200 and response.getheader("api-version"):
                return True
            raise self._not_an_engine(response.status, response.reason, body, "/_ping")
        finally:
            conn.close()

    def _not_an_engine(self, status: int, reason: str, body: bytes, path: str) -> EngineUnreachable:
        """Something answered HTTP, but not as an engine does (or a TLS port answered plain HTTP)."""
        text = body.decode("utf-8", "replace").strip()[:200]
        return EngineUnreachable(self._host, tls_reason(ConnectionError(text)) or (
            f"it answered {status} {reason} to GET {path}: not a Docker Engine API"))

    def _get_json(self, path: str) -> Any:
        """``GET path`` on a connection of Dockhand's own (a worker thread), the
        engine's JSON answer; an error answer raises as docker-py's would, so
        :func:`map_error` words it the same. The path has no ``/vX.Y`` prefix:
        the engine then speaks its own API version, the one docker-py's
        ``version="auto"`` would negotiate. Reads that a one-shot command makes
        (version, info, image inspect) need no docker-py, whose import costs
        more than the command."""
        conn = EngineConnection(self._target, self._timeout)
        try:
            conn.connect()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read(MAX_JSON_BODY + 1)
            if len(body) > MAX_JSON_BODY:
                raise EngineError(f"the engine's answer to GET {path.split('?')[0]} is over "
                                  f"{MAX_JSON_BODY // 1_000_000} MB")
            if response.status != 200:
                try:
                    said = json.loads(body).get("message")
                except (ValueError, AttributeError):
                    said = None
                if not isinstance(said, str):  # not the engine's error: something else answered HTTP
                    raise self._not_an_engine(response.status, response.reason, body, path.split("?")[0])
                raise _api_error(response.status, response.reason, body)
            return json.loads(body)
        finally:
            conn.close()

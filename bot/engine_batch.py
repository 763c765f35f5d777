"""A plan's removals in one batch, over one kept-alive connection to the
engine (its unix socket, or TCP with or without TLS; ``DockerEngine.remove_many``).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Iterable, Mapping

from bot.connection import EngineTarget
from bot.engine_errors import OP_REMOVE, map_error
from bot.engine_http import EngineConnection
from handlers.errors import EngineError
from handlers.ports import RemoveResult


# --------------------------------------------------------------------------
# batched removals


def _api_error(status: int, reason: str, body: bytes) -> Exception:
    """The docker-py exception for an error answer, so map_error words it as usual."""
    import docker.errors  # on an error only: see bot/engine_errors.py's _sdk
    import requests

    response = requests.models.Response()
    response.status_code, response.reason, response._content = status, reason, body
    try:
        docker.errors.create_api_error_from_http_exception(requests.exceptions.HTTPError(response=response))
    except docker.errors.APIError as exc:
        return exc
    return docker.errors.APIError(f"{status} {reason}", response)  # pragma: no cover - it always raises


def _remove_over_one_connection(target: EngineTarget, version: str, calls: list[tuple[str, bool, bool]],
                                timeout: float) -> list[RemoveResult | EngineError]:
    host = target.url
    conn = EngineConnection(target, timeout)  # kept alive from one removal to the next
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

def _untagged_deleted(entries: Iterable[Mapping[str, str]] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    untagged: list[str] = []
    deleted: list[str] = []
    for e in entries or ():
        if e.get("Untagged"):
            untagged.append(e["Untagged"])
        if e.get("Deleted"):
            deleted.append(e["Deleted"])
    return tuple(untagged), tuple(deleted)

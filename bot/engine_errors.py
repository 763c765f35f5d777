"""Docker-py and transport failures -> the typed errors of handlers/errors.py.

:func:`map_error` turns any exception of docker-py or its transport into a
typed error worded the way the docker CLI words it (``Error response from
daemon: …``); :func:`map_stream_error` does it for an error reported inside a
200 stream (a pull's ``errorDetail``). Nothing else of docker-py leaves
``bot/engine.py``.
"""

from __future__ import annotations

import re
import socket
import ssl
import urllib.parse
from typing import Iterable, Sequence

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker.errors

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


# --------------------------------------------------------------------------
# error mapping



def _sdk():
    """docker-py, requests and urllib3, imported when an error is mapped: a
    command that goes well never needs them (the pull, version and inspect
    speak HTTP on Dockhand's own socket), and importing them costs a one-shot
    command more than the command."""
    import docker.errors
    import requests
    import urllib3.exceptions

    return docker, requests, urllib3

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
    _, requests, urllib3 = _sdk()
    for e in _walk(exc):
        # Could not even connect: unreachable, not slow. (urllib3's
        # NewConnectionError, "connection refused", is a ConnectTimeoutError.)
        if isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return False
        if isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError,
                          socket.timeout, TimeoutError)):
            return True
    return False


def tls_reason(exc: BaseException) -> str:
    """What went wrong in a TLS handshake, in words ("" when it was not TLS).
    Never a path or a key: only what the handshake said."""
    for e in _walk(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            said = (e.verify_message or "certificate verify failed").strip()
            if "mismatch" in said.lower():
                return f"TLS: the engine's certificate is not for this address ({said})"
            return f"TLS: the engine's certificate is not signed by the CA Dockhand was given ({said})"
        if isinstance(e, ssl.SSLError):
            said = str(e.reason or e.strerror or e).replace("_", " ").lower()
            if any(m in said for m in ("bad certificate", "certificate required", "unknown ca",
                                       "certificate unknown")):
                return f"TLS: the engine refused the client certificate ({said})"
            if "wrong version number" in said or "record layer failure" in said:
                return f"TLS: the engine does not speak TLS on this port ({said})"
            if isinstance(e, ssl.SSLEOFError) or "eof occurred" in said:
                return "TLS: the engine closed the connection during the handshake (it did not accept the client certificate)"
            return f"TLS: {said}"
    text = str(exc)
    if "HTTP request to an HTTPS server" in text:
        return "the engine speaks TLS and Dockhand did not: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
    return ""


def _ssh_reason(exc: BaseException) -> str:
    """What went wrong reaching an engine over ssh (paramiko), in words ("" when not ssh)."""
    try:
        import paramiko
    except ImportError:  # pragma: no cover - installed with the package
        return ""
    for e in _walk(exc):
        if isinstance(e, paramiko.AuthenticationException):
            return ("ssh: the server refused every key offered (authentication failed): add the key to the "
                    "user's authorized_keys, or name it with IdentityFile in ~/.ssh/config or ssh-agent")
        if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
            reasons = {err.strerror for err in e.errors.values() if getattr(err, "strerror", None)}
            return f"ssh: {', '.join(sorted(reasons)) or 'cannot connect'}"
        if isinstance(e, paramiko.SSHException):
            said = str(e).strip() or type(e).__name__
            if "no authentication methods" in said.lower():
                return ("ssh: no key to offer (none in ssh-agent, ~/.ssh/id_*, or an IdentityFile "
                        "in ~/.ssh/config for this host)")
            if "known_hosts" in said:
                return (f"ssh: {said}: add the host's key to ~/.ssh/known_hosts "
                        "(ssh-keyscan, or connect once with ssh); Dockhand never accepts an unknown host key")
            return f"ssh: {said}"
    return ""


def _http_status(exc: BaseException) -> str:
    """``404 Not Found`` when an HTTP answer is among the causes ("" otherwise)."""
    _, requests, _ = _sdk()
    for e in _walk(exc):
        response = getattr(e, "response", None)
        if isinstance(e, requests.exceptions.HTTPError) and response is not None:
            return f"{response.status_code} {response.reason or ''}".strip()
    return ""


def _transport_reason(exc: BaseException) -> str:
    """The OS-level reason of a transport failure, without Python reprs
    (``No such file or directory``, ``Connection refused``)."""
    _, requests, urllib3 = _sdk()
    special = tls_reason(exc) or _ssh_reason(exc)
    if special:
        return special
    for e in _walk(exc):
        if isinstance(e, OSError) and e.strerror and not isinstance(e, ssl.SSLError):
            return e.strerror
    import http.client  # loaded with docker-py already (requests): no start-up cost here

    from bot.engine_http import BadAnswer

    for e in _walk(exc):
        if isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
            return "connection timed out"
        if isinstance(e, (urllib3.exceptions.ProtocolError, http.client.HTTPException, BadAnswer)):
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
              timeout: float | None = None, ref: str = "", label: str = "") -> EngineError:
    """Turn any exception of docker-py or its transport into a typed error.

    ``operation`` names what was being done (``image pull``); ``ref`` the image
    it was done to, when there is one; ``timeout`` the engine's timeout in
    seconds (for the wording of :class:`EngineTimeout`). ``host`` is the
    engine's address (DOCKER_HOST); with a ``label`` (DOCKHAND_HOST_LABEL) the
    error names the label and never the address (:func:`hide_address`).
    """
    error = _map_error(exc, host=label or host, operation=operation, timeout=timeout, ref=ref)
    return hide_address(error, host, label) if label else error


def unreachable_hint(label: str) -> str:
    return (f"Start the Docker Engine of {label}, or check DOCKER_HOST in Dockhand's settings "
            "(the address Dockhand tried is in its log).")


def address_forms(address: str) -> list[str]:
    """The ways an engine address can show up in a message: the DOCKER_HOST
    value, a unix socket's path, a TCP ``host:port`` (longest first)."""
    forms = {address}
    parsed = urllib.parse.urlsplit(address)
    if parsed.scheme in ("unix", "npipe") and (parsed.path or parsed.netloc):
        forms.add(parsed.path or parsed.netloc)
    elif parsed.hostname:
        if parsed.port:
            forms.add(f"{parsed.hostname}:{parsed.port}")
            forms.add(f"[{parsed.hostname}]:{parsed.port}")  # how ssh names a host on another port
            forms.add(f"{parsed.scheme}://{parsed.hostname}:{parsed.port}")
        if parsed.scheme == "ssh":
            forms.add(f"{parsed.scheme}://{parsed.netloc}")
        if parsed.hostname not in ("localhost", "127.0.0.1", "::1") and len(parsed.hostname) > 3:
            forms.add(parsed.hostname)
    return sorted((f for f in forms if f), key=len, reverse=True)


def hide_address(error: EngineError, address: str, label: str) -> EngineError:
    """``error`` with every form of the engine's ``address`` replaced by
    ``label`` in its message and hint (changed in place, and returned)."""
    if not label or not address:
        return error
    forms = [f for f in address_forms(address) if f != label]

    def clean(text: str) -> str:
        for form in forms:
            text = text.replace(form, label)
        return text

    if isinstance(error, EngineUnreachable):
        error.hint = unreachable_hint(label)
    message, hint = clean(error.message or ""), clean(error.hint or "")
    if message != error.message:
        error.message = message
        error.args = (message,) + tuple(error.args[1:])
    error.hint = hint
    if isinstance(error, EngineUnreachable):
        error.host = label
    return error


def _map_error(exc: BaseException, *, host: str, operation: str,
               timeout: float | None = None, ref: str = "") -> EngineError:
    docker, requests, urllib3 = _sdk()
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, DockhandError):  # a usage error raised on the way: keep its words
        return EngineError(exc.message, exc.hint)

    # --- the daemon answered with an error status -------------------------
    if isinstance(exc, docker.errors.APIError) and exc.response is not None:
        return _map_api_error(exc, operation=operation, ref=ref)

    # --- the daemon could not be asked (or did not answer) ----------------
    ssh = _ssh_reason(exc)  # paramiko's failures leave docker-py as they are
    if ssh:
        return EngineUnreachable(host, ssh)
    if isinstance(exc, docker.errors.DockerException) and not isinstance(exc, docker.errors.APIError):
        text = str(exc)
        if text.startswith("Error while fetching server API version"):
            if "HTTP request to an HTTPS server" in text:
                return EngineUnreachable(host, _transport_reason(exc))
            answered = _http_status(exc)
            if answered:  # something answered HTTP, but not as an engine does
                return EngineUnreachable(host, f"it answered {answered} to GET /version: not a Docker Engine API")
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

    import http.client  # loaded with docker-py already (requests)

    if isinstance(exc, (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError,
                        ConnectionError, FileNotFoundError, http.client.HTTPException)):
        return EngineUnreachable(host, _transport_reason(exc))
    if isinstance(exc, OSError) and exc.strerror:  # a TLS handshake's failure is one too: said in words
        return EngineUnreachable(host, _transport_reason(exc))

    if isinstance(exc, docker.errors.APIError):  # an APIError without a response
        return EngineError(f"{operation} failed: {exc.explanation or 'the engine answered with an error'}")

    text = str(exc).strip()
    if not text or text.startswith(("<", "(")):
        text = type(exc).__name__
    return EngineError(f"{operation} failed: {text}")


def _map_api_error(exc: docker.errors.APIError, *, operation: str, ref: str) -> EngineError:
    docker, _, _ = _sdk()
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

"""Start-up: the engine the settings name must answer before Dockhand serves.

When ``DOCKER_HOST`` or a docker context names the engine (an explicit
choice), ``dockhand shell``, ``shell -c`` and ``slack`` ask it ``GET /_ping``
(what the docker CLI asks first); no answer is one line and a non-zero exit,
before any prompt or any connection to Slack. With nothing configured (the default socket) the shell
only warns, as before. Nothing an SDK logs precedes that line: paramiko's
transport log (tracebacks of a failed handshake) is quiet unless
DOCKHAND_LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import asyncio
import logging

from bot.connection import EngineTarget
from handlers.errors import EngineError, EngineUnreachable


def quiet_sdk_logs(level: str) -> None:
    """The transport libraries log failures on their own (paramiko: a
    traceback at ERROR for a refused handshake); Dockhand reports them itself
    in one line, so their loggers only speak at DEBUG."""
    if level.upper() != "DEBUG":
        for name in ("paramiko", "paramiko.transport", "urllib3.connectionpool"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def unanswered(target: EngineTarget, error: EngineError) -> str:
    """``No Docker Engine answered at tcp://h:2376 (DOCKER_HOST): why``, plus
    what to do when the target tells more than the error (no client certificate)."""
    reason = error.detail if isinstance(error, EngineUnreachable) and error.detail else error.message
    line = f"No Docker Engine answered at {target.describe()}: {reason}"
    tls = target.tls
    if tls is not None and not tls.cert and "client certificate" in reason:
        line += f"; no client certificate was given ({tls.origin} has no cert.pem and key.pem)"
    return line


async def reach(engine, target: EngineTarget, timeout: float, asked=None) -> str | None:
    """Ask the engine whether it answers; None when it did, else the line to
    print. ``asked``: the question already sent (``engine.ask_ping()``, a
    concurrent future), whose answer is awaited; without it, its version is asked. The engine's own
    timeout (DOCKHAND_ENGINE_TIMEOUT) bounds the call; the wait here is only a
    net for a transport that ignores it."""
    answer = asyncio.wrap_future(asked) if asked is not None else engine.version()
    try:
        await asyncio.wait_for(answer, timeout=timeout + 5)
    except EngineError as exc:
        return unanswered(target, exc)
    except asyncio.TimeoutError:
        return f"No Docker Engine answered at {target.describe()}: nothing came back within {timeout:g} s"
    return None

"""A message Slack refuses never costs the reply.

``bot.render.blockkit`` gives a message with a native table (``data_table``)
a ``"fallback"``: the same reply in today's code-block shape. When Slack
refuses a message (``invalid_blocks``: an older workspace, a limit its docs
do not state), :func:`send` sends that fallback at once, and as a last resort
the message's text alone. Each kind of refusal is logged once per process,
with the shape of what was refused (block types, rows, columns, cell types,
character counts), never its content: a list can hold what the log must not.

A block type Slack refused is remembered for :data:`REMEMBER` seconds: in
that time a message holding one goes straight out in its fallback shape, so
a workspace that does not know ``data_table`` costs one refused call, not
one per reply (a response_url takes only five messages, and every call
spends the app's rate budget). Interim updates, which are never retried,
use the same memory. One Dockhand process serves one workspace (one bot
token), so the memory is the process's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Awaitable, Callable

log = logging.getLogger("dockhand.slack")

# Errors about the message itself: the same reply again in a simpler shape.
BAD_MESSAGE = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long"})

REMEMBER = 600.0  # seconds a refused block type is not tried again

_logged: set[tuple[str, str]] = set()
_refused: dict[str, float] = {}  # block type -> when Slack last refused a message holding it
_lock = threading.Lock()


def _types(blocks: list) -> set[str]:
    return {b.get("type", "?") for b in blocks or [] if isinstance(b, dict)}


def _fallback_types(message: dict) -> set[str]:
    """Block types a message has that its fallback has not: the ones its fallback replaces."""
    fallback = message.get("fallback")
    return _types(message["blocks"]) - _types(fallback["blocks"]) if fallback else set()


def remember(blocks: list, message: dict | None = None, *, now: float | None = None) -> None:
    """Slack refused ``blocks``: remember the types a fallback can do without."""
    kinds = _fallback_types(message) if message else set()
    now = time.monotonic() if now is None else now
    with _lock:
        for kind in kinds & _types(blocks):
            _refused[kind] = now


def recently_refused(message: dict, *, now: float | None = None) -> bool:
    """Did Slack refuse, in the last :data:`REMEMBER` s, a block type only
    this message's fallback can do without?"""
    kinds = _fallback_types(message)
    if not kinds:
        return False
    now = time.monotonic() if now is None else now
    with _lock:
        return any(now - _refused.get(k, -REMEMBER - 1) <= REMEMBER for k in kinds)


def forget() -> None:
    """Forget every refusal (and that it was logged): a new start, as in tests."""
    with _lock:
        _refused.clear()
        _logged.clear()


def preferred(message: dict) -> dict:
    """The shape to send first: the fallback while its blocks' types are refused."""
    return message["fallback"] if recently_refused(message) else message


def slack_error(exc: Exception) -> str:
    """The Web API's error code of a failed call (``invalid_blocks``), else the exception's type."""
    response = getattr(exc, "response", None)
    try:
        return str(response["error"])  # SlackApiError
    except Exception:
        return type(exc).__name__


def attempts(message: dict) -> list[dict]:
    """What to send, in order: the message, its code-block fallback if it has
    one, then its text alone. Each is ``{"text", "blocks"}``."""
    out = [{"text": message["text"], "blocks": message["blocks"]}]
    fallback = message.get("fallback")
    if fallback:
        if recently_refused(message):
            out = []
        out.append({"text": fallback["text"], "blocks": fallback["blocks"]})
    out.append({"text": (fallback or message)["text"] or "(no text)", "blocks": []})
    return out


def _cell_kinds(rows) -> str:
    kinds = Counter(c.get("type", "?") if isinstance(c, dict) else type(c).__name__
                    for row in rows if isinstance(row, list) for c in row)
    return ",".join(f"{k}x{n}" for k, n in sorted(kinds.items()))


def shape(blocks: list) -> str:
    """The blocks' structure without a character of their content."""
    parts = []
    for block in blocks or []:
        kind = block.get("type", "?") if isinstance(block, dict) else "?"
        if kind in ("data_table", "table"):
            rows = block.get("rows") or []
            widths = sorted({len(r) for r in rows if isinstance(r, list)})
            chars = sum(len(str(c.get("text", ""))) for r in rows if isinstance(r, list)
                        for c in r if isinstance(c, dict))
            extra = ""
            if kind == "data_table":
                extra = (f" page_size={block.get('page_size', '-')}"
                         f" caption={len(block.get('caption') or '')}ch")
            parts.append(f"{kind}(rows={len(rows)} cols={'/'.join(map(str, widths)) or 0} "
                         f"cells={_cell_kinds(rows)} chars={chars}{extra})")
        else:
            parts.append(kind)
    return "[" + " ".join(parts) + "]"


def log_refusal(error: str, blocks: list, where: str) -> None:
    """Log a refusal once per kind (the error and the block types refused)."""
    kinds = tuple(sorted({b.get("type", "?") for b in blocks or [] if isinstance(b, dict)}))
    key = (error, ",".join(kinds))
    with _lock:
        first = key not in _logged
        _logged.add(key)
    if first:
        log.warning("Slack refused a message (%s) in %s; sent again in a simpler shape. "
                    "Shape of what was refused: %s", error, where, shape(blocks))
    else:
        log.debug("Slack refused a message (%s) in %s again: %s", error, where, shape(blocks))


async def send(call: Callable[[str, list], Awaitable], message: dict, *, where: str):
    """``await call(text, blocks)`` with the message, then its fallbacks while
    Slack refuses the message itself; other failures are raised."""
    tries = attempts(message)
    for n, attempt in enumerate(tries):
        try:
            return await call(attempt["text"], attempt["blocks"])
        except Exception as exc:
            error = slack_error(exc)
            if error not in BAD_MESSAGE or n == len(tries) - 1:
                raise
            log_refusal(error, attempt["blocks"], where)
            remember(attempt["blocks"], message)

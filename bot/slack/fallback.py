"""A message Slack refuses never costs the reply.

``bot.render.blockkit`` gives a message with a native table (``data_table``)
a ``"fallback"``: the same reply in today's code-block shape. When Slack
refuses a message (``invalid_blocks``: an older workspace, a limit its docs
do not state), :func:`send` sends that fallback at once, and as a last resort
the message's text alone. Each kind of refusal is logged once per process,
with the shape of what was refused (block types, rows, columns, cell types,
character counts), never its content: a list can hold what the log must not.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Awaitable, Callable

log = logging.getLogger("dockhand.slack")

# Errors about the message itself: the same reply again in a simpler shape.
BAD_MESSAGE = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long"})

_logged: set[tuple[str, str]] = set()
_lock = threading.Lock()


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

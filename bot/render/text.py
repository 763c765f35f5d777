"""Reply -> terminal text, laid out like the Docker CLI's own output."""

from __future__ import annotations

import re
import time

from handlers.replies import Confirmation, ErrorPart, HostHeading, Notice, Preformatted, Progress, Reply, Table
from handlers.textfmt import table_lines
from handlers.units import human_size


def render_part(part) -> str:
    if isinstance(part, Table):
        return "\n".join(table_lines(part))
    if isinstance(part, Preformatted):
        return part.text.rstrip("\n")
    if isinstance(part, Notice):
        return part.text
    if isinstance(part, ErrorPart):
        return f"Error: {part.message}" + (f"\nHint: {part.hint}" if part.hint else "")
    if isinstance(part, Progress):
        return render_progress(part)
    if isinstance(part, HostHeading):
        return "\n" + host_heading(part)
    if isinstance(part, Confirmation):
        until = time.strftime("%H:%M:%S", time.localtime(part.expires_at))
        return f"Nothing is removed until {part.who} confirm{'s' if part.who != 'you' else ''} (before {until})."
    raise TypeError(f"no text rendering for {type(part).__name__}")


def host_heading(h: HostHeading) -> str:
    """``=== prod (Docker Engine 20.10.24) ===``, or what kept the host from answering."""
    if h.pending:
        about = f": waiting ({h.detail})" if h.detail else ": waiting"
    elif h.ok:
        about = f" (Docker Engine {h.engine_version})" if h.engine_version else ""
    else:
        about = f": FAILED{' (' + h.detail + ')' if h.detail else ''}"
    return f"=== {h.host}{about} ===" + (f" [{h.note}]" if h.note else "")


def render_progress(p: Progress) -> str:
    lines = [p.title]
    for layer in p.layers:
        detail = f" {human_size(layer.current)}/{human_size(layer.total)}" if layer.total else ""
        lines.append(f"{layer.id}: {layer.status}{detail}")
    if p.status:
        lines.append(p.status)
    return "\n".join(lines)


# Control characters (C0 but tab and newline, DEL, C1) and the bidi overrides
# that reorder what is shown: text from registries, the index or the engine
# must never move the cursor, colour the terminal or disguise itself.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    return _UNSAFE.sub(" ", text)


def render(reply: Reply) -> str:
    """The whole reply as it should appear in a terminal (no trailing newline)."""
    return safe("\n".join(render_part(part) for part in reply.parts).lstrip("\n"))


def context_note(reply: Reply) -> str:
    """The terminal's context line: only what people must know about the engine
    (the sample engine), for stderr, so stdout stays the CLI's own output."""
    return safe(f"[{reply.engine_note}]") if reply.engine_note else ""

"""``docker audit [N]``: the last records of the local audit log.

Not a Docker command: Dockhand's own, so that the trail of who asked,
who confirmed and what ran is readable where the commands are typed.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from .argv import CommandSpec
from .base import Call
from .errors import UsageError
from .replies import Notice, Table

MAX_RECORDS = 100  # one reply shows at most this many
DEFAULT_RECORDS = 10
COLUMNS = ("SEQ", "TIME", "EVENT", "HOST", "ACTOR", "COMMAND", "RESULT")


def _time(at: Any) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(at)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def _summary(value: Any) -> str:
    """``detail`` as ``key=value`` pairs; lists joined by commas."""
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_summary(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(_summary(v) for v in value)
    return "" if value is None else str(value)


def audit_row(rec: Mapping) -> tuple[str, ...]:
    """One audit record as the columns of :data:`COLUMNS` (raw: callers clean and clip)."""
    if "unreadable" in rec and "seq" not in rec:
        return ("?", "-", "(unreadable)", "", "", "", str(rec["unreadable"]))
    actor = rec.get("actor_name") or rec.get("actor") or ""
    return (str(rec.get("seq", "?")), _time(rec.get("at")), str(rec.get("event", "")),
            str(rec.get("host", "")), str(actor), str(rec.get("command", "")),
            _summary(rec.get("detail", "")))


def audit_rows(records: Iterable[Mapping], clip: int = 120) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(c if len(c) <= clip else c[:clip - 1] + "…" for c in audit_row(r)) for r in records)


async def show(call: Call):
    n = DEFAULT_RECORDS
    if call.args:
        try:
            n = int(call.args[0], 10)
        except ValueError:
            raise UsageError(f'"{call.args[0][:20]}" is not a number of records', "e.g. `docker audit 20`.") from None
        if not 1 <= n <= MAX_RECORDS:
            raise UsageError(f"docker audit shows 1 to {MAX_RECORDS} records", f"e.g. `docker audit {DEFAULT_RECORDS}`.")
    if call.services.audit is None:
        return call.reply(Notice("This Dockhand keeps no audit log."), summary="no audit log")
    records = await call.services.audit.tail(n)
    if not records:
        return call.reply(Notice("The audit log is empty: nothing has been pulled or removed yet."),
                          summary="empty audit log")
    return call.reply(Table(COLUMNS, audit_rows(records)), summary=f"last {len(records)} audit record(s)")


SPECS = (
    CommandSpec(("audit",), "audit [N]", "Show the last N records of Dockhand's audit log (default 10)", show,
                (), max_args=1, examples=("docker audit", "docker audit 50")),
)

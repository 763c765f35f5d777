"""What every use case receives: the parsed command and its context."""

from __future__ import annotations

from dataclasses import dataclass

from .argv import Parsed
from .context import Actor, Emit, Services
from .errors import UsageError
from .replies import Part, Reply, Status


@dataclass
class Call:
    parsed: Parsed
    actor: Actor
    services: Services
    emit: Emit = None
    substitution: Parsed | None = None  # rmi's $(docker images -q ...), parsed

    @property
    def engine(self):
        return self.services.engine

    @property
    def opts(self):
        return self.parsed.opts

    @property
    def args(self):
        return self.parsed.args

    def reply(self, *parts: Part, summary: str = "", status: Status = Status.OK, actions=()) -> Reply:
        return Reply(command=self.parsed.line, parts=tuple(parts), status=status,
                     summary=summary, actions=tuple(actions))


def parse_filters(values: list[str], allowed: dict[str, str], command: str) -> dict[str, list[str]]:
    """``-f key=value`` options as the engine's filter map, checked first.

    ``allowed`` maps each filter name to a one-line description for the hint.
    """
    filters: dict[str, list[str]] = {}
    for raw in values:
        key, eq, value = raw.partition("=")
        value = value.strip()  # as the CLI does: `until= 24h` is `until=24h`
        key = key.strip().lower()
        if not eq or not key:
            raise UsageError(f"bad format of filter (expected name=value): {raw[:60]!r}",
                             f"Filters for {command}: " + ", ".join(f"{k}=<{v}>" for k, v in allowed.items()))
        if key not in allowed:
            raise UsageError(f"invalid filter '{key[:40]}'",
                             f"{command} accepts: " + ", ".join(f"{k}=<{v}>" for k, v in allowed.items()))
        if len(value) > 512 or not value.isprintable():
            raise UsageError(f"invalid value for filter '{key}': use at most 512 printable characters",
                             "Control and invisible formatting characters are refused.")
        filters.setdefault(key, []).append(value)
    return filters


def bool_filter(filters: dict[str, list[str]], key: str) -> None:
    for value in filters.get(key, []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid filter '{key}={value[:40]}'", f"{key} takes true or false.")

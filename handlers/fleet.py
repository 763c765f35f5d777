"""Many hosts: which engine(s) a command line speaks to.

The command line names its target as ``@name`` (a word of its own, anywhere
among the command's words) or as the CLI spells it, ``-H name``,
``--host name``, ``--host=name``. An image reference cannot start with ``@``
(distribution/reference: a name starts with a letter or digit), so ``@prod``
is never an image. The selector is taken out before the command's own flag
parse (:func:`split_target`), and resolved against the :class:`Fleet` the
composition root built: a host, a group, ``@all``; with none given, the
channel's default host, else the fleet's default.

One target runs exactly the single-engine path on that host's ``Services``;
several fan out (``handlers/fanout.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from .errors import UsageError

if TYPE_CHECKING:
    from .context import Services

ALL = "all"
HOST_FLAGS = ("-H", "--host")


def split_target(words: list[str], interspersed_from: int | None = None) -> tuple[list[str], str | None]:
    """``words`` without the target selector, and the selector (None if none).

    ``interspersed_from``: index of the first word after which selectors are
    no longer looked for (``docker run IMAGE CMD…``: the container's own
    words are never taken). ``--`` ends the search too. Two different
    selectors are a usage error."""
    out: list[str] = []
    found: list[str] = []
    i = 0
    stop = len(words) if interspersed_from is None else interspersed_from
    while i < len(words):
        word = words[i]
        if i >= stop or word == "--":
            out.extend(words[i:])
            break
        if word.startswith("@") and len(word) > 1:
            found.append(word[1:])
        elif word in HOST_FLAGS:
            if i + 1 >= len(words) or not words[i + 1] or words[i + 1].startswith("-"):
                raise UsageError(f"flag needs an argument: {word}", "Name the host: `-H prod`, or `@prod`.")
            found.append(words[i + 1])
            i += 1
        elif word.startswith("--host="):
            found.append(word[len("--host="):])
        elif word.startswith("-H") and len(word) > 2 and not word.startswith("-H-"):
            found.append(word[2:])
        else:
            out.append(word)
        i += 1
    names = list(dict.fromkeys(n.strip() for n in found))
    if any(not n for n in names):
        raise UsageError("an empty host name", "Name the host: `@prod`, `-H prod`, or `@all` for every host.")
    if len(names) > 1:
        raise UsageError(f"more than one host given ({', '.join('@' + n[:40] for n in names)})",
                         "Name one host or one group per command: `@prod`, `@web`, or `@all`.")
    return out, (names[0] if names else None)


@dataclass
class Fleet:
    """The named engines, fixed after start-up (built by ``bot/wiring.py``)."""

    targets: Mapping[str, "Services"]  # in the settings' order (fan-out sections come in it)
    default: str
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)  # channel ID -> host or group
    timeouts: Mapping[str, float] = field(default_factory=dict)  # per host, for a fan-out

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.targets)

    def known(self) -> str:
        """Hosts and groups, for messages."""
        text = "hosts: " + ", ".join(self.targets)
        if self.groups:
            text += "; groups: " + ", ".join(f"{g} ({', '.join(m)})" for g, m in self.groups.items())
        return text + "; @all: every host"

    def channel_default(self, channel: str = "", channel_name: str = "") -> str:
        """The host or group a channel speaks to by default ("" for none): by
        its ID, else by its name (``#prod-ops``, as the hosts file may say)."""
        return self.channels.get(channel) or (self.channels.get("#" + channel_name) if channel_name else "") or ""

    def resolve(self, selector: str | None, channel: str = "", channel_name: str = "") -> tuple[str, ...]:
        """The host names a command goes to, in the settings' order."""
        chosen = selector if selector is not None else (self.channel_default(channel, channel_name) or self.default)
        if chosen == ALL:
            return self.names
        if chosen in self.targets:
            return (chosen,)
        if chosen in self.groups:
            return self.groups[chosen]
        raise UsageError(f"unknown host {chosen[:60]!r}",
                         f"Known {self.known()}. Name one with `@name` or `-H name`.")

    def is_group(self, selector: str | None, channel: str = "", channel_name: str = "") -> bool:
        """Does this selector name several hosts, even when the group holds one?"""
        chosen = selector if selector is not None else (self.channel_default(channel, channel_name) or self.default)
        return chosen == ALL or chosen in self.groups

    def services(self, name: str) -> "Services":
        return self.targets[name]

    def for_label(self, label: str) -> "Services | None":
        """The host whose label an operation recorded."""
        return next((s for s in self.targets.values() if s.label == label), None)

    def timeout(self, name: str) -> float:
        return self.timeouts.get(name, 10.0)

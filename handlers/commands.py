"""The command table: every command Dockhand speaks, in the CLI's words."""

from __future__ import annotations

import difflib

from . import audit, images, pull, rmi, run, search, system
from .argv import CommandSpec
from .errors import UsageError

TABLE: tuple[CommandSpec, ...] = (images.SPECS + search.SPECS + system.SPECS + pull.SPECS + rmi.SPECS
                                  + audit.SPECS + run.SPECS)
_BY_PATH = {spec.path: spec for spec in TABLE}

MANAGEMENT = {
    "image": "Manage images",
    "system": "Manage Docker",
}

# Docker commands Dockhand deliberately does not run, with what to do instead.
NOT_HERE = {
    "ps": "Dockhand manages images; `docker info` shows how many containers exist.",
    "build": "Build on a CI runner or the host, then `docker pull` the result here.",
    "push": "Push from where the image is built.",
    "tag": "Tagging is not available from chat yet.",
    "login": "Log the host in to its registries on the host itself; Dockhand never handles registry passwords.",
    "logout": "Manage registry credentials on the host itself.",
    "container": "Dockhand manages images, not containers.",
    "volume": "Dockhand manages images, not volumes.",
    "network": "Dockhand manages images, not networks.",
    "compose": "Dockhand manages images, not Compose projects.",
}
NOT_HERE.update({c: "Dockhand manages images, not containers." for c in (
    "exec", "start", "stop", "restart", "rm", "create", "kill", "logs", "attach", "pause", "unpause", "top",
    "stats", "wait", "port", "rename", "update", "cp", "diff", "commit", "export", "events")})


def find_command(words: list[str]) -> tuple[CommandSpec | None, list[str]]:
    if len(words) >= 2 and (words[0], words[1]) in _BY_PATH:
        return _BY_PATH[(words[0], words[1])], words[2:]
    if words and (words[0],) in _BY_PATH:
        return _BY_PATH[(words[0],)], words[1:]
    return None, words


def management_help(group: str) -> str:
    subs = sorted({spec.path[1]: spec.short for spec in TABLE if len(spec.path) == 2 and spec.path[0] == group}.items())
    lines = ["", f"Usage:  docker {group} COMMAND", "", MANAGEMENT[group], "", "Commands:"]
    lines += [f"  {name:<11} {text}" for name, text in subs]
    lines += ["", f"Run 'docker {group} COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"


def unknown_command(words: list[str]) -> UsageError:
    shown = " ".join(words[:2])[:60]
    if words[0] in MANAGEMENT:
        subs = sorted(spec.path[1] for spec in TABLE if len(spec.path) == 2 and spec.path[0] == words[0])
        close = difflib.get_close_matches(words[1], subs, n=1) if len(words) > 1 else []
        hint = (f"Did you mean `docker {words[0]} {close[0]}`? " if close else "") + \
            f"Run 'docker {words[0]} --help' for more information."
        return UsageError(f"docker: unknown command: docker {shown}", hint)
    word = words[0][:40]
    if word in NOT_HERE:
        return UsageError(f"docker: '{word}' is not available in Dockhand", NOT_HERE[word] +
                          " Run 'docker help' for what Dockhand can do.")
    names = sorted({spec.path[0] for spec in TABLE})
    close = difflib.get_close_matches(word, names, n=2)
    hint = ("Did you mean " + " or ".join(f"`docker {c}`" for c in close) + "? " if close else "") + \
        "Run 'docker --help' for more information."
    return UsageError(f"docker: unknown command: docker {word}", hint)

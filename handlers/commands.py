"""The command table: every command Dockhand speaks, in the CLI's words.

Each use case declares its commands (``SPECS``) in its own module. The index
below says which module declares which command, so a command loads its own
use case when it is first used: a one-shot ``dockhand shell -c "pull …"``
does not load the listing, removal, search or run code. :func:`table` loads
them all (help, completion). ``tests/unit/test_commands.py`` checks the index
against the modules, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib

from .argv import CommandSpec
from .errors import UsageError

# command path -> the module of handlers/ whose SPECS declares it
_MODULES: dict[tuple[str, ...], str] = {
    ("images",): "images", ("image", "ls"): "images", ("image", "list"): "images", ("image", "prune"): "images",
    ("search",): "search",
    ("version",): "system", ("info",): "system", ("system", "info"): "system", ("help",): "system",
    ("pull",): "pull", ("image", "pull"): "pull",
    ("rmi",): "rmi", ("image", "rm"): "rmi", ("image", "remove"): "rmi",
    ("audit",): "audit",
    ("run",): "run",
}
# the order `docker help` and completion list them in
_ORDER = ("images", "search", "system", "pull", "rmi", "audit", "run")
_loaded: dict[tuple[str, ...], CommandSpec] = {}


def spec_for(path: tuple[str, ...]) -> CommandSpec | None:
    """The spec of one command path, its module loaded on first use; None for no such command."""
    spec = _loaded.get(path)
    if spec is None and path in _MODULES:
        module = importlib.import_module(f"{__package__}.{_MODULES[path]}")
        for one in module.SPECS:
            _loaded.setdefault(one.path, one)
        spec = _loaded.get(path)
    return spec


def table() -> tuple[CommandSpec, ...]:
    """Every command's spec, every use case loaded (help, completion)."""
    out: list[CommandSpec] = []
    for name in _ORDER:
        out += importlib.import_module(f"{__package__}.{name}").SPECS
    for spec in out:
        _loaded.setdefault(spec.path, spec)
    return tuple(out)


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
    if len(words) >= 2 and (words[0], words[1]) in _MODULES:
        return spec_for((words[0], words[1])), words[2:]
    if words and (words[0],) in _MODULES:
        return spec_for((words[0],)), words[1:]
    return None, words


def management_help(group: str) -> str:
    subs = sorted({spec.path[1]: spec.short for spec in table() if len(spec.path) == 2 and spec.path[0] == group}.items())
    lines = ["", f"Usage:  docker {group} COMMAND", "", MANAGEMENT[group], "", "Commands:"]
    lines += [f"  {name:<11} {text}" for name, text in subs]
    lines += ["", f"Run 'docker {group} COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"


def unknown_command(words: list[str]) -> UsageError:
    shown = " ".join(words[:2])[:60]
    if words[0] in MANAGEMENT:
        import difflib

        subs = sorted(path[1] for path in _MODULES if len(path) == 2 and path[0] == words[0])
        close = difflib.get_close_matches(words[1], subs, n=1) if len(words) > 1 else []
        hint = (f"Did you mean `docker {words[0]} {close[0]}`? " if close else "") + \
            f"Run 'docker {words[0]} --help' for more information."
        return UsageError(f"docker: unknown command: docker {shown}", hint)
    word = words[0][:40]
    if word in NOT_HERE:
        return UsageError(f"docker: '{word}' is not available in Dockhand", NOT_HERE[word] +
                          " Run 'docker help' for what Dockhand can do.")
    import difflib

    names = sorted({path[0] for path in _MODULES})
    close = difflib.get_close_matches(word, names, n=2)
    hint = ("Did you mean " + " or ".join(f"`docker {c}`" for c in close) + "? " if close else "") + \
        "Run 'docker --help' for more information."
    return UsageError(f"docker: unknown command: docker {word}", hint)

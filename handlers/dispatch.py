"""parse -> (authorise) -> run -> reply, for every front end."""

from __future__ import annotations

import logging
import uuid

from .argv import Parsed, command_help, parse_flags, quote_line, tokenize
from .base import Call
from .commands import MANAGEMENT, find_command, management_help, unknown_command
from .context import Actor, Emit, Services
from .errors import DockhandError, EngineError, UsageError
from .replies import Preformatted, Reply, error_reply
from .system import short_version

log = logging.getLogger("dockhand.dispatch")

_COMMAND_WORDS = {"rmi", "rm", "pull", "ls", "list", "prune", "search", "info", "version"}
HELP_FLAGS = ("-h", "--help")
VERSION_FLAGS = ("-v", "--version")


def command_words(text: str) -> list[str]:
    """The words of a command line, without a leading ``/`` or ``docker``
    (``/images -a``, ``docker images -a`` and ``images -a`` are one command).
    Raises UsageError for what cannot be tokenised."""
    words = tokenize(text.strip())
    if words and words[0].startswith("/"):
        words = [words[0][1:]] + words[1:]
        if not words[0]:
            words = words[1:]
    if words and words[0] == "docker":
        words = words[1:]
    return words


def is_builtin(words: list[str]) -> bool:
    """Help, ``--version`` and a management group's help (``docker image``):
    answered without looking a command up in the table."""
    return (not words or words[0] in HELP_FLAGS + VERSION_FLAGS
            or (words[0] in MANAGEMENT and (len(words) == 1 or words[1] in HELP_FLAGS)))


async def dispatch(text: str, actor: Actor, services: Services, emit: Emit = None) -> Reply:
    """Run one command line for ``actor``; never raises for anything a user can cause."""
    line = text.strip()
    try:
        words = command_words(line)
        line = "docker " + quote_line(words) if words else "docker"
        reply = await _run(words, line, actor, services, emit)
    except DockhandError as exc:
        reply = error_reply(line, exc.message, exc.hint, exc.status)
    except Exception:  # a bug: log it whole, tell the person something useful
        ref = uuid.uuid4().hex[:8]
        log.exception("internal error %s while running %r for %s", ref, line, actor.id)
        reply = error_reply(line, f"Internal error while running `{line[:200]}` (logged as {ref}).",
                            "This is a bug in Dockhand, not in your command: report the reference to the team.")
    return await _with_context(reply, services)


async def _run(words: list[str], line: str, actor: Actor, services: Services, emit: Emit) -> Reply:
    from .commands import _BY_PATH

    if not words or words[0] in HELP_FLAGS:
        words = ["help"]
    if words[0] in VERSION_FLAGS:
        if len(words) > 1:
            raise UsageError(f"{words[0]} takes no arguments", "Try `docker --version` or `docker version`.")
        spec = _BY_PATH[("version",)]
        return await short_version(Call(parse_flags(spec, [], line), actor, services, emit))
    if is_builtin(words):  # what is left of them: a management group's help
        return Reply(line, (Preformatted(management_help(words[0])),), summary=f"docker {words[0]} commands")
    parsed = _parse_command(words, line)
    if parsed.help:
        spec = parsed.spec
        return Reply(line, (Preformatted(command_help(spec)),), summary=f"usage of {spec.command_path}")
    return await parsed.spec.run(Call(parsed, actor, services, emit))


def _parse_command(words: list[str], line: str) -> Parsed:
    """Find the command ``words`` name and parse its flags and arguments,
    then run the command's own checks; raises UsageError."""
    if words[0].startswith("-"):
        raise UsageError(f"global option {words[0][:40]} is not supported by Dockhand",
                         "Dockhand talks to the engine it is configured for; put options after the command, "
                         "e.g. `docker images -a`.")
    spec, rest = find_command(words)
    if spec is None:
        raise unknown_command(words)
    try:
        parsed = parse_flags(spec, rest, line)
    except UsageError as exc:
        if spec.path == ("images",) and rest and rest[0] in _COMMAND_WORDS:
            exc.hint = f"Did you mean `docker {quote_line(rest)}`? " + exc.hint
        raise
    if not parsed.help and spec.validate is not None:
        spec.validate(parsed)
    return parsed


def preflight(text: str) -> Reply | None:
    """Check a command line without running it: the usage-error Reply it
    would get, or None. Front ends use it before announcing an action."""
    line = text.strip()
    try:
        words = command_words(line)
        line = "docker " + quote_line(words) if words else "docker"
        if not is_builtin(words):
            _parse_command(words, line)
    except DockhandError as exc:
        return error_reply(line, exc.message, exc.hint, exc.status)
    return None


async def _with_context(reply: Reply, services: Services) -> Reply:
    engine = services.engine
    if not services.engine_version and reply.ok:
        try:
            services.engine_version = (await engine.version()).get("Version", "")
        except EngineError:
            pass
    return reply.with_context(services.host_label or engine.host, services.engine_version)

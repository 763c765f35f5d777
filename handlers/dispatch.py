"""parse -> authorise -> run (or plan and ask) -> reply, for every front end.

:func:`parse_command` is the one public parse: dispatch, :func:`preflight`
and the front ends all use it, so what a command is (its spec, its effect,
the role it needs) is decided in one place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field

from . import access, engine_identity, fleet, operations
from .argv import DESTRUCTIVE, READ, WRITE, CommandSpec, Parsed, command_help, parse_flags, quote_line, tokenize
from .base import Call
from .commands import MANAGEMENT, find_command, management_help, spec_for, unknown_command
from .context import Actor, Emit, Services
from .errors import DockhandError, UsageError
from .replies import Preformatted, Reply, error_reply

log = logging.getLogger("dockhand.dispatch")

_COMMAND_WORDS = {"rmi", "rm", "pull", "ls", "list", "prune", "search", "info", "version"}
HELP_FLAGS = ("-h", "--help")
VERSION_FLAGS = ("-v", "--version")
# The one piece of shell syntax Dockhand takes, from the tutorial's cheat
# sheet: `docker rmi [-f] $(docker images -q [...])`.
_SUBSTITUTION = re.compile(r"\$\(([^()$`]*)\)")
_LIST_PATHS = {("images",), ("image", "ls"), ("image", "list")}


def _take_target(words: list[str]) -> tuple[list[str], str | None]:
    """``words`` without the host selector (``@name``, ``-H name``), and the
    selector: first the global ones before the command, then the command's
    own words (for ``docker run``, only before the image: what follows is the
    container's command line)."""
    lead: list[str] = []
    i = 0
    while i < len(words) and (words[i].startswith("@") or words[i] in fleet.HOST_FLAGS
                              or words[i].startswith(("--host=", "-H"))):
        take = 2 if words[i] in fleet.HOST_FLAGS else 1
        lead += words[i:i + take]
        i += take
    rest = words[i:]
    spec, args = find_command(rest)
    if spec is not None and not spec.interspersed:
        first = next((j for j, w in enumerate(args) if not w.startswith(("-", "@"))), len(args))
        stop = len(rest) - len(args) + first
    else:
        stop = None
    out, selected = fleet.split_target(lead + rest, None if stop is None else stop + len(lead))
    return out, selected


def split_line_target(words: list[str]) -> tuple[list[str], str | None]:
    """``words`` (without ``/`` or ``docker``) and their host selector, taken
    exactly as the one parse takes it: for a front end reading a line being
    typed (Tab completion). Raises UsageError as the parse would."""
    return _take_target(words)


def command_words(text: str) -> list[str]:
    """The words of a command line, without a leading ``/`` or ``docker``
    (``/images -a``, ``docker images -a`` and ``images -a`` are one command).
    Raises UsageError for what cannot be tokenised."""
    return _strip_prefix(tokenize(text.strip()))


def _strip_prefix(words: list[str]) -> list[str]:
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


@dataclass
class Command:
    """A parsed command line: what it is, before anything runs."""

    words: list[str]
    line: str  # normalised: "docker rmi -f x" (with a host named: "docker -H prod rmi -f x")
    parsed: Parsed | None = None  # None for the built-in forms (help, --version, "docker image")
    substitution: Parsed | None = None  # the `docker images -q` inside rmi's $(...)
    extra: dict = field(default_factory=dict)
    target: str | None = None  # the host or group named (@name, -H name); None: the channel's or the default

    @property
    def spec(self) -> CommandSpec | None:
        return self.parsed.spec if self.parsed is not None else None

    @property
    def effect(self) -> str:
        spec = self.spec
        if spec is None or self.parsed.help:
            return READ
        return spec.effect

    @property
    def asks_first(self) -> bool:
        """Planned and confirmed before it runs: destructive commands, and
        writes whose options ask for it (``pull -a``)."""
        spec = self.spec
        if spec is None or self.parsed.help:
            return False
        return spec.effect == DESTRUCTIVE or (spec.confirm_if is not None and spec.confirm_if(self.parsed))

    @property
    def role(self) -> str:
        """The role the command declares beyond its effect ("" for none, and for --help)."""
        spec = self.spec
        return spec.role if spec is not None and not self.parsed.help else ""

    @property
    def path(self) -> str:
        return self.spec.command_path if self.spec is not None else "docker"


def parse_command(text: str) -> Command:
    """The one public parse. Raises UsageError for a command line that is
    wrong, with the CLI's words and a hint."""
    line = text.strip()
    substitution = None
    found = _SUBSTITUTION.findall(line)
    if len(found) == 1 and "$(" in line:
        inner_text = found[0]
        outer = _SUBSTITUTION.sub(" ", line, count=1)
        words, target = _take_target(command_words(outer))
        spec, _ = find_command(words)
        if spec is None or spec.path not in (("rmi",), ("image", "rm"), ("image", "remove")):
            tokenize(line)  # refuses it with the shell-syntax message
        substitution = _parse_substitution(inner_text)
    else:
        words, target = _take_target(command_words(line))
    shown = "docker " + quote_line(words) if words else "docker"
    if substitution is not None:
        shown += " $(" + substitution.line + ")"
    if target is not None:  # as the CLI spells it, so a button that re-runs the line reaches the same host
        shown = "docker -H " + quote_line([target]) + shown[len("docker"):]
    command = Command(words, shown, substitution=substitution, target=target)
    if not words or words[0] in HELP_FLAGS:
        command.words = ["help"]
        command.parsed = parse_flags(spec_for(("help",)), [], "docker help")
        return command
    if words[0] in VERSION_FLAGS:
        if len(words) > 1:
            raise UsageError(f"{words[0]} takes no arguments", "Try `docker --version` or `docker version`.")
        command.extra["short_version"] = True
        return command
    if is_builtin(words):
        command.extra["management_help"] = words[0]
        return command
    command.parsed = _parse_command(words, shown, substitution is not None)
    return command


def _parse_substitution(inner: str) -> Parsed:
    words = command_words(inner)
    spec, rest = find_command(words)
    if spec is None or spec.path not in _LIST_PATHS:
        raise UsageError(f"$({inner.strip()[:60]}) is shell syntax Dockhand does not run",
                         "Inside $(...) Dockhand takes only `docker images -q` (with its flags): "
                         "`docker rmi $(docker images -q -f dangling=true)`.")
    parsed = parse_flags(spec, rest, "docker " + quote_line(words))
    if not parsed.opts.get("quiet"):
        raise UsageError("$(docker images ...) must list IDs only: add -q",
                         "The tutorial's form is `docker rmi $(docker images -q)`.")
    if parsed.help:
        raise UsageError("--help inside $(...) lists no images", "Run `docker images --help` on its own.")
    return parsed


def _parse_command(words: list[str], line: str, substituted: bool = False) -> Parsed:
    """Find the command ``words`` name and parse its flags and arguments,
    then run the command's own checks; raises UsageError."""
    if words[0].startswith("-"):
        raise UsageError(f"global option {words[0][:40]} is not supported by Dockhand",
                         "Dockhand talks to the engine it is configured for; put options after the command, "
                         "e.g. `docker images -a`.")
    spec, rest = find_command(words)
    if spec is None:
        raise unknown_command(words)
    if substituted:
        # the IDs come from $(...): the argument count is checked once they are known
        parsed = parse_flags(_without_min_args(spec), rest, line)
        parsed.spec = spec
        return parsed
    try:
        parsed = parse_flags(spec, rest, line)
    except UsageError as exc:
        if spec.path == ("images",) and rest and rest[0] in _COMMAND_WORDS:
            exc.hint = f"Did you mean `docker {quote_line(rest)}`? " + exc.hint
        raise
    if not parsed.help and spec.validate is not None:
        spec.validate(parsed)
    return parsed


def _without_min_args(spec: CommandSpec) -> CommandSpec:
    import dataclasses

    return dataclasses.replace(spec, min_args=0)


async def dispatch(text: str, actor: Actor, services: Services, emit: Emit = None) -> Reply:
    """Run one command line for ``actor``; never raises for anything a user can cause."""
    line = text.strip()
    here = services
    try:
        command = parse_command(line)
        line = command.line
        names, many = targets(command, actor, services)
        if many:
            return await _fan_out(command, actor, services, names, emit)
        here = target_services(names, services)
        reply = await _run(command, actor, here, emit)
    except DockhandError as exc:
        reply = error_reply(line, exc.message, exc.hint, exc.status)
    except Exception:  # a bug: log it whole, tell the person something useful
        reply = internal_error(line, actor)
    return await with_context(reply, here)


def targets(command: Command, actor: Actor, services: Services) -> tuple[tuple[str, ...], bool]:
    """The host names ``command`` goes to (``()``: the one unnamed engine) and
    whether it fans out (``@all``, a group). Raises UsageError for a host
    nobody configured, listing the known ones."""
    hosts = services.fleet
    if hosts is None:
        if command.target is not None and command.target != services.label:
            raise UsageError(f"unknown host {command.target[:60]!r}",
                             f"This Dockhand manages one engine ({services.label}); name several in "
                             "DOCKHAND_HOSTS (name=URL,...) to choose one with `@name` or `-H name`.")
        return (), False
    names = hosts.resolve(command.target, actor.channel, actor.channel_name)
    if command.spec is None or command.parsed.help:  # help and usage answer the same everywhere
        return names[:1], False
    return names, len(names) > 1 or hosts.is_group(command.target, actor.channel, actor.channel_name)


def target_services(names: tuple[str, ...], services: Services) -> Services:
    """The one host's Services (``services`` itself with a single unnamed engine)."""
    return services.fleet.services(names[0]) if names and services.fleet is not None else services


def services_for_line(text: str, actor: Actor, services: Services) -> Services:
    """The Services a command line speaks to when it names one host (front
    ends announce a pull on the right host with it); ``services`` when the
    line does not parse or fans out."""
    try:
        names, many = targets(parse_command(text), actor, services)
    except DockhandError:
        return services
    return services if many else target_services(names, services)


def hosts_for_line(text: str, actor: Actor, services: Services) -> tuple[str, list[Services]]:
    """How a front end names where a command line goes ("prod", or
    "web (prod-1, prod-2)" for a fan-out) and those hosts' Services; the
    line's own host when it does not parse."""
    try:
        command = parse_command(text)
        names, many = targets(command, actor, services)
    except DockhandError:
        return services.label, [services]
    if not many:
        here = target_services(names, services)
        return here.label, [here]
    selector = (command.target if command.target is not None
                else services.fleet.channel_default(actor.channel, actor.channel_name) or "all")
    label = f"{selector} ({', '.join(names)})" if selector not in names else selector
    return label, [services.fleet.services(n) for n in names]


async def _fan_out(command: Command, actor: Actor, services: Services, names: tuple[str, ...],
                   emit: Emit = None) -> Reply:
    from . import drift, fanout, fleet_ops

    selector = (command.target if command.target is not None
                else services.fleet.channel_default(actor.channel, actor.channel_name))
    selector = selector or "all"
    if command.effect != READ:
        async def change(here: Services) -> Reply:
            return await _run(command, actor, here, None)

        if command.asks_first:  # one plan per host, one confirmation for all
            return await fleet_ops.request(command.line, selector, names, actor, services, change)
        # a write (pull): on every host at once, each an audited operation of its host, run to its end
        return await fanout.run(command.line, selector, names, services.fleet, change, timeout=False)


    reference = drift.reference_of(command)  # `images NAME[:TAG] @all`: is it the same image everywhere?

    async def run_one(here: Services) -> Reply:
        reply = await _run(command, actor, here, None)
        if reference is not None and reply.ok:
            reply = await drift.attach(reply, here.engine, reference)
        return reply

    return await fanout.run(command.line, selector, names, services.fleet, run_one, drift_of=reference, emit=emit)


def internal_error(line: str, actor: Actor) -> Reply:
    ref = os.urandom(4).hex()  # a reference to find the traceback in the log
    log.exception("internal error %s while running %r for %s", ref, line, actor.id)
    return error_reply(line, f"Internal error while running `{line[:200]}` (logged as {ref}).",
                       "This is a bug in Dockhand, not in your command: report the reference to the team.")


async def _run(command: Command, actor: Actor, services: Services, emit: Emit) -> Reply:
    line = command.line
    if command.extra.get("short_version"):
        spec = spec_for(("version",))
        from .system import short_version

        return await short_version(Call(parse_flags(spec, [], line), actor, services, emit))
    if command.extra.get("management_help"):
        group = command.extra["management_help"]
        return Reply(line, (Preformatted(management_help(group)),), summary=f"docker {group} commands")
    parsed = command.parsed
    spec = parsed.spec
    if parsed.help:
        return Reply(line, (Preformatted(command_help(spec)),), summary=f"usage of {spec.command_path}")
    call = Call(parsed, actor, services, emit, substitution=command.substitution)
    denial = access.authorise(services.access(), actor, spec.effect, spec.command_path, spec.role)
    if denial is not None:
        return await operations.denied(call, denial)
    await engine_check(command, services)
    if command.asks_first:
        return await operations.request(call, await spec.planner(call))
    if spec.effect == WRITE:
        return await operations.run_write(call)
    return await spec.run(call)


def preflight(text: str) -> Reply | None:
    """Check a command line without running it: the usage-error Reply it
    would get, or None. Front ends use it before announcing an action."""
    try:
        parse_command(text)
    except DockhandError as exc:
        return error_reply(text.strip(), exc.message, exc.hint, exc.status)
    return None


async def engine_check(command: Command, services: Services) -> None:
    """The command's engine-side checks (``CommandSpec.engine_check``): raises
    UsageError with the engine's own words. Dispatch runs it before acting;
    a front end that announces a command runs it before announcing."""
    spec = command.spec
    if spec is not None and spec.engine_check is not None and not command.parsed.help:
        await spec.engine_check(command.parsed, services.engine)


async def engine_preflight(command: Command, services: Services, actor: Actor | None = None) -> Reply | None:
    """:func:`engine_check` as a reply: the usage-error Reply, or None. With
    ``actor``, on the host the command names (or the channel's)."""
    if actor is not None:
        services = services_for_line(command.line, actor, services)
    try:
        await engine_check(command, services)
    except DockhandError as exc:
        return await with_context(error_reply(command.line, exc.message, exc.hint, exc.status), services)
    return None


def effect_of(text: str) -> str:
    """READ, WRITE or DESTRUCTIVE; a line that does not parse is READ (its
    answer is a usage error, which changes nothing)."""
    try:
        return parse_command(text).effect
    except DockhandError:
        return READ


async def with_context(reply: Reply, services: Services) -> Reply:
    """The context line: which host answered, its engine's version, and a
    note when that engine is Dockhand's sample engine (engine_identity.py)."""
    await engine_identity.learn(services)
    reply = engine_identity.fit_hints(reply, services)
    return reply.with_context(services.label, services.engine_version, engine_identity.engine_note(services))


async def with_operation_context(reply: Reply, services: Services) -> Reply:
    """:func:`with_context` for the answer to a confirmation or a cancel: the
    host the operation is on (many hosts: not the default one); an operation
    over several hosts keeps its hosts' label, its sections name each."""
    op = reply.operation
    if services.fleet is not None and op is not None:
        here = services.fleet.for_label(op.host)
        if here is None:
            return reply if reply.host else dataclasses.replace(reply, host=op.host)
        services = here
    return await with_context(reply, services)

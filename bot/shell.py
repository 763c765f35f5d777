"""The terminal front end: an interactive shell and one-shot ``-c`` mode over
the very same :func:`handlers.dispatch` that Slack uses (like Hubot's shell
adapter or errbot's text backend). The shell's user acts as admin: they
already hold the Docker socket."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

from bot.render.text import context_note, render, render_progress, safe
from handlers import engine_identity, operations
from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.dispatch import with_operation_context
from handlers.errors import EngineError
from handlers.replies import ErrorPart, HostHeading, Progress, Reply, Status, error_reply

BANNER = "Dockhand shell on {host}. Type 'help' for commands, 'exit' to leave. Leading '/' and 'docker' are optional."
HISTORY = Path(os.environ.get("DOCKHAND_HISTORY", Path.home() / ".dockhand_history"))


def shell_actor() -> Actor:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "shell"
    return Actor(id=user, name=user, via="shell")


def _ask(question: str, expires_at: float, stdin, out) -> bool:
    """The terminal's y/N prompt (the CLI's own wording for prune)."""
    until = time.strftime("%H:%M:%S", time.localtime(expires_at))
    out.write(f"{question} (valid until {until}) [y/N] ")
    out.flush()
    answer = stdin.readline()
    if not answer:
        out.write("\n")
    return answer.strip().lower() in ("y", "yes")


MAX_FOLLOW_UPS = 5  # new plans asked about after the first answer (a host whose plan keeps changing)


async def answer(reply: Reply, actor: Actor, services: Services, *, yes: bool, can_ask: bool,
                 show: Callable[[Reply], Awaitable[None]], stdin=None, out=None) -> Status | None:
    """Settle every confirmation ``reply`` asks for, the terminal's way, then
    every one its answers ask for: a plan whose host changed before it ran
    comes back as a new plan with a confirmation of its own (over several
    hosts, one for each host that changed: ``Reply.confirmations``), and is
    settled the same way, each through ``operations.confirm``/``cancel`` on
    its own operation.

    ``yes``: confirmed in advance (``dockhand shell --yes``): every plan this
    command makes, the new ones too, each printed before it runs. Otherwise
    y/N for each when there is a terminal to ask on; without one, cancel and
    say how to confirm. ``show`` prints each answer as it comes (a new plan
    before its question). Returns the worst status of the answers (None when
    nothing was asked)."""
    questions = list(reply.confirmations)
    if not questions:
        return None
    out, stdin = out or sys.stdout, stdin or sys.stdin
    if not yes and not can_ask:
        cancelled = [await operations.cancel(q.op, actor, services) for q in questions]
        await show(Reply(reply.command, (ErrorPart(
            "Not confirmed: there is no terminal to ask on, so nothing was removed.",
            "Review the plan above, then run it again with `dockhand shell --yes -c '...'` to confirm."),),
            status=Status.FAILED, summary="not confirmed",
            operation=cancelled[0].operation))  # its host names the reply (many hosts: not the default one)
        return Status.FAILED
    worst = Status.OK
    follow_ups = 0
    while questions:
        question = questions.pop(0)
        if yes:
            print(f"Confirmed by --yes: {question.question}", file=out, flush=True)
            final = await operations.confirm(question.op, actor, services)
        elif _ask(question.question, question.expires_at, stdin, out):
            final = await operations.confirm(question.op, actor, services)
        else:
            final = await operations.cancel(question.op, actor, services)
        await show(final)
        worst = max(worst, final.status)
        new = list(final.confirmations)
        if new and follow_ups + len(new) > MAX_FOLLOW_UPS:
            for q in new:  # a host that changes under every plan: stop asking, leave nothing pending
                await operations.cancel(q.op, actor, services)
            await show(error_reply(final.command, "The plan kept changing before it could run, so Dockhand stopped "
                                   "asking: the last plan is cancelled and nothing more was removed.",
                                   "Find what keeps changing the host (`docker images`, `docker ps -a`), "
                                   "then run the command again."))
            return Status.FAILED
        follow_ups += len(new)
        questions = new + questions  # a new plan is asked about right after the answer that shows it
    return worst


async def run_once(services: Services, line: str, out=None, err=None, *, yes: bool = False) -> int:
    """``dockhand shell [--yes] -c LINE``: print the reply, settle what it asks, return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    actor = shell_actor()
    engine_identity.start_learning(services)  # the context line's question, while the command runs
    await operations.recover(services)
    reply = await dispatch(line, actor, services)
    _print(reply, out, err)

    async def show(final: Reply) -> None:
        _print(await with_operation_context(final, services), out, err)

    settled = await answer(reply, actor, services, yes=yes, can_ask=sys.stdin.isatty() and out.isatty(),
                           show=show, out=out)
    return int(reply.status if settled is None else settled)


def _streams(reply: Reply) -> list[Reply]:
    """A reply with a section per host, cut into its sections (a host that
    failed goes to stderr, the others' answers to stdout); else the reply."""
    if not any(isinstance(p, HostHeading) for p in reply.parts):
        return [reply]
    out: list[Reply] = []
    for part in reply.parts:
        if isinstance(part, HostHeading) or not out:
            out.append(dataclasses.replace(reply, parts=()))
        out[-1] = dataclasses.replace(out[-1], parts=out[-1].parts + (part,))
    return out


def _print(reply: Reply, out, err) -> None:
    """Errors go to stderr like the CLI's; everything else (tables, plans) to stdout.
    The engine's note (the sample engine) follows on stderr."""
    for part in _streams(reply):
        text = render(part)
        if text:
            print(text, file=err if any(isinstance(p, ErrorPart) for p in part.parts) else out, flush=True)
    note = context_note(reply)
    if note:
        print(note, file=err, flush=True)


async def _progress_printer(reply: Reply) -> None:
    for part in reply.parts:
        if isinstance(part, Progress):
            print(safe(render_progress(part)), file=sys.stdout, flush=True)


def interactive(services: Services, *, yes: bool = False) -> int:
    try:
        import readline  # line editing and history where the platform has it
    except ImportError:  # pragma: no cover
        readline = None
    if readline is not None:
        try:
            readline.read_history_file(HISTORY)
        except (FileNotFoundError, OSError):
            pass
        readline.set_history_length(1000)
    actor = shell_actor()
    host = services.host_label or services.engine.host
    with asyncio.Runner() as runner:
        from bot.completion import install
        install(readline, services, runner)  # Tab completion; does nothing without readline
        problem = None
        try:
            runner.run(services.engine.version())
        except EngineError as exc:
            problem = exc
        runner.run(engine_identity.learn(services))
        note = engine_identity.engine_note(services)
        print(BANNER.format(host=host) + (f"\n[{note}]" if note else ""), flush=True)
        if problem is not None:
            print(f"Warning: {problem.message}\nHint: {problem.hint}", file=sys.stderr, flush=True)
        for op in runner.run(operations.recover(services)):
            print(f"Warning: `{op.command}` was cut short when Dockhand stopped (audited as interrupted); "
                  "check the host with `docker images`.", file=sys.stderr, flush=True)
        status = 0
        try:
            while True:
                try:
                    line = input("dockhand> ")
                except EOFError:
                    print()
                    break
                except KeyboardInterrupt:
                    print("^C")
                    continue
                line = line.strip()
                if not line:
                    continue
                if line in ("exit", "quit", "logout", ":q"):
                    status = 0  # leaving on purpose is a success, whatever the last command did
                    break
                try:
                    reply = runner.run(dispatch(line, actor, services,
                                                emit=_progress_printer if sys.stdout.isatty() else None))
                except KeyboardInterrupt:
                    print("Interrupted.", file=sys.stderr)
                    continue
                _print(reply, sys.stdout, sys.stderr)

                async def show(final: Reply) -> None:
                    _print(await with_operation_context(final, services), sys.stdout, sys.stderr)

                try:
                    settled = runner.run(answer(reply, actor, services, yes=yes, can_ask=sys.stdin.isatty(),
                                                show=show))
                except KeyboardInterrupt:
                    print("Interrupted.", file=sys.stderr)
                    continue
                status = int(reply.status if settled is None else settled)
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(HISTORY)
                except OSError:
                    pass
            from bot.wiring import close_services

            runner.run(close_services(services))
    return status

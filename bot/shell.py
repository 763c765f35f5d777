"""The terminal front end: an interactive shell and one-shot ``-c`` mode over
the very same :func:`handlers.dispatch` that Slack uses (like Hubot's shell
adapter or errbot's text backend). The shell's user acts as admin: they
already hold the Docker socket."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path

from bot.render.text import render, render_progress
from handlers import dispatch
from handlers.context import Actor, Services
from handlers.errors import EngineError
from handlers.replies import ErrorPart, Progress, Reply

BANNER = "Dockhand shell on {host}. Type 'help' for commands, 'exit' to leave. Leading '/' and 'docker' are optional."
HISTORY = Path(os.environ.get("DOCKHAND_HISTORY", Path.home() / ".dockhand_history"))


def shell_actor() -> Actor:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "shell"
    return Actor(id=user, name=user, is_admin=True, via="shell")


async def run_once(services: Services, line: str, out=None, err=None) -> int:
    """``dockhand shell -c LINE``: print the reply, return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    reply = await dispatch(line, shell_actor(), services)
    _print(reply, out, err)
    return int(reply.status)


def _print(reply: Reply, out, err) -> None:
    """Errors go to stderr like the CLI's; everything else (tables, plans) to stdout."""
    text = render(reply)
    if text:
        print(text, file=err if any(isinstance(p, ErrorPart) for p in reply.parts) else out, flush=True)


async def _progress_printer(reply: Reply) -> None:
    for part in reply.parts:
        if isinstance(part, Progress):
            print(render_progress(part), file=sys.stdout, flush=True)


def interactive(services: Services) -> int:
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
    print(BANNER.format(host=host), flush=True)
    with asyncio.Runner() as runner:
        try:
            runner.run(services.engine.version())
        except EngineError as exc:
            print(f"Warning: {exc.message}\nHint: {exc.hint}", file=sys.stderr, flush=True)
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
                    break
                try:
                    reply = runner.run(dispatch(line, actor, services,
                                                emit=_progress_printer if sys.stdout.isatty() else None))
                except KeyboardInterrupt:
                    print("Interrupted.", file=sys.stderr)
                    continue
                _print(reply, sys.stdout, sys.stderr)
                status = int(reply.status)
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(HISTORY)
                except OSError:
                    pass
            runner.run(services.engine.close())
    return status

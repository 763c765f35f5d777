"""The ``dockhand`` command.

    dockhand                  Slack when SLACK_BOT_TOKEN is set, else the shell
    dockhand shell [-c CMD]   the terminal front end (interactive, or one command)
    dockhand slack            the Slack front end (HTTP, or Socket Mode with SLACK_APP_TOKEN)
    dockhand --version

Exit statuses: 0 ok, 1 the command failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import bot
from bot.config import ConfigError, load_dotenv_file, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockhand", description="Docker image ChatOps: Slack or terminal.")
    p.add_argument("--version", action="version", version=f"dockhand {bot.__version__}")
    p.add_argument("--env-file", help="read settings from this file instead of ./.env")
    sub = p.add_subparsers(dest="mode")
    sh = sub.add_parser("shell", help="terminal front end (default without Slack tokens)")
    sh.add_argument("-c", dest="command", metavar="COMMAND", help="run one command, print the reply and exit")
    sub.add_parser("slack", help="Slack front end (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_dotenv_file(args.env_file)
    mode = args.mode
    try:
        settings = load_settings(slack={"slack": True, "shell": False}.get(mode))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"dockhand: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if mode is None:
        mode = "slack" if settings.slack_enabled else "shell"

    from bot.wiring import build_services

    services = build_services(settings)
    if mode == "slack":
        from bot.slack.app import serve

        return serve(settings, services)
    if args.__dict__.get("command") is not None:
        from bot.shell import run_once

        async def once() -> int:
            try:
                return await run_once(services, args.command)
            finally:
                await services.engine.close()

        return asyncio.run(once())
    from bot.shell import interactive

    return interactive(services)

"""The ``dockhand`` command's options (argparse), for :mod:`bot.cli`."""

from __future__ import annotations

import argparse
import os
import sys

import bot


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, given the terminal's width the way
    ``shutil.get_terminal_size`` finds it (COLUMNS, then the terminal, else
    80): argparse would import shutil for it, and with it bz2 and lzma, at
    every start of every command."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                columns = int(os.environ.get("COLUMNS", "0"))
            except ValueError:
                columns = 0
            if columns <= 0:
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
                except (AttributeError, ValueError, OSError):
                    columns = 0
            width = (columns or 80) - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockhand", description="Docker image ChatOps: Slack or terminal.",
                                formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"dockhand {bot.__version__}")
    p.add_argument("--env-file", help="read settings from this file instead of ./.env")
    sub = p.add_subparsers(dest="mode", prog="dockhand")  # prog given: no terminal-size probe (shutil)
    sh = sub.add_parser("shell", help="terminal front end (default without Slack tokens)", formatter_class=_Formatter)
    sh.add_argument("-c", dest="command", metavar="COMMAND", help="run one command, print the reply and exit")
    sh.add_argument("-y", "--yes", action="store_true",
                    help="confirm removals without asking (needed with -c when there is no terminal)")
    au = sub.add_parser("audit", help="the local audit log: verify its hash chain, or show its last records",
                        formatter_class=_Formatter)
    au.add_argument("action", choices=("verify", "show"), help="verify: check the chain; show: print records")
    au.add_argument("-n", type=int, default=20, help="how many records `show` prints (default 20)")
    au.add_argument("--file", help="the audit log (default: audit.jsonl in DOCKHAND_STATE_DIR)")
    sub.add_parser("slack", help="Slack front end (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)",
                   formatter_class=_Formatter)
    return p


def command_value_first(argv: list[str]) -> list[str]:
    """``shell -c --version``: the word after ``-c`` is the command line even
    when it starts with a dash (argparse would take it for an option)."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word == "-c" and out[i + 1].startswith("-"):
            out[i:i + 2] = [f"-c{out[i + 1]}"]
            break
    return out

"""The Docker CLI's command-line grammar, for chat and terminal alike.

Tokenises a command line (shell-like quoting, Slack's curly quotes), then
parses flags the way the CLI's flag library (spf13/pflag) does:
``--flag``, ``--flag=value``, ``--flag value``, ``-abc`` (combined booleans),
``-f value``, ``-fvalue``, ``-f=value``, ``--`` to end flags, flags and
arguments in any order. Errors use the CLI's words (``unknown flag: --foo``)
and say where to look next (``See 'docker images --help'.``).

Only the grammar lives here; the command table is in ``handlers/commands.py``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UsageError
from .records import record

READ, WRITE, DESTRUCTIVE = "read", "write", "destructive"

MAX_LINE = 4000  # longer than any sane command; Slack allows 4,000 in a slash command

_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})
_SHELL_PUNCTUATION = set("();<>|&")


@record
class Flag:
    long: str
    short: str = ""
    kind: str = "bool"  # bool | str | int | list
    help: str = ""
    metavar: str = ""  # shown in usage: "filter", "int", "string"
    default: Any = None
    unsupported: str = ""  # non-empty: the CLI has this flag, Dockhand refuses it and says why

    @property
    def dest(self) -> str:
        return self.long.replace("-", "_")

    def initial(self) -> Any:
        if self.kind == "list":
            return []
        if self.kind == "bool":
            return bool(self.default)
        return self.default


@record
class CommandSpec:
    path: tuple[str, ...]  # ("image", "ls")
    use: str  # "images [OPTIONS] [REPOSITORY[:TAG]]" (after "docker ")
    short: str
    run: Callable | None = None
    flags: tuple[Flag, ...] = ()
    min_args: int = 0
    max_args: int | None = None
    aliases: tuple[str, ...] = ()  # full forms shown under "Aliases:"
    # What running it does to the host: READ (nothing), WRITE (adds: pull) or
    # DESTRUCTIVE (removes: rmi, prune). The role it needs and whether it is
    # confirmed, audited or shareable all follow from this one field.
    effect: str = "read"
    examples: tuple[str, ...] = ()
    # checks the parsed arguments without touching the engine (raises UsageError);
    # lets a front end refuse a bad command before announcing it
    validate: Callable[["Parsed"], None] | None = None
    # checks the arguments with the engine's own parser, reading nothing that
    # changes (raises UsageError in the engine's words): what depends on the
    # engine's version, refused before a front end announces the command
    engine_check: Callable | None = None
    # DESTRUCTIVE commands: predicts what running would do (a handlers.plans.Plan),
    # for the confirmation; the confirm step calls it again before acting
    planner: Callable | None = None
    # a WRITE command that, with these options, is planned and confirmed too
    # (`pull -a`: every tag of a repository can be a lot)
    confirm_if: Callable[["Parsed"], bool] | None = None
    # The role it needs when that is higher than its effect implies ("admin"
    # for `docker run`, a WRITE); "" = what the effect implies. Honoured by
    # handlers/access.py only.
    role: str = ""
    # False: flags end at the first argument, the rest is the argument list
    # (pflag's SetInterspersed(false), as `docker run IMAGE COMMAND -x` needs)
    interspersed: bool = True

    @property
    def read_only(self) -> bool:
        return self.effect == READ

    @property
    def command_path(self) -> str:
        return "docker " + " ".join(self.path)

    @property
    def use_line(self) -> str:
        return "docker " + " ".join(self.path[:-1] + (self.use,)) if len(self.path) > 1 else "docker " + self.use


@dataclass
class Parsed:
    spec: CommandSpec
    opts: dict[str, Any]
    args: list[str]
    line: str  # normalised command line, e.g. "docker images -a"
    help: bool = False


def tokenize(text: str) -> list[str]:
    """Split a command line into words as a POSIX shell would, without running
    anything. Refuses what only a shell could do (pipes, substitution)."""
    if len(text) > MAX_LINE:
        raise UsageError(f"command line too long ({len(text)} characters, at most {MAX_LINE})",
                         "Dockhand runs one Docker command at a time.")
    text = text.translate(_QUOTES)
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text) or "\x7f" in text:
        raise UsageError("command line contains control characters",
                         "Type the command again without pasting invisible characters.")
    # punctuation_chars makes unquoted ; | & < > ( ) words of their own, so
    # `images; rm -rf /` cannot hide a second command inside a word.
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise UsageError(f"cannot parse the command line: {str(exc).lower()}",
                         "Close every quote: `docker search --filter \"is-official=true\" ubuntu`.") from None
    for word in words:
        if (word and set(word) <= _SHELL_PUNCTUATION) or "$(" in word or "`" in word:
            raise UsageError(
                f"{word!r} is shell syntax: Dockhand runs one Docker command, not a shell",
                "Pipes, redirections and $(...) are not supported. To remove every unused image, "
                "use `docker image prune -a`; to list IDs only, `docker images -q`.")
    return words


def _see(spec: CommandSpec) -> str:
    return f"See '{spec.command_path} --help'."


def _convert(flag: Flag, spec: CommandSpec, value: str, shown: str) -> Any:
    if flag.kind == "int":
        try:
            return int(value, 10)
        except ValueError:
            raise UsageError(f'invalid argument "{_clip(value)}" for "{shown}" flag: not a whole number',
                             _see(spec)) from None
    if flag.kind == "bool":
        low = value.lower()
        if low in ("1", "t", "true"):
            return True
        if low in ("0", "f", "false"):
            return False
        raise UsageError(f'invalid argument "{_clip(value)}" for "{shown}" flag: use true or false', _see(spec))
    return value


def _clip(value: str, width: int = 60) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def parse_flags(spec: CommandSpec, words: list[str], line: str) -> Parsed:
    """Parse ``words`` (the part after the command path) against ``spec``."""
    by_long = {f.long: f for f in spec.flags}
    by_short = {f.short: f for f in spec.flags if f.short}
    opts: dict[str, Any] = {f.dest: f.initial() for f in spec.flags}
    args: list[str] = []
    parsed = Parsed(spec, opts, args, line)

    def store(flag: Flag, value: Any, shown: str) -> None:
        if flag.unsupported:
            raise UsageError(f"flag {shown} is not supported by Dockhand", flag.unsupported)
        if flag.kind == "list":
            opts[flag.dest].append(value)
        else:
            opts[flag.dest] = value

    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            args.extend(words[i:])
            break
        if word in ("--help", "-h"):
            parsed.help = True
            continue
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            if name.startswith("-") or not name:
                raise UsageError(f"bad flag syntax: {_clip(word)}", _see(spec))
            flag = by_long.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: --{_clip(name)}", _suggest_flag(spec, name))
            shown = f"--{name}"
            if flag.kind == "bool":
                store(flag, _convert(flag, spec, value, shown) if eq else True, shown)
            else:
                if not eq:
                    if i >= len(words):
                        raise UsageError(f"flag needs an argument: --{name}", _see(spec))
                    value = words[i]
                    i += 1
                store(flag, _convert(flag, spec, value, shown), shown)
            continue
        if word.startswith("-") and len(word) > 1:
            shorts = word[1:]
            j = 0
            while j < len(shorts):
                ch = shorts[j]
                if ch == "h":
                    parsed.help = True
                    j += 1
                    continue
                flag = by_short.get(ch)
                if flag is None:
                    raise UsageError(f"unknown shorthand flag: {ch!r} in -{_clip(shorts)}", _suggest_flag(spec, ch))
                shown = f"-{ch}"
                rest = shorts[j + 1:]
                if flag.kind == "bool":
                    if rest.startswith("="):
                        store(flag, _convert(flag, spec, rest[1:], shown), shown)
                        break
                    store(flag, True, shown)
                    j += 1
                    continue
                if rest:
                    value = rest[1:] if rest.startswith("=") else rest
                elif i < len(words):
                    value = words[i]
                    i += 1
                else:
                    raise UsageError(f"flag needs an argument: {ch!r} in -{shorts}", _see(spec))
                store(flag, _convert(flag, spec, value, shown), shown)
                break
            continue
        args.append(word)
        if not spec.interspersed:
            args.extend(words[i:])
            break

    if parsed.help:
        return parsed
    _check_args(spec, args)
    return parsed


def _plural(n: int) -> str:
    return "argument" if n == 1 else "arguments"


def _check_args(spec: CommandSpec, args: list[str]) -> None:
    lo, hi = spec.min_args, spec.max_args
    tail = f"\n\nUsage:  {spec.use_line}\n\n{spec.short}"
    path = spec.command_path
    if hi == 0 and args:
        raise UsageError(f'"{path}" accepts no arguments.{tail}', _see(spec))
    if lo == hi and len(args) != lo:
        raise UsageError(f'"{path}" requires exactly {lo} {_plural(lo)}.{tail}', _see(spec))
    if len(args) < lo:
        raise UsageError(f'"{path}" requires at least {lo} {_plural(lo)}.{tail}', _see(spec))
    if hi is not None and len(args) > hi:
        raise UsageError(f'"{path}" accepts at most {hi} {_plural(hi)}.{tail}', _see(spec))


def _suggest_flag(spec: CommandSpec, name: str) -> str:
    import difflib

    names = [f.long for f in spec.flags] + [f.short for f in spec.flags if f.short]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = _see(spec)
    if close:
        dash = "-" if len(close[0]) == 1 else "--"
        hint = f"Did you mean {dash}{close[0]}? " + hint
    return hint


def flag_usages(flags: tuple[Flag, ...]) -> str:
    """pflag's option listing: ``  -a, --all    Show all images``."""
    lines = []
    for f in sorted(flags, key=lambda f: f.long):
        left = f"  -{f.short}, --{f.long}" if f.short else f"      --{f.long}"
        if f.kind != "bool":
            left += " " + (f.metavar or {"int": "int", "list": "filter"}.get(f.kind, "string"))
        text = f.help
        if f.kind == "int" and f.default is not None:
            text += f" (default {f.default})"
        if f.unsupported:
            text += " (not supported by Dockhand)"
        lines.append((left, text))
    width = max((len(left) for left, _ in lines), default=0) + 3
    return "\n".join(left.ljust(width) + text for left, text in lines)


def command_help(spec: CommandSpec) -> str:
    out = [f"\nUsage:  {spec.use_line}\n", spec.short]
    if spec.aliases:
        out += ["", "Aliases:", "  " + ", ".join(spec.aliases)]
    if spec.flags:
        out += ["", "Options:", flag_usages(spec.flags)]
    if spec.examples:
        out += ["", "Examples:"] + [f"  {e}" for e in spec.examples]
    return "\n".join(out) + "\n"


def quote_line(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)

"""Tab completion for ``dockhand shell``.

Two layers:

* :func:`complete` is pure: given the line before the word under the cursor
  and that word, the :class:`Candidate` words with their descriptions. It
  reads the very command table that ``--help`` prints
  (:func:`handlers.commands.table`, :data:`handlers.commands.MANAGEMENT`,
  each ``CommandSpec.short``, each ``Flag.help``) and the filter names the
  handlers accept, so completion and help can never disagree.
* :func:`install` wires it into readline: the completer, a display hook that
  lists candidates as ``name -- description`` on a double Tab (like the
  Docker CLI's zsh completion), and :class:`EngineImages`, which asks the
  engine for its images with a short deadline and keeps them a few seconds.

What completes where (``docker`` and a leading ``/`` are optional, as in
every command line):

* first word: the commands and management groups, ``help``, ``exit``;
* after a management group (``image ``): its subcommands; after ``help``:
  command names;
* after ``-`` or ``--``: the command's flags (unsupported ones too: their
  description says so, as ``--help`` does);
* after ``-f``/``--filter`` (or in ``--filter=``): the filter names the
  command accepts (``dangling=``, ``reference=``…), then ``true``/``false``
  or image references where the filter takes them;
* arguments of ``rmi``/``image rm``/``image remove`` (repositories,
  ``repo:tag`` and image IDs), ``images``/``image ls``/``image list`` and
  ``pull``/``image pull`` (repositories and ``repo:tag``): from the engine.

Many hosts (``handlers/fleet.py``): ``targets`` (a callable returning
``{name: description}``: hosts, groups, ``all``) completes a word starting
with ``@`` to ``@name``, the word after ``-H``/``--host`` and ``--host=`` to a
name, and adds ``-H``/``--host`` to a command's flags. The host selector is
found as dispatch finds it (:func:`handlers.dispatch.split_line_target`:
``@name`` anywhere, ``-H name`` before or after the command, never among
``docker run``'s container words), and ``host_images`` (a callable taking
that selector, None for the default host) gives the image names of the
host(s) it names: :class:`FleetImages` asks each of those engines at once and
waits for them together within the one :data:`DEADLINE`, so a host that is
down or frozen costs Tab at most that, and offers nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence

from handlers.argv import CommandSpec, Flag, tokenize
from handlers.commands import MANAGEMENT, find_command, table
from handlers.images import LIST_FILTERS, PRUNE_FILTERS
from handlers.ports import ImageSummary
from handlers.records import record
from handlers.search import SEARCH_FILTERS
from handlers.units import human_size, truncate_id

PROMPT = "dockhand> "
DEADLINE = 0.5  # seconds Tab may wait for the engine's image list
TTL = 5.0  # seconds an image list is reused

# Words the shell itself answers before dispatch (bot/shell.py).
SHELL_WORDS = {"exit": "Leave the shell"}
HELP_FLAG = ("--help", "Print usage")

# Which filters each command accepts: the dictionaries its handler checks.
_IMAGES = (("images",), ("image", "ls"), ("image", "list"))
_RMI = (("rmi",), ("image", "rm"), ("image", "remove"))
_PULL = (("pull",), ("image", "pull"))
_RUN = (("run",),)  # its IMAGE (the first argument); the command after it is the image's
FILTERS: dict[tuple[str, ...], Mapping[str, str]] = {
    **{p: LIST_FILTERS for p in _IMAGES},
    ("image", "prune"): PRUNE_FILTERS,
    ("search",): SEARCH_FILTERS,
}
# Arguments that name local images: (with image IDs?)
IMAGE_ARGS: dict[tuple[str, ...], bool] = {**{p: True for p in _RMI + _RUN},
                                           **{p: False for p in _IMAGES + _PULL}}
# Filter values that are image references (before=busybox:1.36).
_IMAGE_FILTERS = frozenset({"before", "since"})

Images = Callable[[], Sequence[ImageSummary]]
Targets = Callable[[], Mapping[str, str]]
HostImages = Callable[[Optional[str]], Sequence[ImageSummary]]  # selector (None: the default host) -> images
HOST_FLAG = "Run on this host or group (like @name)"


@record
class Candidate:
    """One completion: ``text`` is inserted as is and ends with a space when
    the word is complete (readline from Python appends nothing itself)."""

    text: str
    description: str = ""

    @property
    def name(self) -> str:
        return self.text.rstrip()


# --------------------------------------------------------------------------
# the pure part


def top_level() -> dict[str, str]:
    """First words: commands and management groups, with their descriptions."""
    words = {spec.path[0]: spec.short for spec in table() if len(spec.path) == 1}
    words.update(MANAGEMENT)
    return words


def subcommands(group: str) -> dict[str, str]:
    return {spec.path[1]: spec.short for spec in table() if len(spec.path) == 2 and spec.path[0] == group}


def flag_description(flag: Flag) -> str:
    """The flag's text exactly as ``--help`` lists it (``handlers.argv.flag_usages``)."""
    text = flag.help
    if flag.kind == "int" and flag.default is not None:
        text += f" (default {flag.default})"
    if flag.unsupported:
        text += " (not supported by Dockhand)"
    return text


def complete(before: str, word: str, *, images: Images | None = None,
             targets: Targets | None = None, host_images: HostImages | None = None) -> list[Candidate]:
    """Candidates for ``word`` (the text under the cursor up to it), given
    ``before`` (the line before that word). Sorted, each starting with ``word``.
    ``images`` is only called where image names complete; with
    ``host_images``, that is called instead, with the line's host selector."""
    quote = word[:1] if word[:1] in ("'", '"') else ""
    bare = word[len(quote):]
    try:
        found = _candidates(before, bare, images or (lambda: ()), targets, host_images)
    except Exception:  # an unfinished quote, shell syntax: nothing to offer
        return []
    out: dict[str, Candidate] = {}
    for c in found:
        if not c.text.startswith(bare) or c.text in out:
            continue
        if quote:  # keep the user's opening quote, close it on a complete word
            c = Candidate(quote + c.name + (quote + " " if c.text.endswith(" ") else ""), c.description)
        out[c.text] = c
    return sorted(out.values(), key=lambda c: c.text)


def _words(mapping: Mapping[str, str], prefix: str = "", end: str = " ") -> list[Candidate]:
    return [Candidate(prefix + name + end, desc) for name, desc in mapping.items()]


def _target(words: list[str]) -> tuple[list[str], str | None, bool]:
    """``words`` without their host selector, the selector, and whether it is
    clear (two different ones, or ``-H`` without a name, are not)."""
    from handlers.dispatch import split_line_target
    from handlers.errors import UsageError

    try:
        rest, selector = split_line_target(words)
        return rest, selector, True
    except UsageError:
        return [w for w in words if not w.startswith("@")], None, False


def _selects(words: list[str], spelling: str) -> bool:
    """Would dispatch read a host name spelt so (``@``, ``--host=``, ``-H ``)
    after ``words`` as the line's selector? Not among ``docker run``'s
    container words, nor as a second selector."""
    from handlers.dispatch import split_line_target
    from handlers.errors import UsageError

    probe = "dockhand-probe"
    extra = spelling.split(" ")[0:1] + [probe] if spelling.endswith(" ") else [spelling + probe]
    try:
        return split_line_target(words + extra)[1] == probe
    except UsageError:
        return False


def _candidates(before: str, word: str, images: Images, targets: Targets | None,
                host_images: HostImages | None = None) -> list[Candidate]:
    words = tokenize(before)
    plain = True  # no "/" and no "docker": the shell's own words apply
    if words and words[0].startswith("/"):
        words[0] = words[0][1:]
        plain = False
        if not words[0]:
            words = words[1:]
    if words and words[0] == "docker":
        words = words[1:]
        plain = False
    if word.startswith("@"):
        return _words(targets(), "@") if targets is not None and _selects(words, "@") else []
    if targets is not None and word.startswith("--host="):
        return _words(targets(), "--host=") if _selects(words, "--host=") else []
    if targets is not None and words and words[-1] in ("-H", "--host"):
        return _words(targets()) if _selects(words[:-1], words[-1] + " ") else []
    if any(w.startswith("@") or w in ("-H", "--host") or w.startswith(("--host=", "-H")) for w in words):
        words, selector, clear = _target(words)
        if host_images is not None:
            images = (lambda: host_images(selector)) if clear else (lambda: ())
    elif host_images is not None:
        images = lambda: host_images(None)  # noqa: E731 - the default host
    if not words:
        at_start = not before.strip()
        slash = "/" if at_start and word.startswith("/") else ""
        first = top_level()
        if plain and not slash:
            first.update(SHELL_WORDS)
        if at_start and word.removeprefix(slash):  # only once typing has begun: "do" -> "docker "
            first["docker"] = "Optional: 'docker images' is 'images'"
        return _words(first, slash)
    if words[0] == "help":  # help COMMAND [SUBCOMMAND]
        if word.startswith("-"):
            return [Candidate(HELP_FLAG[0] + " ", HELP_FLAG[1])]
        if len(words) == 1:
            return _words(top_level())
        if len(words) == 2 and words[1] in MANAGEMENT:
            return _words(subcommands(words[1]))
        return []
    if words[0] in MANAGEMENT and len(words) == 1:
        if word.startswith("-"):
            return [Candidate(HELP_FLAG[0] + " ", HELP_FLAG[1])]
        return _words(subcommands(words[0]))
    spec, rest = find_command(words)
    if spec is None:
        return []
    return _in_command(spec, rest, word, images, targets is not None)


def _in_command(spec: CommandSpec, rest: list[str], word: str, images: Images,
                hosts: bool = False) -> list[Candidate]:
    by_long = {f.long: f for f in spec.flags}
    by_short = {f.short: f for f in spec.flags if f.short}
    waiting: Flag | None = None  # a flag whose value is the current word
    flags_done = False
    used: set[str] = set()
    nargs = 0
    for w in rest:
        if waiting is not None:
            waiting = None
        elif flags_done:
            nargs += 1
        elif w == "--":
            flags_done = True
        elif w.startswith("--") and len(w) > 2:
            name, eq, _ = w[2:].partition("=")
            flag = by_long.get(name)
            if flag is not None:
                used.add(flag.long)
                if flag.kind != "bool" and not eq:
                    waiting = flag
        elif w.startswith("-") and len(w) > 1:
            for j, ch in enumerate(w[1:]):
                flag = by_short.get(ch)
                if flag is None:
                    break
                used.add(flag.long)
                if flag.kind != "bool":  # takes the rest of the word, or the next one
                    if j == len(w) - 2:
                        waiting = flag
                    break
        else:
            nargs += 1
    if waiting is not None:
        return _values(spec, waiting, word, "", images)
    if not flags_done and word.startswith("--") and "=" in word:
        flag = by_long.get(word[2:].partition("=")[0])
        return _values(spec, flag, word, f"--{flag.long}=", images) if flag else []
    if not flags_done and word.startswith("-"):
        found = [Candidate(HELP_FLAG[0] + " ", HELP_FLAG[1])]
        if hosts:  # many hosts: the selector as the CLI spells it
            found += [Candidate("--host ", HOST_FLAG), Candidate("-H ", HOST_FLAG)]
        for f in spec.flags:
            if f.long in used and f.kind != "list":
                continue
            found.append(Candidate(f"--{f.long} ", flag_description(f)))
            if f.short:
                found.append(Candidate(f"-{f.short} ", flag_description(f)))
        return found
    if spec.max_args is not None and nargs >= spec.max_args:
        return []
    if spec.path in _RUN and nargs > 0:
        return []  # after the image comes the image's own command
    if spec.path in IMAGE_ARGS:
        return image_candidates(images(), with_ids=IMAGE_ARGS[spec.path], word=word)
    return []


def _values(spec: CommandSpec, flag: Flag, word: str, prefix: str, images: Images) -> list[Candidate]:
    """Values of ``flag``; only filters have a known set."""
    allowed = FILTERS.get(spec.path)
    if flag.long != "filter" or allowed is None:
        return []
    value = word[len(prefix):]
    key, eq, _ = value.partition("=")
    if not eq:
        return _words({f"{k}=": v for k, v in allowed.items()}, prefix, end="")
    key_prefix = f"{prefix}{key}="
    if allowed.get(key, "").startswith("true|false"):
        return _words({"true": "", "false": ""}, key_prefix)
    if key in _IMAGE_FILTERS and key in allowed:
        return [Candidate(key_prefix + c.text, c.description)
                for c in image_candidates(images(), with_ids=True, word=value[len(key) + 1:])]
    return []


def _split_tag(ref: str) -> tuple[str, str]:
    """``host:5000/name:tag`` -> (``host:5000/name``, ``tag``)."""
    colon = ref.rfind(":")
    if colon > ref.rfind("/"):
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def image_candidates(images: Iterable[ImageSummary], *, with_ids: bool, word: str = "") -> list[Candidate]:
    """Local repositories (no space after: a ``:tag`` may follow), ``repo:tag``
    references and, with ``with_ids``, short image IDs (or full ``sha256:`` IDs
    once the word starts so)."""
    found: dict[str, Candidate] = {}
    for img in images:
        short = truncate_id(img.id)
        tags = [t for t in img.repo_tags if t and t != "<none>:<none>"]
        size = human_size(img.size)
        for ref in tags:
            repo, tag = _split_tag(ref)
            found.setdefault(repo, Candidate(repo, "repository"))
            if tag:
                found[ref + " "] = Candidate(ref + " ", f"image {short}, {size}")
        if with_ids and img.id:
            what = ", ".join(tags[:2]) + (", …" if len(tags) > 2 else "") if tags else "<none>:<none>"
            ident = img.id if word.startswith("sha256:") else short
            found[ident + " "] = Candidate(ident + " ", f"{what}, {size}")
    return list(found.values())


def listing(candidates: Sequence[Candidate], width: int = 0, limit: int = 200) -> str:
    """The double-Tab list: ``name  -- description`` lines, names aligned."""
    shown = list(candidates)[:limit]
    pad = min(max((len(c.name) for c in shown), default=0), 40)
    lines = [(c.name.ljust(pad) + " -- " + c.description) if c.description else c.name for c in shown]
    if len(candidates) > limit:
        lines.append(f"… and {len(candidates) - limit} more")
    if width:
        lines = [line if len(line) <= width else line[:width - 1] + "…" for line in lines]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the engine's images, without ever making Tab hang


class EngineImages:
    """``engine.list_images()`` for completion, from the shell's
    ``asyncio.Runner``: a result is reused for ``ttl`` seconds; a fetch is
    waited for at most ``deadline`` seconds, after which Tab gets no images
    (the fetch goes on in the background, at most one at a time, and a later
    Tab uses its result). A failing engine gives no images for ``ttl``.

    Called from readline's completer, i.e. inside ``input()`` while no loop
    runs; when a loop is running (a prompt inside a coroutine) it offers
    what it has and fetches nothing."""

    def __init__(self, engine, runner: asyncio.Runner, *, deadline: float = DEADLINE, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic):
        self._engine = engine
        self._runner = runner
        self.deadline = deadline
        self.ttl = ttl
        self._clock = clock
        self._images: list[ImageSummary] = []
        self._at: float | None = None
        self._task: asyncio.Task | None = None

    async def _fetch(self) -> list[ImageSummary] | None:
        try:
            return list(await self._engine.list_images())
        except asyncio.CancelledError:
            raise
        except Exception:  # engine down, timeout: no candidates
            return None

    def _fresh(self) -> list[ImageSummary] | None:
        """The kept list while it is fresh, else None."""
        if self._at is not None and self._clock() - self._at < self.ttl:
            return self._images
        return None

    def _start(self, loop) -> asyncio.Task:
        if self._task is None:
            self._task = loop.create_task(self._fetch())
        return self._task

    def _collect(self) -> list[ImageSummary]:
        """The fetch's result once it is done (kept for ``ttl``); [] while it runs."""
        if self._task is None or not self._task.done():
            return []
        task, self._task = self._task, None
        result = None if task.cancelled() else task.result()
        self._images, self._at = (result or []), self._clock()
        return self._images

    def __call__(self) -> list[ImageSummary]:
        return gather_images([self], self._runner, self.deadline)


def gather_images(sources: Sequence[EngineImages], runner: asyncio.Runner, deadline: float) -> list[ImageSummary]:
    """The images of every source: fresh lists as they are; the others fetched
    at once and waited for together, at most ``deadline`` seconds in all
    (one slow engine costs Tab that, never one deadline per engine)."""
    out: list[ImageSummary] = []
    stale: list[EngineImages] = []
    for source in sources:
        fresh = source._fresh()
        if fresh is not None:
            out += fresh
        else:
            stale.append(source)
    if not stale:
        return out
    loop = runner.get_loop()
    if loop.is_running() or loop.is_closed():
        return out + [img for source in stale if source._at is not None for img in source._images]
    tasks = [source._start(loop) for source in stale]

    async def wait() -> None:
        try:
            await asyncio.wait(tasks, timeout=deadline)  # never cancels them: a late answer is kept
        except asyncio.CancelledError:
            pass

    runner.run(wait())
    for source in stale:
        out += source._collect()
    return out


class FleetImages:
    """Many hosts: the images of the host(s) a selector names, one
    :class:`EngineImages` (cache, background fetch) per host. ``None`` names
    the fleet's default host (the shell has no channel); a group or ``all``
    gives the images of all its hosts, asked at once within one deadline; an
    unknown name gives nothing."""

    def __init__(self, fleet, runner: asyncio.Runner, *, deadline: float = DEADLINE, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic):
        self._fleet = fleet
        self._runner = runner
        self.deadline = deadline
        self.hosts = {name: EngineImages(fleet.services(name).engine, runner, deadline=deadline, ttl=ttl,
                                         clock=clock) for name in fleet.names}

    def __call__(self, selector: str | None = None) -> list[ImageSummary]:
        from handlers.errors import UsageError

        try:
            names = self._fleet.resolve(selector)
        except UsageError:
            return []
        return gather_images([self.hosts[n] for n in names if n in self.hosts], self._runner, self.deadline)


def fleet_targets(fleet) -> dict[str, str]:
    """``@`` words for a fleet: its hosts, groups and ``all``, described."""
    from handlers.fleet import ALL

    out = {name: "default host" if name == fleet.default else "host" for name in fleet.names}
    out.update({group: "group: " + ", ".join(members) for group, members in fleet.groups.items()})
    out[ALL] = "every host"
    return out


# --------------------------------------------------------------------------
# readline


class ShellCompleter:
    """readline's completer and display hook over :func:`complete`."""

    def __init__(self, readline, images: Images | None = None, targets: Targets | None = None, *,
                 prompt: str = PROMPT, out=None, host_images: HostImages | None = None):
        self.readline = readline
        self.images = images
        self.targets = targets
        self.host_images = host_images
        self.prompt = prompt
        self.out = out
        self.matches: list[Candidate] = []
        self._forced_redisplay = _forced_redisplay(readline)

    def complete(self, text: str, state: int) -> str | None:
        """``readline.set_completer``'s callable: the state-th candidate."""
        try:
            if state == 0:
                line = self.readline.get_line_buffer()
                begin, end = self.readline.get_begidx(), self.readline.get_endidx()
                self.matches = complete(line[:begin], line[begin:end], images=self.images, targets=self.targets,
                                        host_images=self.host_images)
            return self.matches[state].text if state < len(self.matches) else None
        except Exception:  # readline would swallow it anyway; never break the prompt
            return None

    def display(self, substitution: str, matches: Sequence[str], longest: int) -> None:
        """``set_completion_display_matches_hook``: the candidates with their
        descriptions, then the prompt and the line as they were."""
        out = self.out or sys.stdout
        try:
            known = {c.text: c for c in self.matches}
            shown = [known.get(m) or Candidate(m) for m in matches]
            try:
                import shutil

                width = shutil.get_terminal_size().columns
            except Exception:
                width = 0
            out.write("\n" + listing(shown, width) + "\n")
            out.flush()
            if self._forced_redisplay is not None:
                self._forced_redisplay()  # readline redraws its own prompt and line, cursor included
            else:
                out.write(self.prompt + self.readline.get_line_buffer())
                out.flush()
                self.readline.redisplay()
        except Exception:
            pass


def _forced_redisplay(readline) -> Callable[[], None] | None:
    """GNU readline's ``rl_forced_update_display`` (what its own listing
    calls), reached through the readline module's library; None elsewhere."""
    if readline is None or "libedit" in (readline.__doc__ or ""):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(readline.__file__).rl_forced_update_display
        fn.restype = ctypes.c_int
        fn.argtypes = []
        return fn
    except Exception:  # statically linked, no symbol: print the prompt ourselves
        return None


def install(readline, services, runner: asyncio.Runner, *, prompt: str = PROMPT,
            targets: Targets | None = None) -> ShellCompleter | None:
    """Turn Tab completion on for the interactive shell (nothing without readline).
    Many hosts (``services.fleet``): ``@`` completes the fleet's hosts and
    groups, and image names come from the host the line names."""
    if readline is None:
        return None
    fleet = getattr(services, "fleet", None)
    if fleet is not None:
        completer = ShellCompleter(readline, None, targets or (lambda: fleet_targets(fleet)), prompt=prompt,
                                   host_images=FleetImages(fleet, runner))
    else:
        completer = ShellCompleter(readline, EngineImages(services.engine, runner), targets, prompt=prompt)
    readline.set_completer(completer.complete)
    readline.set_completer_delims(" \t\n")  # words are whole: "--filter=dangling=", "host:5000/name:tag"
    if "libedit" in (readline.__doc__ or ""):  # macOS: libedit's own binding syntax, no display hook
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
        if hasattr(readline, "set_completion_display_matches_hook"):
            readline.set_completion_display_matches_hook(completer.display)
    return completer

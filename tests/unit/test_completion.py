"""Tab completion's pure logic (bot/completion.py): candidates and their
descriptions come from the command table that ``--help`` prints."""

from __future__ import annotations

import asyncio
import io
import time

import pytest

from bot import completion
from bot.completion import Candidate, EngineImages, ShellCompleter, complete, flag_description, install, listing
from handlers.argv import command_help
from handlers.base import parse_filters
from handlers.commands import MANAGEMENT, table

TABLE = table()
from handlers.images import LIST_FILTERS, PRUNE_FILTERS
from handlers.ports import ImageSummary
from handlers.search import SEARCH_FILTERS

BUSYBOX_ID = "sha256:" + "ab" * 32
DANGLING_ID = "sha256:" + "cd" * 32
IMAGES = [
    ImageSummary(BUSYBOX_ID, ("127.0.0.1:5000/dockhand/busybox:1.36", "127.0.0.1:5000/dockhand/busybox:latest"),
                 size=1_980_000),
    ImageSummary("sha256:" + "ef" * 32, ("ubuntu:16.04",), size=135_000_000),
    ImageSummary(DANGLING_ID, ("<none>:<none>",), size=1000),
]


def texts(before: str, word: str = "", **kw) -> list[str]:
    return [c.text for c in complete(before, word, images=lambda: IMAGES, **kw)]


def described(before: str, word: str = "") -> dict[str, str]:
    return {c.name: c.description for c in complete(before, word, images=lambda: IMAGES)}


def by_path(*path: str):
    return next(spec for spec in TABLE if spec.path == path)


# --------------------------------------------------------------- first word


def test_first_word_is_every_command_and_group_plus_help_and_exit():
    names = {spec.path[0] for spec in TABLE} | set(MANAGEMENT) | {"exit"}
    assert set(described("")) == names
    assert "help" in names and "images" in names and "system" in names


def test_first_word_completes_a_prefix_with_table_descriptions():
    assert texts("", "ima") == ["image ", "images "]
    assert described("", "ima") == {"image": MANAGEMENT["image"], "images": by_path("images").short}
    assert described("", "ima")["images"] == "List images"
    assert texts("", "rm") == ["rmi "]
    assert texts("", "zzz") == []


def test_leading_slash_and_docker_are_optional():
    assert texts("", "/ima") == ["/image ", "/images "]
    assert texts("docker ", "ima") == ["image ", "images "]
    assert texts("/docker ", "ima") == ["image ", "images "]
    assert texts("", "do") == ["docker "]
    # the shell's own words only where the shell answers them
    assert "exit " in texts("", "ex") and texts("docker ", "ex") == [] and texts("", "/ex") == []


def test_help_completes_command_names():
    assert texts("help ", "pu") == ["pull "]
    assert texts("help image ", "l") == ["list ", "ls "]
    assert texts("help images ", "") == []


# --------------------------------------------------------------- subcommands


@pytest.mark.parametrize("group", sorted(MANAGEMENT))
def test_subcommands_of_every_group_come_from_the_table(group):
    expected = {spec.path[1]: spec.short for spec in TABLE if len(spec.path) == 2 and spec.path[0] == group}
    assert expected
    assert described(f"{group} ") == expected
    assert described(f"docker {group} ") == expected


def test_image_subcommands_with_descriptions():
    subs = described("image ")
    assert subs["ls"] == "List images" and subs["prune"] == "Remove unused images"
    assert {"list", "pull", "rm", "remove"} <= set(subs)
    assert texts("image ", "pr") == ["prune "]


def test_listing_shows_name_dash_dash_description_aligned():
    text = listing(complete("image ", ""))
    lines = text.splitlines()
    assert "ls     -- List images" in lines
    assert "prune  -- Remove unused images" in lines
    assert len({line.index(" -- ") for line in lines}) == 1
    assert listing([Candidate("x ")]) == "x"
    many = [Candidate(f"c{i} ", "d") for i in range(250)]
    assert listing(many).splitlines()[-1] == "… and 50 more"


# --------------------------------------------------------------- flags


@pytest.mark.parametrize("spec", TABLE, ids=lambda s: " ".join(s.path))
def test_flags_of_every_command_with_the_help_text(spec):
    line = " ".join(spec.path) + " "
    longs = described(line, "--")
    assert set(longs) == {f"--{f.long}" for f in spec.flags} | {"--help"}
    help_text = command_help(spec)
    for f in spec.flags:
        assert longs[f"--{f.long}"] == flag_description(f)
        assert flag_description(f) in help_text  # what --help prints, word for word
    shorts = {name for name in described(line, "-") if not name.startswith("--")}
    assert shorts == {f"-{f.short}" for f in spec.flags if f.short}


def test_flag_descriptions_say_unsupported_and_default():
    assert described("images ", "--fo") == {"--format": "Format output using a custom template (not supported by Dockhand)"}
    assert described("search ", "--li") == {"--limit": "Max number of search results (default 25)"}
    assert described("images ", "-") ["-a"] == "Show all images (default hides intermediate images)"


def test_flags_already_given_are_not_offered_again_except_lists():
    assert "--all " not in texts("images -a ", "--")
    assert "--quiet " not in texts("images -aq ", "--")
    assert "--filter " in texts("images -f dangling=true ", "--")
    assert texts("images ", "--qu") == ["--quiet "]


def test_after_double_dash_no_flags():
    assert not [t for t in texts("images -- ", "-") if t.startswith("-")]


# --------------------------------------------------------------- filter values


@pytest.mark.parametrize("line,allowed", [
    ("images -f ", LIST_FILTERS), ("images --filter ", LIST_FILTERS), ("image ls -af ", LIST_FILTERS),
    ("image list --filter ", LIST_FILTERS), ("image prune --filter ", PRUNE_FILTERS),
    ("search -f ", SEARCH_FILTERS), ("docker search --filter ", SEARCH_FILTERS),
])
def test_filter_names_are_the_ones_the_handler_accepts(line, allowed):
    got = described(line)
    assert got == {f"{k}=": v for k, v in allowed.items()}
    for name in got:  # every candidate passes the handler's own check
        parse_filters([name + "x"], allowed, "docker x")


def test_filter_names_as_the_brief_lists_them():
    assert {"dangling=", "reference=", "before=", "since=", "label="} <= set(described("images -f "))
    assert {"until=", "label="} <= set(described("image prune --filter "))
    assert {"is-official=", "stars="} <= set(described("search -f "))
    # `image prune -f` is --force: no filter value follows it
    assert texts("image prune -f ", "") == []


def test_filter_in_the_same_word_and_values():
    assert texts("images ", "--filter=da") == ["--filter=dangling="]
    assert texts("images -f ", "dangling=") == ["dangling=false ", "dangling=true "]
    assert texts("search --filter ", "is-official=t") == ["is-official=true "]
    assert texts("images --filter ", "before=127") == ["before=127.0.0.1:5000/dockhand/busybox",
                                                      "before=127.0.0.1:5000/dockhand/busybox:1.36 ",
                                                      "before=127.0.0.1:5000/dockhand/busybox:latest "]
    assert texts("images -f ", "label=") == []
    assert texts("search --limit ", "") == []
    assert texts("version --format ", "") == []


def test_an_opening_quote_is_kept_and_closed():
    assert texts("search --filter ", '"is-off') == ['"is-official=']
    assert texts("search --filter ", "'is-official=t") == ["'is-official=true' "]


# --------------------------------------------------------------- images from the engine


def test_rmi_completes_repositories_references_and_ids():
    for line in ("rmi ", "image rm ", "image remove ", "docker rmi -f ", "rmi ubuntu:16.04 "):
        got = described(line)
        assert got["127.0.0.1:5000/dockhand/busybox"] == "repository"
        assert got["127.0.0.1:5000/dockhand/busybox:1.36"].startswith("image abababababab, 1.98MB")
        assert got["ubuntu:16.04"] == "image efefefefefef, 135MB"
        assert "abababababab" in got and got["cdcdcdcdcdcd"].startswith("<none>:<none>")
    assert texts("rmi ", "ub") == ["ubuntu", "ubuntu:16.04 "]
    assert texts("rmi ", "ubuntu:") == ["ubuntu:16.04 "]
    assert texts("rmi ", "abab") == ["abababababab "]
    assert texts("rmi ", "sha256:cd") == [DANGLING_ID + " "]


def test_images_and_pull_complete_names_without_ids():
    for line in ("images ", "image ls -a ", "image list ", "pull ", "image pull -q "):
        got = described(line)
        assert "ubuntu:16.04" in got and "ubuntu" in got
        assert not any(name.startswith(("abab", "cdcd", "efef")) for name in got)
    assert texts("images ubuntu ", "") == []  # at most one REPOSITORY
    assert texts("pull ubuntu ", "") == []


def test_run_completes_its_image_then_leaves_the_command_to_the_image():
    got = described("run ")
    assert "ubuntu:16.04" in got and "abababababab" in got
    assert texts("run --rm ", "ub") == ["ubuntu", "ubuntu:16.04 "]
    assert texts("run ubuntu:16.04 ", "") == []


def test_images_are_asked_only_where_they_complete():
    asked = []

    def images():
        asked.append(1)
        return IMAGES

    for before, word in (("", "im"), ("image ", ""), ("images ", "--"), ("images -f ", ""), ("search ", "u"),
                         ("info ", ""), ("image prune ", "")):
        complete(before, word, images=images)
    assert asked == []
    complete("rmi ", "", images=images)
    assert asked == [1]


def test_unknown_commands_and_shell_syntax_complete_nothing():
    assert texts("ps ", "") == [] and texts("images; ", "") == [] and texts('images "open ', "") == []
    assert texts("bogus ", "--") == []


def test_targets_extension_point():
    targets = lambda: {"prod": "Production web"}  # noqa: E731
    assert [(c.text, c.description) for c in complete("", "@p", targets=targets)] == [("@prod ", "Production web")]
    assert texts("", "@") == []  # no targets yet
    assert texts("@prod ", "ima", targets=targets) == ["image ", "images "]  # a selector is not the command


HOSTS = {"alpha": "default host", "bravo": "host", "web": "group: alpha, bravo", "all": "every host"}
PER_HOST = {"alpha": [IMAGES[0]], "bravo": [IMAGES[1]]}


def on_hosts(before: str, word: str = "") -> tuple[list[str], list]:
    """Candidates with many hosts, and the selectors host_images was asked for."""
    asked = []

    def host_images(selector):
        asked.append(selector)
        return PER_HOST.get(selector or "alpha", [])

    found = [c.text for c in complete(before, word, targets=lambda: HOSTS, host_images=host_images)]
    return found, asked


def test_hosts_complete_after_at_after_dash_h_and_in_host_equals():
    assert on_hosts("images ", "@b")[0] == ["@bravo "]
    assert on_hosts("images -H ", "")[0] == ["all ", "alpha ", "bravo ", "web "]
    assert on_hosts("--host ", "w")[0] == ["web "]
    assert on_hosts("images ", "--host=a")[0] == ["--host=all ", "--host=alpha "]
    assert "-H " in on_hosts("rmi ", "-")[0] and "--host " in on_hosts("rmi ", "--")[0]
    assert "-H " not in texts("rmi ", "-")  # one engine: no host flag
    assert not {"alpha ", "all "} & set(texts("images -H ", ""))  # nor host names


@pytest.mark.parametrize("before,selector", [
    ("rmi @bravo ", "bravo"), ("rmi -H bravo ", "bravo"), ("-H bravo rmi ", "bravo"), ("docker -H bravo rmi ", "bravo"),
    ("/rmi --host=bravo ", "bravo"), ("@bravo image rm ", "bravo"), ("images -Hbravo ", "bravo"),
    ("rmi ", None), ("pull @web ", "web"), ("run @bravo ", "bravo"),
])
def test_image_names_come_from_the_host_the_line_names(before, selector):
    found, asked = on_hosts(before, "")
    assert asked == [selector]
    expected = "ubuntu" if selector == "bravo" else None
    if expected:
        assert expected in found and not any("busybox" in f for f in found)


def test_no_host_names_where_dispatch_would_not_read_them():
    assert on_hosts("run busybox echo ", "@")[0] == []  # the container's own words
    assert on_hosts("run busybox echo -H ", "")[0] == []
    assert on_hosts("run -H ", "b")[0] == ["bravo "] and on_hosts("run ", "@b")[0] == ["@bravo "]
    assert on_hosts("images @alpha ", "@")[0] == []  # a second selector would be refused
    assert on_hosts("docker ", "--host=w")[0] == ["--host=web "]


def test_no_images_where_the_host_is_unclear_or_the_run_command_begins():
    found, asked = on_hosts("rmi @alpha @bravo ", "")  # two hosts: the command would be refused
    assert found == [] and asked == []
    found, asked = on_hosts("rmi -f ", "")
    assert asked == [None] and "127.0.0.1:5000/dockhand/busybox" in found
    found, asked = on_hosts("run busybox @bravo ", "")  # the container's words: nothing to complete
    assert found == [] and asked == []


def test_every_filter_command_is_mapped():
    """A new command with a --filter flag must say which filters it accepts."""
    for spec in TABLE:
        if any(f.long == "filter" for f in spec.flags):
            assert spec.path in completion.FILTERS, spec.path


# --------------------------------------------------------------- the engine, with a deadline


class SlowEngine:
    def __init__(self, delay: float, images=IMAGES, fail: Exception | None = None):
        self.delay = delay
        self.images = images
        self.fail = fail
        self.calls = 0

    async def list_images(self, **kw):
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return list(self.images)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_engine_images_gives_up_at_the_deadline_then_uses_the_result():
    engine = SlowEngine(delay=0.6)
    clock = Clock()
    with asyncio.Runner() as runner:
        source = EngineImages(engine, runner, deadline=0.2, ttl=5, clock=clock)
        t0 = time.monotonic()
        assert source() == []
        assert time.monotonic() - t0 < 0.5
        assert source() == []  # still in flight: waited once more, not asked again
        assert engine.calls == 1
        time.sleep(0.3)
        assert len(source()) == 3  # the background fetch finished meanwhile
        assert engine.calls == 1
        clock.now += 4
        assert len(source()) == 3 and engine.calls == 1  # cached
        clock.now += 2
        engine.delay = 0
        assert len(source()) == 3 and engine.calls == 2  # stale: asked again


def test_engine_images_failure_gives_nothing_and_is_not_retried_at_once():
    engine = SlowEngine(delay=0, fail=RuntimeError("engine down"))
    clock = Clock()
    with asyncio.Runner() as runner:
        source = EngineImages(engine, runner, deadline=0.2, ttl=5, clock=clock)
        assert source() == [] and source() == []
        assert engine.calls == 1
        clock.now += 6
        assert source() == [] and engine.calls == 2


def test_engine_images_inside_a_running_loop_does_not_fetch():
    engine = SlowEngine(delay=0)
    with asyncio.Runner() as runner:
        source = EngineImages(engine, runner)

        async def inside():
            return source()

        assert runner.run(inside()) == []
        assert engine.calls == 0


class FakeFleet:
    def __init__(self, engines, default="alpha", groups=None):
        from handlers.context import Services
        from handlers.fleet import Fleet

        self.fleet = Fleet({n: Services(engine=e, host_label=n) for n, e in engines.items()}, default,
                           groups or {})
        for services in self.fleet.targets.values():
            services.fleet = self.fleet


def test_fleet_images_asks_a_groups_hosts_at_once_within_one_deadline():
    from bot.completion import FleetImages

    fast, slow = SlowEngine(delay=0, images=[IMAGES[0]]), SlowEngine(delay=5, images=[IMAGES[1]])
    fleet = FakeFleet({"alpha": fast, "bravo": slow, "charlie": SlowEngine(delay=5)},
                      groups={"web": ("alpha", "bravo", "charlie")}).fleet
    with asyncio.Runner() as runner:
        source = FleetImages(fleet, runner, deadline=0.3, ttl=5)
        t0 = time.monotonic()
        assert source("web") == [IMAGES[0]]  # the frozen hosts give nothing, once
        assert time.monotonic() - t0 < 0.6  # one deadline, not one per host
        assert source(None) == [IMAGES[0]] and fast.calls == 1  # the default host, cached
        t0 = time.monotonic()
        assert source("bravo") == [] and time.monotonic() - t0 < 0.6
        assert slow.calls == 1  # still in flight: not asked again
        assert source("zulu") == []


def test_install_with_a_fleet_completes_its_hosts():
    fleet = FakeFleet({"alpha": SlowEngine(0), "bravo": SlowEngine(0)}, groups={"web": ("alpha", "bravo")}).fleet
    rl = FakeReadline()
    with asyncio.Runner() as runner:
        completer = install(rl, fleet.services("alpha"), runner)
        rl.line = "images @"
        assert [completer.complete("@", i) for i in range(5)] == ["@all ", "@alpha ", "@bravo ", "@web ", None]
        assert fleet_targets_of(completer)["web"] == "group: alpha, bravo"


def fleet_targets_of(completer):
    return completer.targets()


# --------------------------------------------------------------- readline glue


class FakeReadline:
    __doc__ = "GNU readline (fake)"

    def __init__(self, line: str = ""):
        self.line = line
        self.bound: list[str] = []
        self.completer = None
        self.delims = None
        self.hook = None
        self.redisplayed = 0

    def get_line_buffer(self):
        return self.line

    def get_begidx(self):
        return len(self.line) - len(self.line.split(" ")[-1])

    def get_endidx(self):
        return len(self.line)

    def redisplay(self):
        self.redisplayed += 1

    def set_completer(self, fn):
        self.completer = fn

    def set_completer_delims(self, delims):
        self.delims = delims

    def parse_and_bind(self, text):
        self.bound.append(text)

    def set_completion_display_matches_hook(self, fn):
        self.hook = fn


def test_completer_returns_candidates_by_state_and_lists_them_with_descriptions():
    rl = FakeReadline("image ")
    out = io.StringIO()
    shell = ShellCompleter(rl, images=lambda: IMAGES, out=out)
    got = []
    state = 0
    while (text := shell.complete("", state)) is not None:
        got.append(text)
        state += 1
    assert got == ["list ", "ls ", "prune ", "pull ", "remove ", "rm "]
    shell.display("", got, 7)
    printed = out.getvalue()
    assert "\nls     -- List images\n" in printed
    assert printed.endswith("dockhand> image ")  # prompt and line again (no GNU library to redraw them)
    assert rl.redisplayed == 1


def test_completer_never_raises():
    rl = FakeReadline("rmi ")

    def broken():
        raise RuntimeError("boom")

    shell = ShellCompleter(rl, images=broken)
    assert shell.complete("", 0) is None


def test_install_binds_tab_and_the_display_hook():
    rl = FakeReadline()

    class Services:
        engine = SlowEngine(0)

    with asyncio.Runner() as runner:
        shell = install(rl, Services(), runner)
    assert rl.completer == shell.complete and rl.hook == shell.display
    assert rl.delims == " \t\n" and rl.bound == ["tab: complete"]
    libedit = FakeReadline()
    libedit.__doc__ = "Importing this module enables command line editing using libedit readline."
    with asyncio.Runner() as runner:
        install(libedit, Services(), runner)
    assert libedit.bound == ["bind ^I rl_complete"] and libedit.hook is None
    assert install(None, Services(), None) is None

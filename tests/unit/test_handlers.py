"""Handlers through dispatch() with an in-memory engine: parsing, formatting,
error replies. The same commands run against the real engine in
tests/integration."""

import time

import pytest

from bot.render.text import render
from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.errors import EngineUnreachable
from handlers.images import image_rows
from handlers.replies import ErrorPart, Status
from tests.unit.fake_engine import FakeEngine, image, result

NOW = time.time()
ME = Actor("u1", "me", via="shell")  # the shell's user is an admin


def services(**kw):
    return Services(engine=FakeEngine(**kw), host_label="test-host")


def test_image_rows_follow_the_cli_formatter():
    imgs = [
        image("a", ["hello-world:latest"], ["hello-world@sha256:" + "d" * 64], created=int(NOW - 150 * 86400), size=1840),
        image("b", ["docker.io/library/ubuntu:16.04", "ubuntu:latest", "127.0.0.1:5000/x/y:1"], size=69_900_000),
        image("c", [], []),  # dangling
        image("e", [], ["busybox@sha256:" + "e" * 64]),  # digest only
    ]
    rows = image_rows(imgs, digests=False, no_trunc=False, now=NOW)
    assert rows[0] == ("hello-world", "latest", "aaaaaaaaaaaa", "5 months ago", "1.84kB")
    assert ("ubuntu", "16.04", "bbbbbbbbbbbb", "N/A", "69.9MB") in rows
    assert ("ubuntu", "latest", "bbbbbbbbbbbb", "N/A", "69.9MB") in rows
    assert ("127.0.0.1:5000/x/y", "1", "bbbbbbbbbbbb", "N/A", "69.9MB") in rows
    assert ("<none>", "<none>", "cccccccccccc", "N/A", "0B") in rows
    assert ("busybox", "<none>", "eeeeeeeeeeee", "N/A", "0B") in rows
    with_digests = image_rows(imgs, digests=True, no_trunc=True, now=NOW)
    assert with_digests[0][:4] == ("hello-world", "latest", "sha256:" + "d" * 64, "sha256:" + "a" * 64)
    assert ("busybox", "<none>", "sha256:" + "e" * 64, "sha256:" + "e" * 64, "N/A", "0B") in with_digests


async def test_images_table_and_quiet_ids_per_row():
    s = services(images=[image("a", ["x:1", "x:2"], size=1000), image("b", ["y:latest"])])
    reply = await dispatch("/images", ME, s)
    assert reply.ok and reply.host == "test-host" and reply.engine_version == "20.10.24"
    lines = render(reply).splitlines()
    # docker/cli's tabwriter: min width 10, padding 3, last column unpadded
    assert lines[0] == "REPOSITORY   TAG       IMAGE ID       CREATED   SIZE"
    assert lines[1] == "x            1         aaaaaaaaaaaa   N/A       1kB"
    quiet = await dispatch("docker images -q", ME, s)
    assert render(quiet).splitlines() == ["aaaaaaaaaaaa", "aaaaaaaaaaaa", "bbbbbbbbbbbb"]


async def test_images_passes_filters_and_reference_to_engine():
    s = services()
    await dispatch("docker image ls -a -f dangling=true --filter label=a=b 'ubu*'", ME, s)
    assert s.engine.calls[0] == ("list_images", True, {"dangling": ["true"], "label": ["a=b"], "reference": ["ubu*"]})


@pytest.mark.parametrize("line,needle", [
    ("images -f nope=1", "invalid filter 'nope'"),
    ("images -f dangling", "bad format of filter"),
    ("images -f dangling=maybe", "invalid filter 'dangling=maybe'"),
    ("images 'a;b'", "invalid reference format"),
    ("images -f before=UPPER", "repository name must be lowercase"),
])
async def test_images_bad_input_never_reaches_engine(line, needle):
    s = services()
    reply = await dispatch(line, ME, s)
    assert reply.status is Status.USAGE
    assert needle in reply.parts[0].message
    assert s.engine.calls == []


async def test_search_sorts_by_stars_truncates_and_uses_index():
    long = "Ubuntu is a Debian-based Linux operating system based on free software."
    s = services(results=[result("pivotaldata/ubuntu-gpdb-dev", 0, description="Ubuntu images\nfor GPDB"),
                          result("ubuntu", 9616, True, long)])
    s.search_index = "127.0.0.1:5999"
    reply = await dispatch('docker search --filter "is-official=true" --limit 10 ubuntu', ME, s)
    table = reply.parts[0]
    assert table.columns == ("NAME", "DESCRIPTION", "STARS", "OFFICIAL")
    assert table.rows[0] == ("ubuntu", "Ubuntu is a Debian-based Linux operating sys…", "9616", "[OK]")
    assert table.rows[1] == ("pivotaldata/ubuntu-gpdb-dev", "Ubuntu images for GPDB", "0", "")
    assert s.engine.calls[0] == ("search", "127.0.0.1:5999/ubuntu", 10, {"is-official": ["true"]})
    full = await dispatch("search --no-trunc ubuntu", ME, s)
    assert full.parts[0].rows[0][1] == long


@pytest.mark.parametrize("line", ["search --limit 101 x", "search -f stars=many x", "search 'a b;c'", "search -f official=1 x"])
async def test_search_bad_input(line):
    s = services()
    reply = await dispatch(line, ME, s)
    assert reply.status is Status.USAGE and s.engine.calls == []


async def test_info_version_and_short_version():
    s = services(images=[image("a", ["x:1"])])
    info = render(await dispatch("docker info", ME, s))
    for needle in (" Containers: 3", "  Running: 1", "  Paused: 0", "  Stopped: 2", " Images: 1", " CPUs: 2",
                   " Total Memory: 1GiB", " Server Version: 20.10.24"):
        assert needle in info
    assert render(await dispatch("docker --version", ME, s)) == "Docker version 20.10.24, build 5d6db84"
    assert render(await dispatch("-v", ME, s)) == "Docker version 20.10.24, build 5d6db84"
    assert "Git commit:       5d6db84" in render(await dispatch("version", ME, s))


async def test_help_forms():
    s = services()
    top = await dispatch("docker help", ME, s)
    assert "Run 'docker COMMAND --help'" in render(top) and top.actions
    for line in ("help images", "images --help", "docker image ls -h", "help image ls"):
        assert "Usage:  docker" in render(await dispatch(line, ME, s)), line
    assert "Usage:  docker image COMMAND" in render(await dispatch("help image", ME, s))


async def test_unknown_commands_get_cli_error_and_hint():
    s = services()
    reply = await dispatch("docker imagse", ME, s)
    assert reply.status is Status.USAGE
    assert reply.parts[0].message == "docker: unknown command: docker imagse"
    assert "`docker images`" in reply.parts[0].hint
    reply = await dispatch("docker image lss", ME, s)
    assert "Did you mean `docker image ls`?" in reply.parts[0].hint


async def test_pull_defaults_to_latest_and_reports_cli_lines():
    s = services()
    seen = []

    async def emit(r):
        seen.append(r)

    reply = await dispatch("pull 127.0.0.1:5000/dockhand/big", ME, s, emit=emit)
    assert s.engine.calls[0] == ("pull", "127.0.0.1:5000/dockhand/big", "latest")
    text = render(reply)
    assert text.splitlines()[0] == "Using default tag: latest"
    assert "aaaaaaaaaaaa: Pull complete" in text
    assert text.splitlines()[-1] == "127.0.0.1:5000/dockhand/big:latest"
    assert seen, "progress is emitted to the front end"
    quiet = await dispatch("pull -q ubuntu:16.04", ME, s)
    assert render(quiet) == "docker.io/library/ubuntu:16.04"


async def test_pull_refuses_bad_references():
    s = services()
    reply = await dispatch("pull Ubuntu", ME, s)
    assert reply.status is Status.USAGE and 'repository name must be lowercase' in reply.parts[0].message
    assert s.engine.calls == []


async def test_engine_errors_become_replies_not_tracebacks():
    s = services(fail=EngineUnreachable("unix:///nowhere.sock"))
    reply = await dispatch("images", ME, s)
    assert reply.status is Status.FAILED
    assert "unix:///nowhere.sock" in reply.parts[0].message and "DOCKER_HOST" in reply.parts[0].hint


async def test_internal_bug_is_reported_with_a_reference(caplog):
    s = services(fail=ZeroDivisionError("boom"))
    reply = await dispatch("images", ME, s)
    assert isinstance(reply.parts[0], ErrorPart) and "logged as" in reply.parts[0].message
    assert "boom" not in reply.parts[0].message and "ZeroDivisionError" in caplog.text


def test_preflight_checks_without_running():
    from handlers.dispatch import preflight

    assert preflight("pull ubuntu") is None
    assert preflight("docker --version") is None and preflight("image") is None
    for line, needle in (("pull Ubuntu", "lowercase"), ("pull", "requires exactly 1"), ("bogus", "unknown command"),
                         ("images -z", "unknown shorthand")):
        reply = preflight(line)
        assert reply.status is Status.USAGE and needle in reply.parts[0].message


class StreamErrorEngine(FakeEngine):
    """Like the real adapter: an error inside a 200 pull stream is yielded as
    an event, then raised as a typed error on the next step."""

    def __init__(self, raise_after=True):
        super().__init__()
        self.raise_after = raise_after

    async def pull(self, repository, tag, *, owner="", platform=""):
        from handlers.errors import EngineError
        from handlers.ports import PullEvent

        yield PullEvent(status="Downloading", id="aaaaaaaaaaaa", current=1, total=10)
        yield PullEvent(error="filesystem layer verification failed for digest sha256:abc")
        if self.raise_after:
            raise EngineError("filesystem layer verification failed for digest sha256:abc")


@pytest.mark.parametrize("raise_after", [True, False])
async def test_pull_error_inside_the_stream_fails_the_command(raise_after):
    s = Services(engine=StreamErrorEngine(raise_after))
    reply = await dispatch("pull 127.0.0.1:5000/x", ME, s)
    assert reply.status is Status.FAILED
    assert reply.parts[0].text == "Using default tag: latest"  # what the CLI prints first, whatever follows
    assert "layer verification failed" in reply.parts[1].message


async def test_search_offers_a_pull_per_valid_result_on_the_index_registry():
    s = Services(engine=FakeEngine(results=[result("ubuntu", 10), result("Bad Name <!channel>", 5),
                                            result("me/tool", 1)]), search_index="127.0.0.1:9999")
    reply = await dispatch("search ubuntu", ME, s)
    assert [(a.label, a.command, a.group) for a in reply.actions] == [
        ("ubuntu", "docker pull 127.0.0.1:9999/ubuntu", "Pull an image…"),
        ("me/tool", "docker pull 127.0.0.1:9999/me/tool", "Pull an image…")]
    hub = await dispatch("search ubuntu", ME, Services(engine=FakeEngine(results=[result("ubuntu")])))
    assert [a.command for a in hub.actions] == ["docker pull ubuntu"]


async def test_terminal_text_never_carries_control_characters_from_outside():
    hostile = "\x1b[31mred\x1b[0m \x07bell \u202eevil\u202c \x9bcsi"
    s = Services(engine=FakeEngine(results=[result("x/y", 1, description=hostile)]))
    text = render(await dispatch("search --no-trunc x", ME, s))
    assert "red" in text and "evil" in text
    assert not any(ch in text for ch in "\x1b\x07\u202e\u202c\x9b")


async def test_a_stars_filter_takes_ascii_digits_only():
    s = Services(engine=FakeEngine())
    reply = await dispatch("search --filter stars=² x", ME, s)
    assert reply.status is Status.USAGE and s.engine.calls == []


@pytest.mark.parametrize("ref,ok", [("127.0.0.1:65535/x", True), ("127.0.0.1:70000/x", False),
                                    ("127.0.0.1:0/x", False), ("[::1]:5000/x", True), ("[::1]:99999/x", False),
                                    ("localhost:5000/x:1", True)])
def test_pull_refuses_a_registry_port_the_engine_cannot_dial_before_anything_runs(ref, ok):
    from handlers.dispatch import preflight

    reply = preflight(f"pull {ref}")
    assert (reply is None) is ok
    if not ok:
        assert reply.status is Status.USAGE and "a port is 1 to 65535" in reply.parts[0].message


@pytest.mark.parametrize("engine_says,refused", [
    (None, False),  # the engine parses it (no such image): never refused
    ("InvalidArgument:no such image: UPPER/x:latest: invalid reference format: repository name must be lowercase",
     True),
    ("InvalidArgument:some other 400", False),  # not a parse refusal: the pull decides
    ("EngineUnreachable:engine away", False),
])
async def test_pull_asks_the_engine_about_an_uppercase_registry_host_only(engine_says, refused):
    from handlers import errors

    s = services()
    if engine_says:
        kind, text = engine_says.split(":", 1)
        s.engine.fail = getattr(errors, kind)(f"Error response from daemon: {text}")
    reply = await dispatch("pull UPPER/x", ME, s)
    assert ("inspect_image", "UPPER/x:latest") in s.engine.calls
    pulled = any(c[0] == "pull" for c in s.engine.calls)
    if refused:
        assert reply.status is Status.USAGE and not pulled
        assert reply.parts[0].message == ("Error response from daemon: invalid reference format: "
                                          "repository name must be lowercase")
    else:
        assert pulled  # not refused up front: the pull itself ran (and answers for itself)
        errors_shown = [p.message for p in reply.parts if isinstance(p, ErrorPart)]
        assert not any("invalid reference format" in m for m in errors_shown)
    # a lowercase reference is never a question for the engine
    s2 = services()
    await dispatch("pull upper/x", ME, s2)
    assert s2.engine.calls[0][0] == "pull"

"""`docker run IMAGE [COMMAND]` as a smoke test: parsing, refusals, roles,
the reply, the audit record, with an in-memory engine. The same command runs
on the private engine in tests/integration/test_run_smoke.py."""

from __future__ import annotations

import dataclasses

import pytest

from bot.audit_log import AuditLog
from bot.config import ConfigError, load_settings
from bot.engine_run import _output_tail
from bot.render.text import render
from bot.store import SqliteStore
from handlers import run
from handlers.dispatch import dispatch
from handlers.access import Policy, Role, authorise, role_needed
from handlers.argv import READ, WRITE, Parsed
from handlers.commands import NOT_HERE
from handlers.context import Actor, Services
from handlers.dispatch import effect_of, parse_command, preflight
from handlers.errors import UsageError
from handlers.ports import RunLimits, RunResult
from handlers.replies import ErrorPart, Notice, Preformatted, Progress, Status
from tests.unit.fake_engine import FakeEngine, image

SHELL = Actor("root", "root", via="shell")
ADMIN = Actor("UADMIN", "ada", via="slack", channel="C1")
OPERATOR = Actor("UOPER", "otto", via="slack", channel="C1")
VIEWER = Actor("UVIEW", "vic", via="slack", channel="C1")
POLICY = Policy(admins=frozenset({"UADMIN"}), operators=frozenset({"UOPER"}))
HELLO = image("a", ["127.0.0.1:5000/dockhand/hello-world:latest"])


def services(images=(HELLO,), **kw) -> Services:
    return Services(engine=FakeEngine(images=images), host_label="test-host", policy=POLICY, **kw)


def runs(s: Services) -> list:
    return [c for c in s.engine.calls if c[0] == "run_container"]


# --------------------------------------------------------------- parsing


def test_the_command_ends_flags_at_the_image_as_the_cli_does():
    parsed = parse_command("docker run --rm -q busybox sh -c 'echo hi; ls -la' --rm -v /:/x").parsed
    assert parsed.args == ["busybox", "sh", "-c", "echo hi; ls -la", "--rm", "-v", "/:/x"]
    assert parsed.opts["rm"] and parsed.opts["quiet"] and parsed.opts["pull"] == "missing"
    assert parsed.opts["entrypoint"] is None
    # --help after the image belongs to the container's command
    assert parse_command("docker run busybox --help").parsed.help is False
    assert parse_command("docker run --help").parsed.help is True
    assert parse_command("run --entrypoint= busybox").parsed.opts["entrypoint"] == ""
    assert parse_command("/run -- busybox -x").parsed.args == ["busybox", "-x"]


def test_interspersed_flags_still_work_for_every_other_command():
    assert parse_command("images busybox -a").parsed.opts["all"] is True


@pytest.mark.parametrize("line, flag, words", [
    ("docker run -v /:/host busybox", "-v", "nothing of the host"),
    ("docker run --volume=/:/host busybox", "--volume", "nothing of the host"),
    ("docker run --mount type=bind,src=/,dst=/h busybox", "--mount", "nothing of the host"),
    ("docker run -p 80:80 nginx", "-p", "no network"),
    ("docker run -P nginx", "-P", "no network"),
    ("docker run --network host busybox", "--network", "no network"),
    ("docker run --network=none busybox", "--network", "no network"),
    ("docker run --privileged busybox", "--privileged", "privileges"),
    ("docker run --cap-add SYS_ADMIN busybox", "--cap-add", "capabilities"),
    ("docker run -d nginx", "-d", "foreground"),
    ("docker run -it busybox sh", "-i", "no terminal"),
    ("docker run -t busybox", "-t", "no terminal"),
    ("docker run --name x busybox", "--name", "dockhand-run"),
    ("docker run --restart always busybox", "--restart", "foreground"),
    ("docker run -e TOKEN=s3cret busybox", "-e", "audit log"),
    ("docker run --env-file .env busybox", "--env-file", "audit log"),
    ("docker run -m 4g busybox", "-m", "DOCKHAND_RUN_MEMORY"),
    ("docker run --cpus 8 busybox", "--cpus", "DOCKHAND_RUN_CPUS"),
    ("docker run --pids-limit -1 busybox", "--pids-limit", "DOCKHAND_RUN_PIDS"),
    ("docker run -u 0 busybox", "-u", "as it ships"),
    ("docker run --platform linux/arm64 busybox", "--platform", "own platform"),
    ("docker run --pid host busybox", "--pid", "shared namespaces"),
    ("docker run --device /dev/kvm busybox", "--device", "devices"),
    ("docker run --security-opt seccomp=unconfined busybox", "--security-opt", "nothing of the host"),
])
async def test_flags_that_break_the_sandbox_are_refused_with_why(line, flag, words):
    reply = await dispatch(line, SHELL, services())
    assert reply.status is Status.USAGE
    error = reply.parts[0]
    assert error.message == f"flag {flag} is not supported by Dockhand"
    assert words in error.hint
    assert preflight(line) is not None  # refused before anything is announced


def test_every_refused_flag_says_why_and_only_smoke_test_flags_are_taken():
    taken = {f.long for f in run.FLAGS if not f.unsupported}
    assert taken == {"rm", "read-only", "entrypoint", "pull", "quiet"}
    for flag in run.FLAGS:
        assert flag.unsupported == "" or len(flag.unsupported) > 30, flag.long
    longs = [f.long for f in run.FLAGS]
    assert len(longs) == len(set(longs))
    shorts = [f.short for f in run.FLAGS if f.short]
    assert len(shorts) == len(set(shorts)) and "h" not in shorts  # -h stays --help


@pytest.mark.parametrize("line, needle", [
    ("docker run", '"docker run" requires at least 1 argument'),
    ("docker run --pull sometimes busybox", "invalid pull option: 'sometimes'"),
    ("docker run Hello-World", "repository name must be lowercase"),
    ("docker run --unknown busybox", "unknown flag: --unknown"),
    ("docker run busybox sh -c 'echo $(id)'", "shell syntax"),
])
async def test_bad_command_lines_never_reach_the_engine(line, needle):
    s = services()
    reply = await dispatch(line, SHELL, s)
    assert reply.status is Status.USAGE and needle in reply.parts[0].message
    assert s.engine.calls == []


def test_run_is_no_longer_in_the_not_here_list_and_is_in_help():
    assert "run" not in NOT_HERE
    assert effect_of("docker run hello-world") == WRITE
    assert effect_of("docker run --help") == READ


async def test_help_lists_run_and_its_usage():
    s = services()
    assert "run " in render(await dispatch("docker help", SHELL, s))
    usage = render(await dispatch("docker run --help", VIEWER, s))
    assert "Usage:  docker run [OPTIONS] IMAGE [COMMAND] [ARG...]" in usage and "--entrypoint" in usage


# --------------------------------------------------------------- roles


def test_run_needs_the_admin_role_though_it_is_a_write():
    from handlers.dispatch import parse_command

    run, helped = parse_command("docker run x"), parse_command("docker run --help")
    assert (run.effect, run.role) == (WRITE, "admin") and (helped.effect, helped.role) == (READ, "")
    assert role_needed(run.effect, run.role) is Role.ADMIN
    assert role_needed(helped.effect, helped.role) is Role.VIEWER  # its --help
    assert role_needed(WRITE) is Role.OPERATOR  # a pull
    assert authorise(POLICY, OPERATOR, WRITE, "docker run", "admin").message == \
        "`docker run` needs the admin role; you have operator."
    assert "DOCKHAND_ADMINS" in authorise(POLICY, VIEWER, WRITE, "docker run", "admin").hint
    assert authorise(POLICY, ADMIN, WRITE, "docker run", "admin") is None
    assert authorise(POLICY, SHELL, WRITE, "docker run", "admin") is None


@pytest.mark.parametrize("actor", [VIEWER, OPERATOR])
async def test_viewers_and_operators_are_refused_and_nothing_runs(actor):
    s = services()
    reply = await dispatch("docker run hello-world", actor, s)
    assert reply.status is Status.FAILED
    assert "needs the admin role" in reply.parts[0].message
    assert runs(s) == [] and not any(c[0] == "pull" for c in s.engine.calls)


async def test_a_viewer_may_read_its_help():
    reply = await dispatch("docker run --help", VIEWER, services())
    assert reply.ok


# --------------------------------------------------------------- running


async def test_hello_world_runs_with_the_hosts_limits_and_reports_exit_code_and_output():
    s = services()
    s.engine.run_limits = RunLimits(memory=64 * 1024 * 1024, cpus=0.5, pids=32, timeout=7)
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, s)
    assert reply.ok, render(reply)
    (call,) = runs(s)
    assert call[1] == HELLO.id and call[2] == () and call[3] is None and call[4] == s.engine.run_limits
    assert not any(c[0] == "pull" for c in s.engine.calls)  # present: not pulled
    text = render(reply)
    assert "Hello from Dockhand!" in text and "Exit code 0." in text
    assert "no network, read-only root filesystem, 64MiB memory, 0.5 CPU, 32 processes, 7 s" in text
    assert "the container was removed" in text
    assert reply.summary == "exit code 0"
    assert reply.meta["exit_code"] == 0 and reply.meta["image_id"] == "sha256:" + "e" * 64
    output = next(p for p in reply.parts if isinstance(p, Preformatted))
    assert output.text == "Hello from Dockhand!"


async def test_command_and_entrypoint_reach_the_engine():
    s = services()
    await dispatch("docker run --entrypoint /bin/sh 127.0.0.1:5000/dockhand/hello-world -c 'echo hi'", SHELL, s)
    assert runs(s)[0][2] == ("-c", "echo hi")
    assert runs(s)[0][3] == ["/bin/sh"]
    await dispatch("docker run --entrypoint '' 127.0.0.1:5000/dockhand/hello-world", SHELL, s)
    assert runs(s)[1][3] == [""]


async def test_a_missing_image_is_pulled_first_with_the_pulls_progress():
    s = services(images=())
    emitted = []

    async def emit(reply):
        emitted.append(reply)

    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/pullme", ADMIN, s, emit)
    assert reply.ok, render(reply)
    order = [c[0] for c in s.engine.calls if c[0] in ("pull", "run_container")]
    assert order == ["pull", "run_container"]
    assert s.engine.calls[[c[0] for c in s.engine.calls].index("pull")][1:] == \
        ("127.0.0.1:5000/dockhand/pullme", "latest")
    text = render(reply)
    assert text.startswith("Unable to find image '127.0.0.1:5000/dockhand/pullme:latest' locally\n")
    assert "Status: Downloaded newer image" in text and "Exit code 0." in text
    assert "\n127.0.0.1:5000/dockhand/pullme:latest\n" not in text  # pull's own last line is not run's
    progress = [r for r in emitted if any(isinstance(p, Progress) for p in r.parts)]
    assert progress and all(r.command == reply.command for r in progress)
    assert any(p.title.startswith("Running ") for r in progress for p in r.parts if isinstance(p, Progress))
    assert reply.meta["digest"] == "sha256:" + "1" * 64


async def test_quiet_hides_the_pull_lines():
    s = services(images=())
    reply = await dispatch("docker run -q 127.0.0.1:5000/dockhand/pullme", ADMIN, s)
    assert reply.ok and "Pulling" not in render(reply) and "Unable to find" not in render(reply)


async def test_pull_always_pulls_and_never_refuses_a_missing_image():
    s = services()
    await dispatch("docker run --pull always 127.0.0.1:5000/dockhand/hello-world", ADMIN, s)
    assert any(c[0] == "pull" for c in s.engine.calls)
    s = services(images=())
    reply = await dispatch("docker run --pull never 127.0.0.1:5000/dockhand/pullme", ADMIN, s)
    assert reply.status is Status.FAILED and runs(s) == [] and not any(c[0] == "pull" for c in s.engine.calls)
    assert "No such image" in reply.parts[-1].message and "--pull never" in reply.parts[-1].hint


async def test_a_missing_full_image_id_is_not_pulled():
    s = services(images=())
    reply = await dispatch("docker run sha256:" + "f" * 64, ADMIN, s)
    assert reply.status is Status.FAILED and runs(s) == []
    assert "Unable to find image" in render(reply)


async def test_a_failed_pull_fails_the_run_and_runs_nothing():
    from handlers.errors import ManifestNotFound

    s = services(images=())
    s.engine.fail = ManifestNotFound("manifest for 127.0.0.1:5000/x/y:latest not found")
    reply = await dispatch("docker run 127.0.0.1:5000/x/y", ADMIN, s)
    assert reply.status is Status.FAILED and runs(s) == []
    assert "not found" in render(reply)


@pytest.mark.parametrize("result, summary, words", [
    (RunResult(exit_code=137, output_tail="start\n", timed_out=True, image_id="sha256:" + "e" * 64),
     "killed at its time limit (30 s): exit code 137", "still running after 30 s, its time limit: it was killed and removed"),
    (RunResult(exit_code=3, output_tail="oops\n"), "exit code 3", "exited with code 3"),
    (RunResult(exit_code=137, oom_killed=True), "out of memory: exit code 137", "ran out of memory (256MiB)"),
])
async def test_failures_say_what_happened(result, summary, words):
    s = services()
    s.engine.run_result = result
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, s)
    assert reply.status is Status.FAILED and reply.summary == summary
    assert words in next(p for p in reply.parts if isinstance(p, ErrorPart)).message


async def test_a_container_that_could_not_be_removed_is_said_so():
    s = services()
    s.engine.run_result = RunResult(exit_code=0, container="dockhand-run-x", removed=False,
                                    cleanup_error="engine went away")
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, s)
    assert reply.status is Status.FAILED and "could NOT be removed" in render(reply)
    assert "docker rm -f dockhand-run-x" in render(reply)


async def test_output_is_data_bounded_and_plain():
    s = services()
    hostile = "\x1b[31m*red*\x1b[0m <!channel> ``` \x1b]8;;https://evil.example\x07link\x1b]8;;\x07\x07\x00\u202eevil\r\n"
    many = "".join(f"line {i}\n" for i in range(200))
    s.engine.run_result = RunResult(exit_code=0, output_tail=hostile + many)
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, s)
    output = next(p for p in reply.parts if isinstance(p, Preformatted)).text
    lines = output.split("\n")
    assert len(lines) == run.OUTPUT_LINES and lines[-1] == "line 199" and lines[0] == "line 150"
    assert any(isinstance(p, Notice) and "The last 50 lines" in p.text for p in reply.parts)
    s.engine.run_result = RunResult(exit_code=0, output_tail=hostile)
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, s)
    output = next(p for p in reply.parts if isinstance(p, Preformatted)).text
    assert output == "*red* <!channel> ``` linkevil"  # Slack shows it in a code block, escaped
    assert not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in output)
    assert "*red*" not in reply.summary and "channel" not in reply.summary


def test_bounded_keeps_the_end_within_bytes():
    text, cut = run.bounded("x" * 20_000, 50, 8192)
    assert cut and len(text.encode()) == 8192
    text, cut = run.bounded("é" * 5000 + "\nend", 50, 8192)
    assert cut and text == "end"
    assert run.bounded("a\nb\n", 50, 8192) == ("a\nb", False)


def test_the_engines_output_tail_is_bounded_by_lines_and_bytes():
    assert _output_tail(b"a\nb\nc\n", 2, 100) == ("b\nc", True)
    assert _output_tail(b"a\nb\n", 2, 100) == ("a\nb", False)
    assert _output_tail(b"", 2, 100) == ("", False)
    text, cut = _output_tail(b"x" * 50 + b"\n" + b"y" * 20 + b"\n", 5, 30)
    assert text == "y" * 20 and cut
    text, cut = _output_tail(b"\xff\xfe ok\n", 5, 100)
    assert text.endswith(" ok") and not cut


# --------------------------------------------------------------- the audit record


@pytest.fixture
async def stored(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    s = dataclasses.replace(services(), store=store, audit=AuditLog(tmp_path / "audit.jsonl"))
    yield s
    await store.close()


async def test_a_run_is_an_audited_operation_with_image_id_and_exit_code(stored):
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, stored)
    assert reply.ok and reply.operation.state == "done"
    records = stored.audit.tail_sync(10)
    assert [r["event"] for r in records] == ["requested", "running", "done"]
    detail = records[-1]["detail"]
    assert detail["image_id"] == "sha256:" + "e" * 64 and detail["result"] == "exit code 0"
    assert detail["reference"] == "127.0.0.1:5000/dockhand/hello-world:latest"
    assert records[-1]["command"] == "docker run 127.0.0.1:5000/dockhand/hello-world"


async def test_a_failed_run_and_a_refusal_are_audited(stored):
    stored.engine.run_result = RunResult(exit_code=2)
    reply = await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", ADMIN, stored)
    assert reply.operation.state == "failed"
    assert stored.audit.tail_sync(1)[0]["detail"]["result"] == "exit code 2"
    await dispatch("docker run 127.0.0.1:5000/dockhand/hello-world", OPERATOR, stored)
    last = stored.audit.tail_sync(1)[0]
    assert last["event"] == "denied" and last["actor"] == "UOPER"


# --------------------------------------------------------------- settings


def test_run_settings_and_their_problems():
    limits = load_settings({"DOCKHAND_RUN_TIMEOUT": "5", "DOCKHAND_RUN_MEMORY": "512m", "DOCKHAND_RUN_CPUS": "0.5",
                            "DOCKHAND_RUN_PIDS": "64"}).run_limits()
    assert limits == RunLimits(memory=512 * 1024 * 1024, cpus=0.5, pids=64, timeout=5.0)
    assert load_settings({}).run_limits() == RunLimits()
    assert load_settings({"DOCKHAND_RUN_MEMORY": "1g"}).run_memory == 1024 ** 3
    assert load_settings({"DOCKHAND_RUN_MEMORY": "300000000"}).run_memory == 300_000_000
    with pytest.raises(ConfigError) as caught:
        load_settings({"DOCKHAND_RUN_TIMEOUT": "soon", "DOCKHAND_RUN_MEMORY": "1k", "DOCKHAND_RUN_CPUS": "-1",
                       "DOCKHAND_RUN_PIDS": "many"})
    problems = caught.value.problems
    assert len(problems) == 4
    assert any(p.startswith("DOCKHAND_RUN_TIMEOUT=") for p in problems)
    assert any("minimum of 6m" in p for p in problems)
    assert any(p.startswith("DOCKHAND_RUN_CPUS=") for p in problems)
    assert any(p.startswith("DOCKHAND_RUN_PIDS=") for p in problems)


def test_validate_refuses_a_bad_pull_policy_before_anything_runs():
    with pytest.raises(UsageError):
        run.validate(Parsed(run.SPECS[0], {"pull": "later"}, ["busybox"], "docker run busybox"))

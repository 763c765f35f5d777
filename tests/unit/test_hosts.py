"""Many hosts: settings (DOCKHAND_HOSTS, the hosts file), the target
selector in the one parse, resolution against the fleet, and a fan-out with
in-memory engines (one of them frozen). Real engines: tests/integration/test_many_hosts.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.config import ConfigError, load_settings
from bot.render import blockkit
from bot.render.text import render
from handlers.dispatch import dispatch
from handlers.access import Policy, Role, authorise
from handlers.context import Actor, Services
from handlers.dispatch import parse_command
from handlers.errors import UsageError
from handlers.fleet import Fleet, split_target
from handlers.replies import HostHeading, Status
from tests.unit.fake_engine import FakeEngine, image

SHELL = Actor("root", "root", via="shell")


def _settings(**env):
    return load_settings({"DOCKER_HOST": "unix:///tmp/none.sock", **env}, slack=False)


def _problems(**env) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _settings(**env)
    return info.value.problems


# -- settings ------------------------------------------------------------------

def test_lone_docker_host_is_the_single_unnamed_target():
    s = _settings()
    assert s.hosts is None and s.target.url == "unix:///tmp/none.sock"


def test_env_pairs_name_hosts_in_order_and_the_first_is_the_default():
    s = _settings(DOCKHAND_HOSTS="prod=ssh://ops@prod-1, staging=unix:///run/s.sock,edge=10.0.0.5:2376")
    assert s.hosts.names == ("prod", "staging", "edge")
    assert s.hosts.default == "prod"
    assert [h.target.url for h in s.hosts.hosts] == ["ssh://ops@prod-1", "unix:///run/s.sock", "tcp://10.0.0.5:2376"]
    assert _settings(DOCKHAND_HOSTS="a=unix:///a,b=unix:///b", DOCKHAND_DEFAULT_HOST="b").hosts.default == "b"


def test_bad_env_pairs_are_one_line_each():
    problems = _problems(DOCKHAND_HOSTS="prod,all=unix:///x,Bad Name=unix:///y,web=http://h:1,ok=unix:///z",
                         DOCKHAND_DEFAULT_HOST="nope")
    assert len(problems) == 5, problems
    assert any("'prod' is not name=URL" in p for p in problems)
    assert any("'all' is reserved" in p for p in problems)
    assert any("'Bad Name' is not a host name" in p for p in problems)
    assert any("does not take http://" in p for p in problems)
    assert any("DOCKHAND_DEFAULT_HOST names 'nope', which is no host (known: ok)" in p for p in problems)
    assert all("\n" not in p for p in problems)


def test_default_host_without_hosts_is_a_problem():
    assert _problems(DOCKHAND_DEFAULT_HOST="prod") == [
        "DOCKHAND_DEFAULT_HOST is set but no hosts are named: set DOCKHAND_HOSTS (name=URL,...) or DOCKHAND_HOSTS_FILE"]


def test_hosts_file_groups_channels_timeouts_and_roles(tmp_path):
    f = tmp_path / "hosts.toml"
    f.write_text('''
default = "staging"
timeout = 4
[hosts.prod-1]
url = "unix:///run/p1.sock"
approvers = ["UAPPROVER"]
timeout = 2.5
[hosts.prod-2]
url = "unix:///run/p2.sock"
[hosts.staging]
url = "unix:///run/st.sock"
remove_role = "operator"
operators = ["UOPS"]
[groups]
web = ["prod-2", "prod-1"]
[channels]
C0PRODOPS = "prod-1"
C0WEB = "web"
"#staging-ops" = "staging"
''')
    s = _settings(DOCKHAND_HOSTS_FILE=str(f), DOCKHAND_APPROVERS="", DOCKHAND_OPERATORS="UOTHER")
    h = s.hosts
    assert h.names == ("prod-1", "prod-2", "staging") and h.default == "staging"
    assert h.groups == {"web": ("prod-1", "prod-2")}  # the settings' order
    assert h.channels == {"C0PRODOPS": "prod-1", "C0WEB": "web", "#staging-ops": "staging"}
    assert [x.timeout for x in h.hosts] == [2.5, 4.0, 4.0]
    prod, _, staging = h.hosts
    assert s.policy(prod).approvers == {"UAPPROVER"} and s.policy(prod).operators == {"UOTHER"}
    assert s.policy(staging).remove_role is Role.OPERATOR and s.policy(staging).operators == {"UOPS"}
    ops = Actor("UOPS", via="slack")
    assert authorise(s.policy(staging), ops, "destructive", "docker rmi") is None
    assert authorise(s.policy(prod), ops, "destructive", "docker rmi") is not None


def test_hosts_file_problems_are_one_line_each(tmp_path):
    f = tmp_path / "hosts.toml"
    f.write_text('''
default = "gone"
colour = "blue"
[hosts.a]
url = "unix:///run/a.sock"
cert_path = "/nonexistent"
[hosts.b]
url = "tcp://127.0.0.1:2376"
cert_path = "/nonexistent"
remove_role = "viewer"
timeout = -1
[groups]
a = ["b"]
g = ["b", "zz"]
[channels]
prod = "a"
"#Bad Name" = "a"
C0X = "nothing"
''')
    problems = _problems(DOCKHAND_HOSTS_FILE=str(f), DOCKHAND_HOSTS="a=unix:///other")
    text = "\n".join(problems)
    for expected in ("unknown key 'colour'", "has cert_path but unix:// takes no TLS", "/nonexistent is not a directory",
                     "remove_role must be", "timeout must be a number of seconds above 0",
                     "group 'a' has the name of a host", "group 'g' names unknown host(s) 'b', 'zz'",
                     "'prod' is not a Slack channel ID", "'#Bad Name' is not a Slack channel name",
                     "channel C0X names 'nothing'",
                     "default names 'gone', which is no host", "named both in DOCKHAND_HOSTS and in DOCKHAND_HOSTS_FILE"):
        assert expected in text, (expected, problems)
    assert all("\n" not in p for p in problems)
    assert _problems(DOCKHAND_HOSTS_FILE=str(tmp_path / "missing.toml"))[0].endswith("does not exist")
    (tmp_path / "bad.toml").write_text("[hosts\n")
    assert "is not valid TOML" in _problems(DOCKHAND_HOSTS_FILE=str(tmp_path / "bad.toml"))[0]


# -- the selector in the one parse ---------------------------------------------

@pytest.mark.parametrize("line, words, target", [
    ("images @prod -a", ["images", "-a"], "prod"),
    ("@prod images", ["images"], "prod"),
    ("-H prod images", ["images"], "prod"),
    ("images --host prod", ["images"], "prod"),
    ("images --host=prod", ["images"], "prod"),
    ("images -Hprod", ["images"], "prod"),
    ("rmi @all old:1.0", ["rmi", "old:1.0"], "all"),
    ("images @prod @prod", ["images"], "prod"),
    ("images", ["images"], None),
])
def test_selector_is_taken_before_the_flag_parse(line, words, target):
    command = parse_command(line)
    assert command.words == words and command.target == target
    if target is not None:
        assert command.line.startswith(f"docker -H {target} ")
        assert parse_command(command.line).target == target  # a button re-running the line reaches the same host


def test_selector_problems_are_usage_errors():
    for line in ("images @a @b", "images -H", "images -H -a", "images @ x"):  # a lone @ is no selector
        with pytest.raises(UsageError):
            parse_command(line)


def test_run_keeps_the_containers_own_words():
    command = parse_command("run @prod 127.0.0.1:5000/busybox echo @staging -H x")
    assert command.target == "prod"
    assert command.parsed.args == ["127.0.0.1:5000/busybox", "echo", "@staging", "-H", "x"]
    assert split_target(["a", "--", "@b"]) == (["a", "--", "@b"], None)


# -- resolution and fan-out ------------------------------------------------------

class FrozenEngine(FakeEngine):
    async def list_images(self, *, all=False, filters=None):
        await asyncio.sleep(3600)

    async def version(self):
        await asyncio.sleep(3600)


def _fleet(frozen=()):
    targets = {}
    for i, name in enumerate(("prod", "staging", "edge")):
        engine = (FrozenEngine if name in frozen else FakeEngine)(
            images=[image(f"sha256:{i + 1:064x}", [f"app:{name}"], created=0, size=1000 * (i + 1))])
        targets[name] = Services(engine=engine, host_label=name, policy=Policy())
    fleet = Fleet(targets, "staging", {"web": ("prod", "edge")}, {"C0PROD": "prod", "C0WEB": "web", "#edge-ops": "edge"},
                  {n: 0.5 for n in targets})
    for s in targets.values():
        s.fleet = fleet
    return targets["staging"]


def test_resolve_channel_defaults_groups_all_and_unknown():
    fleet = _fleet().fleet
    assert fleet.resolve(None) == ("staging",)
    assert fleet.resolve(None, "C0PROD") == ("prod",)
    assert fleet.resolve(None, "C0WEB") == ("prod", "edge")
    assert fleet.resolve("all") == ("prod", "staging", "edge")
    assert fleet.resolve("edge", "C0PROD") == ("edge",)
    assert fleet.resolve(None, "C0OTHER", "edge-ops") == ("edge",)  # by the channel's name
    assert fleet.resolve(None, "C0PROD", "edge-ops") == ("prod",)  # its ID first
    with pytest.raises(UsageError) as info:
        fleet.resolve("prdo")
    assert "unknown host 'prdo'" in info.value.message
    assert "hosts: prod, staging, edge; groups: web (prod, edge); @all" in info.value.hint


async def test_one_target_names_its_host_and_an_unknown_one_lists_the_known():
    services = _fleet()
    reply = await dispatch("images @prod", SHELL, services)
    assert reply.ok and reply.host == "prod" and "app" in render(reply) and "prod" in render(reply)
    reply = await dispatch("images", Actor("U1", via="slack", channel="C0PROD"), services)
    assert reply.host == "prod" and "prod" in render(reply)
    reply = await dispatch("images", SHELL, services)
    assert reply.host == "staging"
    reply = await dispatch("images -H nope", SHELL, services)
    assert reply.status is Status.USAGE and "known hosts: prod, staging, edge" in reply.parts[0].hint.replace("Known", "known")


async def test_single_unnamed_engine_refuses_a_host_name():
    services = Services(engine=FakeEngine(), host_label="box")
    assert (await dispatch("images @box", SHELL, services)).ok
    reply = await dispatch("images @prod", SHELL, services)
    assert reply.status is Status.USAGE and "manages one engine (box)" in reply.parts[0].hint


async def test_fan_out_is_in_order_and_a_frozen_host_is_named_within_its_timeout():
    services = _fleet(frozen=("staging",))
    started = time.monotonic()
    reply = await dispatch("images @all", SHELL, services)
    took = time.monotonic() - started
    assert took < 2.0, took  # the frozen host's 0.5 s, not an hour
    headings = [p for p in reply.parts if isinstance(p, HostHeading)]
    assert [h.host for h in headings] == ["prod", "staging", "edge"]
    assert [h.ok for h in headings] == [True, False, True]
    assert "staging did not answer within 0.5 s" in headings[1].detail
    assert reply.status is Status.FAILED and reply.summary == "2 of 3 hosts answered; failed: staging"
    text = render(reply)
    assert text.index("=== prod") < text.index("app:prod".split(":")[0]) and "=== staging: FAILED" in text
    message = blockkit.render(reply, native=True)
    assert "fallback" not in message and len(message["blocks"]) <= 50
    assert any(":red_circle: *staging*" in str(b) for b in message["blocks"])


async def test_group_fans_out_even_from_a_channel_default_and_a_write_runs_on_every_host():
    services = _fleet()
    reply = await dispatch("images", Actor("U1", via="slack", channel="C0WEB"), services)
    assert [p.host for p in reply.parts if isinstance(p, HostHeading)] == ["prod", "edge"]
    assert reply.host == "web (prod, edge)"
    reply = await dispatch("pull @all 127.0.0.1:5000/x:1", SHELL, services)  # no store: each host pulls, unaudited
    assert reply.ok and [s["host"] for s in reply.meta["sections"]] == ["prod", "staging", "edge"]
    assert all(any(c[0] == "pull" for c in s.engine.calls) for s in services.fleet.targets.values())


# -- drift ------------------------------------------------------------------------

async def test_drift_flags_the_host_that_differs_from_the_majority():
    same = image("a", ["app:latest"], digests=["app@sha256:" + "d" * 64])
    stale = image("b", ["app:latest", "app:old"])
    targets = {}
    for name, imgs in (("prod", [same]), ("staging", [stale]), ("edge", [same]), ("lab", [])):
        targets[name] = Services(engine=FakeEngine(images=imgs), host_label=name)
    fleet = Fleet(targets, "prod", timeouts={n: 0.5 for n in targets})
    for s in targets.values():
        s.fleet = fleet
    reply = await dispatch("images app @all", SHELL, targets["prod"])
    assert reply.meta["drift"] == {"majority": "sha256:" + "a" * 64, "differ": ["staging", "lab"]}
    notice, table = reply.parts[0], reply.parts[1]
    assert notice.text == "app:latest: staging, lab differ from the majority (2 of 4 hosts have aaaaaaaaaaaa)."
    assert table.rows == (("prod", "aaaaaaaaaaaa", "sha256:dddddddddddd", "same"),
                          ("staging", "bbbbbbbbbbbb", "-", "DIFFERS"),
                          ("edge", "aaaaaaaaaaaa", "sha256:dddddddddddd", "same"),
                          ("lab", "-", "-", "DIFFERS (missing)"))
    # no drift table for a listing without one reference
    assert "drift" not in (await dispatch("images @all", SHELL, targets["prod"])).meta
    assert "drift" not in (await dispatch("images 'app*' @all", SHELL, targets["prod"])).meta


async def test_answers_come_as_they_arrive_when_a_front_end_takes_them():
    services = _fleet(frozen=("prod",))
    seen = []

    async def emit(interim):
        seen.append((time.monotonic(), interim))

    started = time.monotonic()
    reply = await dispatch("images @all", SHELL, services, emit=emit)
    assert not reply.meta.get("interim") and reply.status is Status.FAILED
    assert seen and seen[-1][0] - started < 0.4  # staging and edge did not wait for prod's 0.5 s
    heads = [p for p in seen[-1][1].parts if isinstance(p, HostHeading)]
    assert [(h.host, h.pending) for h in heads] == [("prod", True), ("staging", False), ("edge", False)]
    assert "=== prod: waiting (up to 0.5 s) ===" in render(seen[-1][1])
    assert [s["host"] for s in reply.meta["sections"]] == ["prod", "staging", "edge"]
    assert reply.meta["sections"][1]["elapsed"] < 0.4 <= reply.meta["sections"][0]["elapsed"]


async def test_readiness_with_many_hosts_needs_one_host_and_names_each():
    import json as _json

    from bot.health import EngineProbe, Status
    from bot.metrics import Metrics
    from handlers.errors import EngineUnreachable

    up, down = FakeEngine(), FakeEngine(fail=EngineUnreachable("gone"))
    metrics = Metrics()
    default = EngineProbe(up, metrics=metrics)
    status = Status(default, metrics, "prod", hosts={"prod": default, "edge": EngineProbe(down)})
    r = await status.readyz(None)
    body = _json.loads(r.text)
    assert r.status == 200 and body["status"] == "degraded"
    assert body["hosts"]["prod"]["reachable"] and body["hosts"]["edge"] == {"reachable": False, "error": "unreachable"}
    status = Status(EngineProbe(down), metrics, "prod", hosts={"prod": EngineProbe(down), "edge": EngineProbe(down)})
    assert (await status.readyz(None)).status == 503

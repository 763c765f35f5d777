"""bot/metrics.py and bot/health.py on their own: bounded label values, a
registry per app, and an engine probe that is cached, shared and bounded."""

from __future__ import annotations

import asyncio

import pytest

from bot.config import ConfigError, load_settings
from bot.health import EngineProbe
from bot.metrics import Metrics, command_name, slack_method
from handlers.errors import EngineUnreachable
from tests.fakes.scrape import samples, value


@pytest.mark.parametrize("line,name", [
    ("images", "images"), ("docker image ls -a", "image ls"), ("image prune -f", "image prune"),
    ("pull 127.0.0.1:5000/x", "pull"), ("help", "help"), ("--version", "help"),
    ("rm -rf /; <@U123> $(evil)", "invalid"), ("imagez", "invalid"), ("images --nope", "invalid"),
])
def test_command_names_come_from_the_command_table(line, name):
    assert command_name(line) == name


def test_slack_methods_are_bounded():
    api = "http://127.0.0.1:9/api/"
    assert slack_method(api + "chat.postMessage", api) == "chat.postMessage"
    assert slack_method(api + "usergroups.users.list?x=1", api) == "usergroups.users.list"
    assert slack_method(api + "../../etc/passwd", api) == "other"
    assert slack_method("https://hooks.slack.com/commands/T1/2/abc", api) == "response_url"


def test_two_apps_never_share_counters():
    a, b = Metrics(), Metrics()
    a.command("images", "ok")
    a.command("images", "weird outcome")
    assert value(samples(a.render().decode()), "dockhand_commands_total", command="images", outcome="ok") == 1
    assert value(samples(a.render().decode()), "dockhand_commands_total", command="images", outcome="error") == 1
    assert value(samples(b.render().decode()), "dockhand_commands_total", command="images", outcome="ok") == 0


class Engine:
    def __init__(self, delay=0.0, fail=None):
        self.delay, self.fail, self.calls = delay, fail, 0

    async def version(self):
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return {"Version": "20.10.24", "ApiVersion": "1.41"}


async def test_the_probe_is_shared_and_cached():
    engine, now = Engine(delay=0.05), [0.0]
    probe = EngineProbe(engine, ttl=2.0, clock=lambda: now[0])
    answers = await asyncio.gather(*(probe.check() for _ in range(50)))
    assert engine.calls == 1 and all(a == {"reachable": True, "version": "20.10.24", "api_version": "1.41"}
                                     for a in answers)
    now[0] = 1.9
    await probe.check()
    assert engine.calls == 1
    now[0] = 2.1
    await probe.check()
    assert engine.calls == 2


async def test_the_probe_is_bounded_and_says_nothing_of_the_address():
    metrics = Metrics()
    slow = EngineProbe(Engine(delay=5), timeout=0.2, metrics=metrics)
    assert await asyncio.wait_for(slow.check(), 1) == {"reachable": False, "error": "timeout"}
    assert value(samples(metrics.render().decode()), "dockhand_engine_up", host="default") == 0
    down = EngineProbe(Engine(fail=EngineUnreachable("unix:///secret/path.sock", "No such file")))
    answer = await down.check()
    assert answer == {"reachable": False, "error": "unreachable"} and "secret" not in str(answer)


def test_front_door_and_status_settings():
    s = load_settings({})
    assert (s.http_read_timeout, s.http_max_connections, s.status_host, s.status_port) == (5.0, 256, "127.0.0.1", 3001)
    s = load_settings({"DOCKHAND_HTTP_READ_TIMEOUT": "2.5", "DOCKHAND_HTTP_MAX_CONNECTIONS": "64",
                       "DOCKHAND_STATUS_HOST": "0.0.0.0", "DOCKHAND_STATUS_PORT": "off"})
    assert (s.http_read_timeout, s.http_max_connections, s.status_host, s.status_port) == (2.5, 64, "0.0.0.0", 0)
    with pytest.raises(ConfigError) as info:
        load_settings({"DOCKHAND_HTTP_READ_TIMEOUT": "0", "DOCKHAND_HTTP_MAX_CONNECTIONS": "many",
                       "DOCKHAND_STATUS_PORT": "99999"})
    assert len(info.value.problems) == 3


async def test_a_scrape_probes_every_host_one_engine_up_series_each():
    from bot.health import Status

    metrics = Metrics()
    probes = {"alpha": EngineProbe(Engine(), metrics=metrics, host="alpha"),
              "bravo": EngineProbe(Engine(delay=5), metrics=metrics, host="bravo", timeout=0.2),
              "charlie": EngineProbe(Engine(fail=EngineUnreachable("unix:///x", "gone")), metrics=metrics,
                                     host="charlie")}
    status = Status(probes["alpha"], metrics, "alpha", hosts=probes)
    page = await asyncio.wait_for(status.metrics_page(None), 1)  # the frozen host costs its probe's bound
    scrape = samples(page.body.decode())
    assert [value(scrape, "dockhand_engine_up", host=h) for h in probes] == [1, 0, 0]
    assert ("dockhand_engine_up", ()) not in scrape  # no unlabelled series
    body = await status.body()
    assert body["hosts_answering"] == 1 and list(body["hosts"]) == ["alpha", "bravo", "charlie"]

"""Many hosts on the Home tab and in /healthz, /readyz, /metrics, with real
engines: the three private engines of test_many_hosts.py (two on unix
sockets, one over TCP with mutual TLS), roles that differ per host, and one
engine frozen (SIGSTOP) mid-test.

The Home tab is driven as Slack drives it: a signed ``app_home_opened``
event to the running app, the view read from the fake Slack Web API's
``views.publish`` (which checks Slack's view limits); health and metrics are
scraped over HTTP from the same running app.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.wiring import build_services, close_services
from tests.fakes.scrape import samples, value
from tests.fakes.slack_harness import clean_slack_env, fake_slack, slack_app  # noqa: F401
from tests.fakes.slack_views import open_home, send_interactive, view_click, view_problems, view_text, views_of
from tests.integration import remote_engines as R
from tests.integration.test_many_hosts import TIMEOUT, env_for, fleet, pytestmark  # noqa: F401

S = R.stackmod
ADMIN, OPS, PROD, VIEWER, NOBODY = "UADMIN", "UOPS", "UPROD", "UVIEW", "UNOBODY"


def write_hosts(path: Path, f, *, extra: str = "", only: tuple[str, ...] = ()) -> Path:
    """alpha and bravo keep the global roles; charlie (prod-like) names its own:
    no operators there, and only UPROD views (admins stay global)."""
    hosts = {
        "alpha": f'url = "{f.alpha}"\n',
        "bravo": f'url = "{f.bravo.docker_host}"\n',
        "charlie": (f'url = "{f.charlie.url}"\ncert_path = "{f.charlie.certs.good}"\n'
                    f'operators = []\nviewers = ["{PROD}"]\n'),
    }
    names = only or tuple(hosts)
    body = f'default = "{names[0]}"\ntimeout = {TIMEOUT}\n'
    body += "".join(f"\n[hosts.{n}]\n{hosts[n]}" for n in names) + extra
    path.write_text(body)
    return path


def services_for(stack, f, tmp_path, hosts_file: Path):
    env = env_for(stack, f, tmp_path, DOCKHAND_HOSTS_FILE=str(hosts_file), DOCKHAND_ADMINS=ADMIN,
                  DOCKHAND_OPERATORS=OPS, DOCKHAND_VIEWERS=VIEWER)
    return build_services(load_settings(env, slack=False))


@pytest.fixture
async def made(stack, fleet, tmp_path):
    """Factory: the services for a hosts file (closed at the end)."""
    built = []

    def make(hosts_file: Path):
        services = services_for(stack, fleet, tmp_path, hosts_file)
        built.append(services)
        return services

    try:
        yield make
    finally:
        for services in built:
            await close_services(services)


async def published(h, user: str, count: int = 1, timeout: float = 30.0) -> dict:
    calls = await h.fake.wait_for("api", "views.publish", where=lambda c: c.body.get("user_id") == user,
                                  count=count, timeout=timeout)
    call = calls[count - 1]
    assert call.response.get("ok"), call.response  # the fake refuses what Slack would
    view = call.body["view"]
    return json.loads(view) if isinstance(view, str) else view


def host_sections(view: dict) -> dict[str, str]:
    """Each host's text on the tab, by name: from its heading (the section with
    its own button) to the next divider."""
    out: dict[str, str] = {}
    name = None
    for block in view["blocks"]:
        if block["type"] == "divider":
            name = None
        elif block.get("accessory", {}).get("value") and "docker images -H" in json.dumps(block["accessory"]):
            name = block["accessory"]["text"]["text"].removeprefix("Images on ")
            out[name] = ""
        if name is not None:
            out[name] += view_text({"blocks": [block]}) + "\n"
    return out


def counts(f, host: str) -> str:
    """The Home tab's words for the images `docker images` lists on that host."""
    images = len(set(f.docker(host, "images", "-q", "--no-trunc").split()))
    rows = len(f.docker(host, "images").strip().splitlines()) - 1
    return f"{images:,} image{'s' if images != 1 else ''} ({rows:,} row{'s' if rows != 1 else ''} in `docker images`)"


async def test_every_host_on_the_home_tab_by_its_own_roles(made, fleet, slack_app, tmp_path):
    services = made(write_hosts(tmp_path / "hosts.toml", fleet))
    h = await slack_app(services)

    await open_home(h, ADMIN)
    view = await published(h, ADMIN)
    assert view_problems(view) == [] and len(view["blocks"]) <= 100
    parts = host_sections(view)
    assert list(parts) == ["alpha", "bravo", "charlie"]  # every host, in the settings' order
    for host in ("alpha", "bravo", "charlie"):
        version = fleet.docker(host, "version", "--format", "{{.Server.Version}}").strip()
        assert f"Docker Engine {version}" in parts[host] and "you: admin" in parts[host], parts[host]
        assert counts(fleet, host) in parts[host], (host, parts[host])
    text = view_text(view)
    assert "(3 of 3 answering)" in text and "default host `alpha`" in text

    # the operator: operator on alpha and bravo; charlie names its own viewers, so it is left out
    await open_home(h, OPS)
    view = await published(h, OPS)
    parts = host_sections(view)
    assert list(parts) == ["alpha", "bravo"] and all("you: operator" in p for p in parts.values())
    assert "You have no role on charlie: it is not shown." in view_text(view)
    assert "`charlie`" not in view_text(view)

    # charlie's own viewer sees charlie only (alpha and bravo name DOCKHAND_VIEWERS, without them)
    await open_home(h, PROD)
    parts = host_sections(await published(h, PROD))
    assert list(parts) == ["charlie"] and "you: viewer" in parts["charlie"]

    # no role anywhere: why, and no host
    await open_home(h, NOBODY)
    view = await published(h, NOBODY)
    assert "needs the viewer role; you have no role on any host." in view_text(view)
    assert not host_sections(view)

    # a host's own button runs on that host, as the clicker
    view = await published(h, OPS)
    bravo = next(b["accessory"] for b in view["blocks"] if b.get("accessory", {}).get("text", {}).get("text")
                 == "Images on bravo")
    status, _, elapsed = await send_interactive(h, view_click(view, bravo, user_id=OPS, user_name="ops",
                                                              trigger_id=views_of(h.fake).issue()))
    assert status == 200 and elapsed < 1.0
    updated = await h.fake.wait_for("api", "views.update", timeout=30)
    assert updated[0].response.get("ok"), updated[0].response
    result = view_text(json.loads(updated[0].body["view"]) if isinstance(updated[0].body["view"], str)
                       else updated[0].body["view"])
    assert fleet.only["bravo"].split(":")[0] in result and fleet.only["alpha"].split(":")[0] not in result


async def test_a_frozen_host_is_named_on_the_home_tab_and_in_health_without_holding_the_others(
        made, fleet, slack_app, tmp_path):
    services = made(write_hosts(tmp_path / "hosts.toml", fleet))
    h = await slack_app(services)
    pid = S.dockerd_pid(fleet.bravo)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, _, _ = await open_home(h, ADMIN)
        assert status == 200
        view = await published(h, ADMIN)
        took = time.monotonic() - started
        health_status, health = await h.get("/healthz")
        ready_status, ready = await h.get("/readyz")
        scrape = samples((await h.get("/metrics"))[1])
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"with bravo frozen, the Home tab was published {took:.2f} s after app_home_opened")
    assert took < TIMEOUT + 3, took  # bravo's timeout, never the engine's 60 s
    assert view_problems(view) == []
    parts = host_sections(view)
    assert list(parts) == ["alpha", "bravo", "charlie"]
    assert ":red_circle: *Host* `bravo` · *unreachable*" in parts["bravo"]
    assert f"bravo did not answer within {TIMEOUT} s." in parts["bravo"]
    assert fleet.bravo.docker_host not in json.dumps(view)
    for host in ("alpha", "charlie"):
        assert counts(fleet, host) in parts[host]
    assert "(2 of 3 answering; unreachable: bravo)" in view_text(view)

    assert health_status == 200 and ready_status == 200  # one host frozen: alive, and still in rotation
    body = json.loads(ready)
    assert body == json.loads(health) | {"uptime_seconds": body["uptime_seconds"]}
    assert body["status"] == "degraded" and body["hosts_answering"] == 2
    assert list(body["hosts"]) == ["alpha", "bravo", "charlie"]
    assert body["hosts"]["bravo"] == {"reachable": False, "error": "timeout"}
    assert body["hosts"]["alpha"]["reachable"] and body["hosts"]["charlie"]["reachable"]
    assert [value(scrape, "dockhand_engine_up", host=n) for n in ("alpha", "bravo", "charlie")] == [1, 0, 1]
    assert fleet.bravo.docker_host not in health

    # bravo back: the next reading (after the shared reading's 2 s) shows it again
    await asyncio.sleep(2.5)
    await open_home(h, OPS)
    parts = host_sections(await published(h, OPS))
    assert ":large_green_circle: *Host* `bravo`" in parts["bravo"], parts["bravo"]
    scrape = samples((await h.get("/metrics"))[1])
    assert value(scrape, "dockhand_engine_up", host="bravo") == 1


async def test_ready_while_one_host_answers_503_when_none_does(made, fleet, slack_app, tmp_path):
    gone = tmp_path / "gone.sock"
    services = made(write_hosts(tmp_path / "hosts.toml", fleet, only=("bravo",),
                                extra=f'\n[hosts.delta]\nurl = "unix://{gone}"\n'))
    h = await slack_app(services)
    status, text = await h.get("/readyz")
    body = json.loads(text)
    assert status == 200 and body["status"] == "degraded" and body["hosts_answering"] == 1
    assert body["hosts"]["delta"] == {"reachable": False, "error": "unreachable"} and str(gone) not in text
    await open_home(h, ADMIN)
    view = await published(h, ADMIN)
    parts = host_sections(view)
    assert list(parts) == ["bravo", "delta"] and "*unreachable*" in parts["delta"]
    assert str(gone) not in json.dumps(view)  # named by its name, never its socket path

    pid = S.dockerd_pid(fleet.bravo)
    os.kill(pid, signal.SIGSTOP)  # now no host answers
    try:
        await asyncio.sleep(2.2)  # past the probes' cache
        status, text = await h.get("/readyz")
        live, _ = await h.get("/healthz")
        scrape = samples((await h.get("/metrics"))[1])
    finally:
        os.kill(pid, signal.SIGCONT)
    body = json.loads(text)
    assert status == 503 and live == 200, text
    assert body["hosts_answering"] == 0
    assert body["hosts"] == {"bravo": {"reachable": False, "error": "timeout"},
                             "delta": {"reachable": False, "error": "unreachable"}}
    assert [value(scrape, "dockhand_engine_up", host=n) for n in ("bravo", "delta")] == [0, 0]
    await asyncio.sleep(2.2)
    status, _ = await h.get("/readyz")
    assert status == 200  # bravo answers again: back in rotation


async def test_more_hosts_than_a_home_tab_holds_are_trimmed_and_said(made, fleet, slack_app, tmp_path):
    """110 names over two real engines: one section per host while they fit,
    then a note naming the rest; the fake Slack accepts the view."""
    path = tmp_path / "many.toml"
    body = 'default = "h000"\ntimeout = 20\n'
    for i in range(110):
        url = fleet.alpha if i % 2 == 0 else fleet.bravo.docker_host
        body += f'\n[hosts.h{i:03d}]\nurl = "{url}"\n'
    path.write_text(body)
    services = made(path)
    h = await slack_app(services)
    await open_home(h, ADMIN)
    view = await published(h, ADMIN, timeout=60)
    assert view_problems(view) == [] and len(view["blocks"]) == 100
    text = view_text(view)
    parts = host_sections(view)
    shown = len(parts)
    assert 80 < shown < 110 and list(parts) == [f"h{i:03d}" for i in range(shown)]
    assert f"110 hosts: the first {shown} (in the settings' order) fit on this tab" in text
    note = text.split("not shown: ", 1)[1]
    assert all(f"h{i:03d}" in note for i in range(shown, 110))

"""/healthz, /readyz and /metrics of the running Slack app, scraped while real
commands (signed requests) run against the private engine; Socket Mode's own
listener; and replies that name the host by its label when the engine is
down or slow."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import tempfile
import uuid

import aiohttp
import pytest

from tests.fakes.scrape import samples, total, value
from tests.fakes.slack_api import RateRule
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401
from tests.fakes.slow_engine import SlowEngineProxy

LABEL = "lab-east-1"


@pytest.fixture
def remote_image(make_image, stack):
    """An image only the registry has (pushed, then removed from the engine)."""

    def make(size: int = 0):
        img = make_image(f"slack-metrics-{uuid.uuid4().hex[:8]}", push=True, size=size)
        stack.docker("rmi", img.ref)
        return img

    return make


async def scrape(h) -> dict:
    status, text = await h.get("/metrics")
    assert status == 200
    return samples(text)


async def test_healthz_and_metrics_scraped_while_commands_run(slack_app, engine_services, fake_slack, stack,
                                                               docker_client):
    h = await slack_app(engine_services(host_label=LABEL))
    status, text = await h.get("/healthz")
    assert status == 200
    health = json.loads(text)
    engine_version = docker_client.version()["Version"]
    assert health["status"] == "ok" and health["host"] == LABEL and health["mode"] == "http"
    assert health["engine"] == {"reachable": True, "version": engine_version,
                                "api_version": docker_client.version()["ApiVersion"]}
    assert stack.docker_host not in text and "docker.sock" not in text
    status, _ = await h.get("/readyz")
    assert status == 200

    before = await scrape(h)
    # commands and scrapes at once: three `images`, one usage error, one `version`
    runs = [h.command("/images"), h.command("/docker", "images"), h.command("/docker", "image ls"),
            h.command("/docker", "imagez"), h.command("/docker", "version")]
    scrapes = [h.get("/metrics") for _ in range(5)] + [h.get("/healthz") for _ in range(5)]
    results = await asyncio.gather(*runs, *scrapes)
    sent, pages = results[:5], results[5:]
    assert all(s.status == 200 and s.elapsed < 1.0 for s in sent)
    assert all(status == 200 for status, _ in pages)
    for s in sent:
        await h.reply(s)
    await asyncio.sleep(0.2)  # the last response_url call's trace callback
    after = await scrape(h)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dockhand_commands_total", command="images", outcome="ok") == 2
    assert delta("dockhand_commands_total", command="image ls", outcome="ok") == 1
    assert delta("dockhand_commands_total", command="invalid", outcome="usage") == 1
    assert delta("dockhand_commands_total", command="version", outcome="ok") == 1
    assert total(after, "dockhand_commands_total") - total(before, "dockhand_commands_total") == 5
    assert "imagez" not in json.dumps(list(after)), "a person's text never becomes a label"
    assert delta("dockhand_ack_seconds_count") == 5
    assert delta("dockhand_ack_seconds_bucket", le="1.0") == 5, "every ack well under a second"
    assert delta("dockhand_engine_call_seconds_count", call="image list", outcome="ok") >= 3
    assert delta("dockhand_engine_call_seconds_count", call="version", outcome="ok") >= 1
    assert delta("dockhand_slack_api_calls_total", method="response_url") == 5
    assert value(after, "dockhand_engine_up", host=LABEL) == 1  # one engine: its label
    assert value(after, "dockhand_pulls_in_flight") == 0
    assert value(after, "dockhand_http_connections") >= 1  # this scrape's own
    assert value(after, "dockhand_uptime_seconds") > 0


async def test_pulls_in_flight_and_slack_429s_are_counted(slack_app, engine_services, fake_slack, stack,
                                                          remote_image):
    # every pull's request waits 2 s in front of the engine: long enough to scrape it in flight
    proxy = await SlowEngineProxy(stack.docker_host.removeprefix("unix://"), delay=2.0, match=(b"POST ",)).start()
    try:
        fake_slack.enforce_rate_limits = True  # a Slack stricter than the budget: one post per 2 s
        fake_slack.rate_limits["chat.postMessage"] = RateRule(0.5, 1, per_channel=True)
        images = [remote_image(), remote_image()]
        h = await slack_app(engine_services(docker_host=proxy.docker_host, host_label=LABEL,
                                            operators=frozenset({"UALICE"})))
        before = await scrape(h)
        sent = await asyncio.gather(*(h.command("/pull", img.ref) for img in images))
        assert all(s.status == 200 for s in sent)
        in_flight = 0.0
        for _ in range(40):
            in_flight = max(in_flight, value(await scrape(h), "dockhand_pulls_in_flight"))
            if in_flight == 2:
                break
            await asyncio.sleep(0.05)
        assert in_flight == 2
        for img in images:
            await fake_slack.wait_for("api", "chat.update", where=lambda c, r=img.ref: "pulled" in c.text
                                      and r in c.text, timeout=60)
        await asyncio.sleep(0.3)
        after = await scrape(h)
    finally:
        await proxy.stop()
    assert value(after, "dockhand_pulls_in_flight") == 0
    assert value(after, "dockhand_commands_total", command="pull", outcome="ok") \
        - value(before, "dockhand_commands_total", command="pull", outcome="ok") == 2
    assert value(after, "dockhand_engine_call_seconds_count", call="image pull", outcome="ok") == 2
    assert value(after, "dockhand_engine_call_seconds_sum", call="image pull", outcome="ok") >= 4.0
    posts = fake_slack.api_calls("chat.postMessage")
    limited = [c for c in fake_slack.ratelimited if c.name == "chat.postMessage"]
    assert limited, "this Slack said 429"
    assert value(after, "dockhand_slack_api_calls_total", method="chat.postMessage") == len(posts)
    assert value(after, "dockhand_slack_api_ratelimited_total", method="chat.postMessage") == len(limited)
    assert value(after, "dockhand_slack_api_calls_total", method="chat.update") \
        == len(fake_slack.api_calls("chat.update"))


async def test_the_probe_is_cached_and_without_a_label_no_address_is_shown(slack_app, engine_services,
                                                                            fake_slack, stack):
    h = await slack_app(engine_services())
    probe_status = (await asyncio.gather(*(h.get("/healthz") for _ in range(30))))
    assert all(status == 200 for status, _ in probe_status)
    for _, text in probe_status:
        assert json.loads(text)["host"] is None and "docker.sock" not in text and stack.docker_host not in text
    text = (await h.get("/metrics"))[1]
    # 31 requests within the probe's cache time: one engine call (version) at most two
    assert value(samples(text), "dockhand_engine_call_seconds_count", call="version", outcome="ok") <= 2


def closed_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["unix", "tcp"])
async def test_engine_down_replies_name_the_label_never_the_address(slack_app, engine_services, fake_slack,
                                                                     where, caplog):
    if where == "unix":
        address = f"unix://{tempfile.mkdtemp(prefix='dh-gone-')}/docker.sock"
        forms = [address, address[len("unix://"):]]
    else:
        port = closed_tcp_port()
        address = f"tcp://127.0.0.1:{port}"
        forms = [address, f"127.0.0.1:{port}", str(port)]
    caplog.set_level(logging.WARNING, logger="dockhand.engine")
    h = await slack_app(engine_services(docker_host=address, host_label=LABEL))
    for command, text in (("/images", ""), ("/docker", "info"), ("/docker", "version")):
        sent = await h.command(command, text)
        assert sent.status == 200 and sent.elapsed < 1.0
        reply = await h.reply(sent)
        shown = json.dumps(reply.body)
        assert f"Cannot connect to the Docker daemon at {LABEL}" in reply.text, reply.text
        assert not any(f in shown for f in forms), shown
        assert "docker.sock" not in shown and "unix://" not in shown and "tcp://" not in shown
    status, text = await h.get("/healthz")
    assert status == 200
    health = json.loads(text)
    assert health["status"] == "degraded" and health["host"] == LABEL
    assert health["engine"] == {"reachable": False, "error": "unreachable"}
    assert not any(f in text for f in forms)
    status, text = await h.get("/readyz")
    assert status == 503 and json.loads(text)["engine"]["reachable"] is False
    scrape_ = samples((await h.get("/metrics"))[1])
    assert value(scrape_, "dockhand_engine_up", host=LABEL) == 0
    assert value(scrape_, "dockhand_commands_total", command="images", outcome="failed") == 1
    # the address is for the log (once a minute at most), not for people
    logged = [r.getMessage() for r in caplog.records if r.name == "dockhand.engine"]
    assert len(logged) == 1 and address in logged[0] and LABEL in logged[0]


async def test_slow_engine_replies_name_the_label_never_the_address(slack_app, engine_services, fake_slack,
                                                                    stack):
    proxy = await SlowEngineProxy(stack.docker_host.removeprefix("unix://"), delay=3.0, match=(b"GET ",)).start()
    try:
        h = await slack_app(engine_services(docker_host=proxy.docker_host, host_label=LABEL, engine_timeout=1.0))
        sent = await h.command("/images")
        assert sent.status == 200 and sent.elapsed < 1.0
        reply = await h.reply(sent, timeout=30)
        shown = json.dumps(reply.body)
        assert f"the engine at {LABEL} did not answer within 1 s" in reply.text, reply.text
        assert proxy.path not in shown and proxy.dir not in shown and "unix://" not in shown
        t0 = asyncio.get_running_loop().time()
        status, text = await h.get("/healthz")
        assert asyncio.get_running_loop().time() - t0 < 2.5, "the probe is bounded"
        assert status == 200 and json.loads(text)["engine"]["reachable"] is False
        assert proxy.path not in text
    finally:
        await proxy.stop()


async def test_socket_mode_serves_health_and_metrics_on_its_own_listener(fake_slack, engine_services, stack):
    """The Socket Mode runner as `dockhand slack` runs it, in-process."""
    from bot.config import Settings
    from bot.slack import app as slack_app_module

    port = closed_tcp_port()
    settings = Settings(slack_bot_token=fake_slack.bot_token, slack_app_token=fake_slack.app_token,
                        slack_api_url=fake_slack.api_url, docker_host=stack.docker_host, host_label=LABEL,
                        status_host="127.0.0.1", status_port=port)
    services = engine_services(host_label=LABEL)
    app, runtime = slack_app_module.build(settings, services)
    stop = asyncio.Event()
    task = asyncio.ensure_future(slack_app_module._run_socket_mode(app, runtime, settings, stop, "test", drain=5))
    try:
        await asyncio.wait_for(fake_slack.wait_socket(), 30)
        rid = uuid.uuid4().hex[:12]
        from tests.fakes.slack_api import command_payload

        await fake_slack.send_envelope("slash_commands",
                                       command_payload("/images", "", response_url=fake_slack.response_url(rid)))
        await fake_slack.wait_for("response", rid, timeout=30)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
                health = await r.json()
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200
                scraped = samples(await r.text())
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=b"x") as r:
                assert r.status in (404, 405)
        assert health["mode"] == "socket" and health["engine"]["reachable"] is True and health["host"] == LABEL
        assert value(scraped, "dockhand_commands_total", command="images", outcome="ok") == 1
        assert value(scraped, "dockhand_ack_seconds_count") == 1
        assert value(scraped, "dockhand_slack_api_calls_total", method="response_url") == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await services.engine.close()
    with pytest.raises(OSError):  # the listener is closed with the app
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

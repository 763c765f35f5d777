"""The App Home tab: the host at a glance, through signed app_home_opened events,
published with views.publish to the fake Slack, which checks Slack's view limits."""

from __future__ import annotations

import asyncio
import json
import re

from bot.render.home import ACTION_HOME_PULL, ACTION_HOME_REFRESH
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401
from tests.fakes.slack_views import elements, open_home, send_interactive, view_click, view_problems, view_text, \
    views_of


async def _published(h, user: str, count: int = 1, timeout: float = 20.0):
    calls = await h.fake.wait_for("api", "views.publish", where=lambda c: c.body.get("user_id") == user,
                                  count=count, timeout=timeout)
    return calls


def _view(call) -> dict:
    view = call.body["view"]
    return json.loads(view) if isinstance(view, str) else view


def _df_images(stack) -> dict:
    out = stack.docker("system", "df", "--format", "{{json .}}").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return next(r for r in rows if r["Type"] == "Images")


async def test_home_shows_the_host_at_a_glance(slack_app, engine_services, stack, make_image):
    make_image("home-glance", extra_tags=("second",))  # one image, two rows in `docker images`
    h = await slack_app(engine_services(host_label="glance-host"))
    status, _, elapsed = await open_home(h, "UALICE")
    assert status == 200 and elapsed < 1.0
    call = (await _published(h, "UALICE"))[0]
    assert call.response.get("ok"), call.response
    view = _view(call)
    assert view["type"] == "home" and view_problems(view) == []
    text = view_text(view)
    version = stack.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert "`glance-host`" in text and f"Docker Engine {version}" in text
    ids = set(stack.docker("images", "-q", "--no-trunc").stdout.split())
    rows = len(stack.docker("images").stdout.strip().splitlines()) - 1
    assert f"{len(ids):,} images ({rows:,} rows in `docker images`)" in text
    df = _df_images(stack)
    assert int(df["TotalCount"]) == len(ids)
    assert f"*Disk used by images*\n{df['Size']}" in text
    assert f"*Reclaimable*\n{df['Reclaimable']}" in text
    assert f"*Used by containers*\n{df['Active']} of {df['TotalCount']} images" in text
    assert "*Pulls in flight*\n0" in text
    labels = [el["text"]["text"] for el in elements(view) if el["type"] == "button"]
    assert labels[:4] == ["Images", "Dangling images", "Info", "Audit log"]
    assert "Pull an image…" in labels and "Refresh" in labels


async def test_home_lists_the_audit_tail_and_pulls_in_flight(slack_app, engine_services, stack, make_image):
    img = make_image("home-audit", push=True)
    stack.docker("rmi", img.ref)
    h = await slack_app(engine_services(operators=frozenset({"UOPS"})))
    await h.command("/pull", img.ref, user_id="UOPS")
    await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    await open_home(h, "UOPS")
    view = _view((await _published(h, "UOPS"))[0])
    text = view_text(view)
    assert "Last audit records" in text and img.ref in text and "done" in text


async def test_the_messages_tab_publishes_nothing(slack_app, engine_services):
    h = await slack_app(engine_services())
    await open_home(h, "UALICE", tab="messages")
    await asyncio.sleep(0.5)
    assert not h.fake.api_calls("views.publish")


async def test_someone_without_a_role_sees_why_not_the_host(slack_app, engine_services):
    h = await slack_app(engine_services(viewers=frozenset({"UVIEW"})))
    await open_home(h, "UNOBODY")
    view = _view((await _published(h, "UNOBODY"))[0])
    text = view_text(view)
    assert view_problems(view) == []
    assert "needs the viewer role; you have no role" in text and "DOCKHAND_VIEWERS" in text
    assert "Images" not in text and not elements(view)


async def test_home_refreshes_are_coalesced_per_person(slack_app, engine_services):
    h = await slack_app(engine_services())
    for _ in range(5):  # a burst of openings before anything went: one publish
        await open_home(h, "UALICE")
    await open_home(h, "UBOB")
    await _published(h, "UALICE")
    await _published(h, "UBOB")
    await asyncio.sleep(0.5)
    assert len(h.fake.api_calls("views.publish")) == 2, "one publish each"
    for _ in range(5):  # more openings right after: one more publish, after the per-person interval
        await open_home(h, "UALICE")
    await _published(h, "UALICE", count=2, timeout=10)
    await asyncio.sleep(6.0)
    alice = [c for c in h.fake.api_calls("views.publish") if c.body["user_id"] == "UALICE"]
    assert len(alice) == 2 and alice[1].at - alice[0].at >= 4.5
    assert h.runtime.home_tab.readings <= 3, "one reading of the engine serves several openings"


async def test_home_buttons_run_the_command_as_the_clicker(slack_app, engine_services, stack):
    h = await slack_app(engine_services())
    await open_home(h, "UALICE")
    view = _view((await _published(h, "UALICE"))[0])
    images = next(el for el in elements(view) if el["type"] == "button" and el["text"]["text"] == "Images")
    trigger = views_of(h.fake).issue()
    status, _, elapsed = await send_interactive(h, view_click(view, images, user_id="UALICE", user_name="alice",
                                                              trigger_id=trigger))
    assert status == 200 and elapsed < 1.0
    opened = await h.fake.wait_for("api", "views.open")
    assert opened[0].body["trigger_id"] == trigger and opened[0].response.get("ok"), opened[0].response
    updated = await h.fake.wait_for("api", "views.update", timeout=20)
    assert updated[0].response.get("ok"), updated[0].response
    result = _view(updated[0])
    assert view_problems(result) == []
    first_repo = stack.docker("images", "-f", "dangling=false", "--format", "{{.Repository}}").stdout.split()[0]
    assert "REPOSITORY" in view_text(result) and first_repo in view_text(result)


async def test_a_viewer_clicking_pull_is_refused_like_a_typed_pull(slack_app, engine_services):
    h = await slack_app(engine_services())
    await open_home(h, "UVIEW")
    view = _view((await _published(h, "UVIEW"))[0])
    pull = next(el for el in elements(view) if el.get("action_id") == ACTION_HOME_PULL)
    await send_interactive(h, view_click(view, pull, user_id="UVIEW", user_name="viewer",
                                         trigger_id=views_of(h.fake).issue()))
    opened = await h.fake.wait_for("api", "views.open")
    typed = await h.reply(await h.command("/pull", "busybox", user_id="UVIEW"))
    refusal = re.search(r"`docker pull` needs the operator role; you have viewer\.", typed.text)
    assert refusal and refusal.group(0) in view_text(_view(opened[0]))
    assert "DOCKHAND_OPERATORS" in view_text(_view(opened[0]))


async def test_refresh_button_publishes_again(slack_app, engine_services):
    h = await slack_app(engine_services())
    await open_home(h, "UALICE")
    view = _view((await _published(h, "UALICE"))[0])
    refresh = next(el for el in elements(view) if el.get("action_id") == ACTION_HOME_REFRESH)
    await send_interactive(h, view_click(view, refresh, user_id="UALICE", user_name="alice",
                                         trigger_id=views_of(h.fake).issue()))
    await _published(h, "UALICE", count=2, timeout=10)


async def test_a_pull_in_flight_shows_on_the_home_tab(slack_app, engine_services, stack, make_image):
    from tests.fakes.slow_engine import SlowEngineProxy

    img = make_image("home-inflight", push=True)
    stack.docker("rmi", img.ref)
    # the engine is slow to start pulls: long enough to look at the Home tab meanwhile
    proxy = await SlowEngineProxy(stack.docker_host.removeprefix("unix://"), delay=3.0, match=(b"POST /",)).start()
    try:
        h = await slack_app(engine_services(docker_host=proxy.docker_host, operators=frozenset({"UOPS"})))
        await h.command("/pull", img.ref, user_id="UOPS")
        await h.fake.wait_for("api", "chat.postMessage")
        await open_home(h, "UOPS")
        text = view_text(_view((await _published(h, "UOPS"))[0]))
        assert "*Pulls in flight*\n1" in text and f"`{img.repo}:latest`" in text
        await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    finally:
        await proxy.stop()


async def test_event_subscription_url_is_verified(slack_app, engine_services):
    from tests.fakes.slack_views import send_event

    h = await slack_app(engine_services())
    status, body, _ = await send_event(h, {"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                                           "type": "url_verification"})
    assert status == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in body
    status, _, _ = await send_event(h, {"type": "url_verification", "challenge": "x"}, secret="wrong-secret")
    assert status == 401


async def test_many_people_opening_home_stay_within_slacks_limit(slack_app, engine_services):
    h = await slack_app(engine_services())
    h.fake.enforce_rate_limits = True  # views.publish: Tier 4 in the fake, answered 429 over it
    users = [f"UUSER{i:02d}" for i in range(14)]
    await asyncio.gather(*(open_home(h, u) for u in users))
    for u in users:
        await _published(h, u, timeout=30)
    assert not h.fake.ratelimited, "the budget kept every publish within Slack's limit"
    assert all(c.response.get("ok") for c in h.fake.api_calls("views.publish"))


async def test_home_and_form_over_socket_mode(fake_slack, engine_services):
    """Events and suggestions arrive as envelopes in Socket Mode; the answers go back as acks."""
    from bot.config import Settings
    from bot.render.modals import ACTION_REPOSITORY, pull_form
    from bot.slack import app as slack_app_module
    from tests.fakes.slack_views import home_opened, suggestion

    services = engine_services(operators=frozenset({"UOPS"}))
    settings = Settings(slack_bot_token=fake_slack.bot_token, slack_app_token=fake_slack.app_token,
                        slack_api_url=fake_slack.api_url, docker_host=services.engine.host)
    app, runtime = slack_app_module.build(settings, services)
    stopping = asyncio.Event()
    task = asyncio.create_task(slack_app_module._run_socket_mode(app, runtime, settings, stopping, "test", drain=5))
    try:
        await fake_slack.wait_socket()
        await fake_slack.send_envelope("events_api", home_opened("UOPS"))
        published = (await fake_slack.wait_for("api", "views.publish"))[0]
        assert published.response.get("ok") and "Pulls in flight" in view_text(_view(published))
        form = views_of(fake_slack).stored(pull_form(host="h", registry="docker.io"))
        envelope = await fake_slack.send_envelope("interactive", suggestion(form, ACTION_REPOSITORY, "busybox",
                                                                            user_id="UOPS", user_name="ops"))
        ack = (await fake_slack.wait_for("socket", "ack", where=lambda c: c.body.get("envelope_id") == envelope))[0]
        assert [o["value"] for o in ack.body["payload"]["options"]][0] == "busybox"  # from the configured index
    finally:
        stopping.set()
        await asyncio.wait_for(task, 15)
        await services.engine.close()

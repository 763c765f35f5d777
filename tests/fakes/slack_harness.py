"""Pytest fixtures for the Slack front end: a fake Slack and the real app on loopback.

Import them into a test module (``from tests.fakes.slack_harness import
fake_slack, slack_app, engine_services, clean_slack_env``); they live here
rather than in a ``conftest.py`` so that no second top-level ``conftest``
module shadows the root one (tests import helpers from it).

``slack_app(...)`` starts Dockhand's Bolt app (``bot.slack.app.build``) under an
aiohttp runner on 127.0.0.1:<free port>, with its Web API pointed at a
:class:`~tests.fakes.slack_api.FakeSlack` and its engine at the private test
engine; requests are signed like Slack signs them.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, replace

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from tests.fakes.slack_api import (
    SIGNING_SECRET,
    FakeSlack,
    action_body,
    action_payload,
    command_payload,
    form_body,
    signed_headers,
)

SECRET = SIGNING_SECRET


@pytest.fixture(autouse=True)
def clean_slack_env(monkeypatch):
    """Bolt reads SLACK_* (SLACK_CLIENT_ID+SECRET switch OAuth on); proxies would
    divert loopback traffic; refusals remembered by another test's app are forgotten."""
    for key in list(os.environ):
        if key.startswith("SLACK_") or key.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(key, raising=False)
    from bot.slack import fallback

    fallback.forget()  # block types a test's fake Slack refused are that test's own


@pytest.fixture
async def fake_slack():
    fake = await FakeSlack().start()
    try:
        yield fake
    finally:
        await fake.stop()


@dataclass
class Sent:
    status: int
    body: str
    elapsed: float  # seconds until the HTTP answer (the ack)
    rid: str  # the response_url id in the fake
    payload: dict


class SlackHarness:
    def __init__(self, fake: FakeSlack, url: str, app, runtime, settings: Settings, services):
        self.fake, self.url, self.app, self.runtime = fake, url, app, runtime
        self.settings, self.services = settings, services
        self.session: aiohttp.ClientSession | None = None
        self.base_url = url.rsplit("/slack/", 1)[0]  # http://127.0.0.1:PORT (health, metrics)
        self.site = None  # the listening site (its guard: site.guard)

    async def get(self, path: str) -> tuple[int, str]:
        """``GET base_url + path`` (``/healthz``, ``/metrics``): status and text."""
        if self.session is None:
            self.session = aiohttp.ClientSession()
        async with self.session.get(self.base_url + path) as r:
            return r.status, await r.text()

    async def post(self, body: bytes, headers: dict) -> tuple[int, str, float]:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        t0 = time.monotonic()
        async with self.session.post(self.url, data=body, headers=headers) as r:
            text = await r.text()
            return r.status, text, time.monotonic() - t0

    async def command(self, command: str, text: str = "", *, secret: str = SECRET, timestamp: int | None = None,
                      signature: str | None = None, extra_headers: dict | None = None, **kw) -> Sent:
        rid = uuid.uuid4().hex[:12]
        payload = command_payload(command, text, response_url=self.fake.response_url(rid), **kw)
        body = form_body(payload)
        headers = signed_headers(secret, body, timestamp=timestamp, signature=signature)
        headers.update(extra_headers or {})
        status, answer, elapsed = await self.post(body, headers)
        return Sent(status, answer, elapsed, rid, payload)

    async def replay(self, sent: Sent, *, extra_headers: dict | None = None) -> Sent:
        """The very same signed request again (a retry or a replay)."""
        body = form_body(sent.payload)
        headers = signed_headers(SECRET, body)
        headers.update(extra_headers or {})
        status, answer, elapsed = await self.post(body, headers)
        return Sent(status, answer, elapsed, sent.rid, sent.payload)

    async def click(self, button: dict, *, secret: str = SECRET, **kw) -> Sent:
        rid = uuid.uuid4().hex[:12]
        payload = action_payload(button, response_url=self.fake.response_url(rid), **kw)
        body = action_body(payload)
        status, answer, elapsed = await self.post(body, signed_headers(secret, body))
        return Sent(status, answer, elapsed, rid, payload)

    async def reply(self, sent: Sent, *, count: int = 1, timeout: float = 30.0):
        """The ``count``-th message sent to this request's response_url."""
        return (await self.fake.wait_for("response", sent.rid, count=count, timeout=timeout))[count - 1]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@pytest.fixture
async def slack_app(fake_slack):
    """Factory: ``await slack_app(services, **settings)`` -> a running :class:`SlackHarness`."""
    from bot.slack.app import EVENTS_PATH, build, listen, web_app

    started: list[tuple[SlackHarness, web.AppRunner]] = []

    async def start(services, *, dispatch=None, **overrides) -> SlackHarness:
        settings = replace(Settings(slack_bot_token=fake_slack.bot_token, slack_signing_secret=SECRET,
                                    slack_api_url=fake_slack.api_url, http_host="127.0.0.1", http_port=3000,
                                    docker_host=getattr(services.engine, "host", "unix:///nonexistent")),
                           **overrides)
        app, runtime = build(settings, services, dispatch=dispatch)
        runner = web.AppRunner(web_app(app, runtime, drain=10), access_log=None)
        await runner.setup()
        site = await listen(runner, "127.0.0.1", 0)  # the real front door, as `dockhand slack` serves it
        port = site.bound_port
        harness = SlackHarness(fake_slack, f"http://127.0.0.1:{port}{EVENTS_PATH}", app, runtime, settings, services)
        harness.base_url, harness.site = f"http://127.0.0.1:{port}", site
        started.append((harness, runner))
        return harness

    try:
        yield start
    finally:
        for harness, runner in started:
            await harness.close()
            await runner.cleanup()  # drains the running commands, closes the session
            close = getattr(harness.services.engine, "close", None)
            if close is not None:
                await close()


@pytest.fixture
def engine_services(stack, tmp_path):
    """Factory of Services on the private engine (search index: the fake one),
    with a state directory (store, audit log) of the test's own by default;
    settings such as ``admins=frozenset({...})`` set the access policy."""
    from bot.wiring import build_services

    def make(**overrides):
        overrides.setdefault("state_dir", str(tmp_path / "state"))
        settings = replace(Settings(docker_host=stack.docker_host, search_index=stack.index), **overrides)
        return build_services(settings)

    return make


"""Slash commands through signed HTTP requests to the running app, against the
private engine; replies read back from the fake Slack."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

import pytest

from bot.engine import DockerEngine
from handlers.dispatch import dispatch as real_dispatch
from handlers.context import Services
from tests.fakes.slack_api import (
    SIGNING_SECRET,
    buttons,
    command_payload,
    form_body,
    message_problems,
    sign,
    signed_headers,
)
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

ACK_LIMIT = 1.0  # seconds: Slack allows 3; we want far less


def assert_clean(body: dict) -> None:
    """A reply a person should see: valid for Slack, no Python leaking through."""
    assert message_problems(body) == []
    text = repr(body)
    for leak in ("Traceback", "Exception(", "Error(", "<object at", "File \""):
        assert leak not in text, leak


class Spy:
    """A dispatch that records what it was asked before running the real one."""

    def __init__(self):
        self.lines: list[str] = []

    async def __call__(self, text, actor, services, emit=None):
        self.lines.append(text)
        return await real_dispatch(text, actor, services, emit)


@pytest.mark.parametrize("command,text,expect", [
    ("/docker", "help", r"Usage:\s+docker \[OPTIONS\] COMMAND"),
    ("/docker", "", r"Usage:\s+docker"),
    ("/docker", "version", r"Server: Docker Engine"),
    ("/docker", "info", r"Server Version: 20\.10"),
    ("/docker", "images", r"REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE"),
    ("/docker", "image ls", r"dockhand/busybox\s+1\.36"),
    ("/docker", "search ubuntu", r"NAME\s+DESCRIPTION\s+STARS\s+OFFICIAL"),
    ("/images", "", r"dockhand/hello-world\s+latest"),
    ("/images", "-a", r"REPOSITORY"),
    ("/search", "ubuntu", r"ubuntu\s+Ubuntu is a Debian-based"),
    ("/search", "--limit 5 ubuntu", r"rastasheep/ubuntu-sshd"),
    ("/search", "—limit 3 ubuntu", r"dorowu/ubuntu-desktop"),  # a client's smart dash
])
async def test_read_only_commands_answer_ephemerally_with_a_share_button(slack_app, engine_services, stack,
                                                                          command, text, expect):
    h = await slack_app(engine_services())
    sent = await h.command(command, text)
    assert sent.status == 200 and sent.body == ""  # an empty ack
    assert sent.elapsed < ACK_LIMIT
    reply = await h.reply(sent)
    assert_clean(reply.body)
    assert reply.body["response_type"] == "ephemeral"
    assert re.search(expect, reply.text), reply.text[:2000]
    assert stack.docker_host in reply.text  # the context line names the target
    assert "Dockhand's sample engine" in reply.text  # ...and says it is the sample engine (its label)
    assert [b["action_id"] for b in buttons(reply.body)].count("dockhand.share") == 1
    if command == "/search" and "limit 3" in text:
        assert len(re.findall(r"^\S+/?\S*\s{3,}.*\s\d+(\s+\[OK\])?$", reply.text, re.M)) <= 3


async def test_in_channel_visibility_has_no_share_button(slack_app, engine_services):
    h = await slack_app(engine_services(), reply_visibility="in_channel")
    reply = await h.reply(await h.command("/images"))
    assert reply.body["response_type"] == "in_channel"
    # only the table's "As the CLI prints it" (each click answers the clicker alone)
    assert [b["action_id"] for b in buttons(reply.body)] == ["dockhand.cli"]


async def test_usage_error_is_a_clear_message_with_a_hint(slack_app, engine_services):
    h = await slack_app(engine_services())
    reply = await h.reply(await h.command("/images", "--bogus"))
    assert_clean(reply.body)
    assert ":x:" in reply.text and "--bogus" in reply.text
    assert ":bulb:" in reply.text


@pytest.mark.parametrize("how", ["bad", "missing", "stale", "wrong-secret", "tampered"])
async def test_unsigned_or_stale_requests_get_401_and_run_nothing(slack_app, engine_services, fake_slack, how):
    spy = Spy()
    h = await slack_app(engine_services(), dispatch=spy)
    if how == "bad":
        sent = await h.command("/images", signature="v0=" + "0" * 64)
    elif how == "missing":
        sent = await h.command("/images", signature="")
    elif how == "stale":  # correctly signed, but six minutes old
        sent = await h.command("/images", timestamp=int(time.time()) - 360)
    elif how == "wrong-secret":
        sent = await h.command("/images", secret="not-the-secret")
    else:  # signed for another body
        payload = command_payload("/pull", "x", response_url=fake_slack.response_url())
        body = form_body(payload)
        headers = signed_headers(SIGNING_SECRET, body)
        headers["X-Slack-Signature"] = sign(SIGNING_SECRET, body + b"&x=1", headers["X-Slack-Request-Timestamp"])
        status, _, _ = await h.post(body, headers)
        assert status == 401
        sent = None
    if sent is not None:
        assert sent.status == 401
    await asyncio.sleep(0.5)
    assert fake_slack.activity() == []  # nothing posted anywhere
    assert spy.lines == []  # dispatch (so the engine) never ran


async def test_slow_engine_call_still_acks_at_once(slack_app, engine_services, stack):
    h = await slack_app(engine_services())
    sent = await h.command("/search", f"{stack.index}/slow-5")
    assert sent.status == 200 and sent.elapsed < ACK_LIMIT
    t0 = time.monotonic()
    # Meanwhile, other people are served at once.
    quick = await h.command("/images")
    assert quick.elapsed < ACK_LIMIT
    await h.reply(quick, timeout=10)
    assert not h.fake.responses(sent.rid), "the slow search cannot have answered yet"
    reply = await h.reply(sent, timeout=30)
    assert time.monotonic() - t0 > 3
    assert_clean(reply.body)


async def test_engine_down_names_docker_host_and_the_app_keeps_serving(slack_app):
    sock = f"unix:///tmp/dockhand-nowhere-{uuid.uuid4().hex[:8]}.sock"
    h = await slack_app(Services(engine=DockerEngine(sock, timeout=5)))
    sent = await h.command("/images")
    assert sent.status == 200 and sent.elapsed < ACK_LIMIT
    reply = await h.reply(sent)
    assert_clean(reply.body)
    assert ":x:" in reply.text and "DOCKER_HOST" in reply.text and sock in reply.text
    assert not buttons(reply.body)
    again = await h.command("/docker", "help")
    assert again.status == 200
    assert "Usage:" in (await h.reply(again)).text


async def test_a_crashing_dispatch_is_an_incident_id_not_a_traceback(slack_app, engine_services, caplog):
    async def broken(text, actor, services, emit=None):
        raise RuntimeError("boom: secret internals")

    h = await slack_app(engine_services(), dispatch=broken)
    with caplog.at_level(logging.ERROR, logger="dockhand.slack"):
        reply = await h.reply(await h.command("/images"))
    assert_clean(reply.body)
    assert "boom" not in reply.text
    m = re.search(r"Internal error, logged as ([0-9a-f]{8})", reply.text)
    assert m, reply.text
    assert any(m.group(1) in r.getMessage() and r.exc_info for r in caplog.records)
    # ... and the next request is served normally.
    again = await h.command("/images")
    assert again.status == 200


async def test_replayed_command_runs_once(slack_app, engine_services):
    spy = Spy()
    h = await slack_app(engine_services(), dispatch=spy)
    sent = await h.command("/images")
    await h.reply(sent)
    again = await h.replay(sent)  # same trigger_id, freshly signed: Bolt accepts it
    retry = await h.replay(sent, extra_headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status == retry.status == 200
    await asyncio.sleep(0.5)
    assert spy.lines == ["images"]
    assert len(h.fake.responses(sent.rid)) == 1


async def test_escaped_text_from_slack_is_unescaped_before_dispatch(slack_app, engine_services):
    spy = Spy()
    h = await slack_app(engine_services(), dispatch=spy)
    await h.reply(await h.command("/images", "--filter &quot;x&quot; a&amp;b &lt;c&gt; “q”"))
    assert spy.lines == ['images --filter &quot;x&quot; a&b <c> "q"']


async def test_a_burst_of_fifty_commands_is_acked_fast_and_all_answered(slack_app, engine_services, stack):
    h = await slack_app(engine_services())
    mix = [("/images", ""), ("/docker", "version"), ("/search", "ubuntu"), ("/docker", "help"),
           ("/search", f"{stack.index}/slow-2")]
    sent = await asyncio.gather(*(h.command(*mix[i % len(mix)]) for i in range(50)))
    assert all(s.status == 200 for s in sent)
    assert max(s.elapsed for s in sent) < ACK_LIMIT, sorted(s.elapsed for s in sent)[-5:]
    replies = await asyncio.gather(*(h.reply(s, timeout=60) for s in sent))
    assert all(message_problems(r.body) == [] for r in replies)
    assert not any(":x:" in r.text for r in replies)

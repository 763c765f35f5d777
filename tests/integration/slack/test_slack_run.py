"""`/docker run` through Slack as Slack drives it (signed slash commands to the
running app, the private engine): admins only, until roles say otherwise;
what the container prints reaches the channel as data."""

from __future__ import annotations

import pytest

from tests.fakes.slack_api import message_problems
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

ADMIN, OPERATOR, VIEWER = "UALICE", "UOTTO", "UCAROL"


def events(services) -> list[str]:
    return [r["event"] for r in services.audit.tail_sync(200)]


def containers(stack) -> set[str]:
    return set(stack.docker("ps", "-a", "-q", "--no-trunc").stdout.split())


@pytest.mark.parametrize("user, role", [(VIEWER, "viewer"), (OPERATOR, "operator")])
async def test_viewers_and_operators_are_refused_and_nothing_runs(slack_app, engine_services, fake_slack, stack,
                                                                  user, role):
    services = engine_services(admins=frozenset({ADMIN}), operators=frozenset({OPERATOR}))
    h = await slack_app(services)
    before = containers(stack)
    sent = await h.command("/docker", f"run {stack.seed('hello_world')}", user_id=user, user_name=user.lower())
    assert sent.status == 200
    private = await h.reply(sent)
    assert f"`docker run` needs the admin role; you have {role}." in private.text
    assert "DOCKHAND_ADMINS" in private.text and "Hello from Dockhand" not in private.text
    assert message_problems(private.body) == []
    # nothing was announced in the channel, nothing ran, the refusal is audited
    assert not [c for c in fake_slack.api_calls("chat.postMessage") if "hello-world" in c.text]
    assert containers(stack) == before
    assert events(services) == ["denied"]


async def test_an_admin_runs_hello_world_and_the_channel_sees_the_output(slack_app, engine_services, fake_slack,
                                                                        stack):
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    before = containers(stack)
    sent = await h.command("/docker", f"run {stack.seed('hello_world')}", user_id=ADMIN, user_name="alice")
    assert sent.status == 200 and sent.elapsed < 1.0
    final = await fake_slack.wait_for("api", "chat.update", where=lambda c: "Exit code 0" in c.text, timeout=60)
    body = final[-1].body
    assert message_problems(body) == []
    sections = [b["text"]["text"] for b in body["blocks"] if b.get("type") == "section"]
    output = next(t for t in sections if "Hello from Dockhand!" in t)
    assert output.startswith("```") and output.endswith("```")  # data, in a code block
    assert sections[0].startswith(":white_check_mark: <@UALICE> ran `" + stack.seed("hello_world"))
    announced = fake_slack.api_calls("chat.postMessage")[0]
    assert ":arrow_forward: <@UALICE> is running" in announced.text and "pulling" not in announced.text
    record = (await fake_slack.wait_for("api", "chat.postMessage", where=lambda c: c.body.get("thread_ts")))[0]
    assert "exit code 0" in record.text and "image ID `sha256:" in record.text
    assert containers(stack) == before
    assert events(services) == ["requested", "running", "done"]
    done = services.audit.tail_sync(1)[0]
    assert done["actor"] == ADMIN and done["detail"]["result"] == "exit code 0"
    assert done["detail"]["exit_code"] == 0 and done["detail"]["timed_out"] is False
    assert done["detail"]["image_id"].startswith("sha256:")

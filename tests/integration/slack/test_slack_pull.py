"""/pull: a channel message naming the requester, updated with progress and
the result; never run twice for one trigger."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from handlers.dispatch import dispatch as real_dispatch
from tests.fakes.slack_api import message_problems
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401


@pytest.fixture
def remote_image(make_image, stack):
    """An image only the registry has (pushed, then removed from the engine)."""

    def make(size: int = 0):
        img = make_image(f"slack-pull-{uuid.uuid4().hex[:8]}", push=True, size=size)
        stack.docker("rmi", img.ref)
        return img

    return make


class PullSpy:
    def __init__(self):
        self.runs = 0

    async def __call__(self, text, actor, services, emit=None):
        if "pull" in text:
            self.runs += 1
        return await real_dispatch(text, actor, services, emit)


def updates_of(fake, post):
    ts = post.body.get("ts") or None
    return [c for c in fake.api_calls("chat.update") if c.body.get("channel") == "CDOCKHAND"
            and c.body.get("ts") == ts]


@pytest.mark.parametrize("command,prefix", [("/pull", ""), ("/docker", "pull "), ("/docker", "image pull ")])
async def test_pull_posts_in_the_channel_then_updates_it(slack_app, engine_services, fake_slack, remote_image,
                                                         docker_client, stack, command, prefix):
    img = remote_image()
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    sent = await h.command(command, prefix + img.ref)
    assert sent.status == 200 and sent.body == "" and sent.elapsed < 1.0
    post = (await fake_slack.wait_for("api", "chat.postMessage"))[0]
    assert post.body["channel"] == "CDOCKHAND"
    assert re.search(rf"<@UALICE> is pulling `{re.escape(img.ref)}` on `{re.escape(stack.docker_host)}`…", post.text)
    assert "Dockhand's sample engine" in post.text  # the engine's own label, from the first message on
    assert message_problems(post.body) == []
    final = await fake_slack.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    assert final[0].body["channel"] == "CDOCKHAND"
    assert ":white_check_mark: <@UALICE> pulled" in final[0].text
    assert "Status: Downloaded newer image" in final[0].text and "Dockhand's sample engine" in final[0].text
    assert message_problems(final[0].body) == []
    assert not fake_slack.responses(sent.rid), "the channel message is the answer"
    docker_client.images.get(img.ref)  # it is really there now


async def test_pull_progress_updates_are_throttled(slack_app, engine_services, fake_slack, remote_image):
    img = remote_image(size=40_000_000)
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    await h.command("/pull", img.ref)
    await fake_slack.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=120)
    updates = fake_slack.api_calls("chat.update")
    times = [c.at for c in updates[:-1]]  # the progress; the result goes as soon as the budget allows
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(updates) >= 2, "a 40 MB pull shows progress before its result"
    assert "pulled" in updates[-1].text and not any("pulled" in c.text for c in updates[:-1])
    assert all(g >= 0.9 for g in gaps), gaps  # at most about one progress update a second
    assert all(message_problems(c.body) == [] for c in updates)


async def test_replayed_or_retried_pull_runs_once(slack_app, engine_services, fake_slack, remote_image):
    img = remote_image()
    spy = PullSpy()
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})), dispatch=spy)
    sent = await h.command("/pull", img.ref)
    replays = await asyncio.gather(h.replay(sent), h.replay(sent, extra_headers={"X-Slack-Retry-Num": "1"}))
    assert all(r.status == 200 for r in replays)
    await fake_slack.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    await h.replay(sent)  # and after it finished
    await asyncio.sleep(0.5)
    assert spy.runs == 1
    announced = [c for c in fake_slack.api_calls("chat.postMessage") if not c.body.get("thread_ts")]
    assert len(announced) == 1
    record = [c for c in fake_slack.api_calls("chat.postMessage") if c.body.get("thread_ts")]
    assert len(record) == 1 and "digest `sha256:" in record[0].text and "asked by <@UALICE>" in record[0].text


async def test_failed_pull_says_why_in_the_channel(slack_app, engine_services, fake_slack, stack):
    ref = f"{stack.registry}/dockhand-test/missing-{uuid.uuid4().hex[:8]}:nope"
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    await h.command("/pull", ref)
    final = await fake_slack.wait_for("api", "chat.update", where=lambda c: "could not pull" in c.text,
                                      timeout=60)
    text = final[0].text
    assert ":x: <@UALICE> could not pull" in text
    assert "not found" in text or "manifest unknown" in text
    assert ":bulb:" in text
    assert "Traceback" not in text


async def test_pull_without_an_image_is_a_private_usage_error(slack_app, engine_services, fake_slack):
    # `/docker pull` alone is the CLI's usage error (`/pull` alone opens the form: test_slack_pull_form.py)
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    reply = await h.reply(await h.command("/docker", "pull"))
    assert reply.body["response_type"] == "ephemeral"
    assert "requires exactly 1 argument" in reply.text
    assert not fake_slack.api_calls("chat.postMessage")


@pytest.mark.parametrize("text,needle", [("Ubuntu", "repository name must be lowercase"),
                                         ("-z x", "unknown shorthand flag"), ("a b", "requires exactly 1 argument"),
                                         ("127.0.0.1:70000/x", "a port is 1 to 65535"),
                                         # the grammar takes it (a registry host); this engine refuses it
                                         ("UPPER/x", "invalid reference format: repository name must be lowercase")])
async def test_invalid_pull_is_refused_privately_before_any_announcement(slack_app, engine_services, fake_slack,
                                                                          text, needle):
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    reply = await h.reply(await h.command("/pull", text))
    assert reply.body["response_type"] == "ephemeral" and needle in reply.text
    assert not fake_slack.api_calls("chat.postMessage")


async def test_pull_where_the_bot_cannot_post_uses_the_response_url(slack_app, engine_services, fake_slack,
                                                                     remote_image):
    fake_slack.fail_post["GPRIVATE"] = "not_in_channel"
    img = remote_image()
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    sent = await h.command("/pull", img.ref, channel_id="GPRIVATE")
    first = await h.reply(sent)
    assert first.body["response_type"] == "in_channel" and "is pulling" in first.text
    final = await h.reply(sent, count=2, timeout=60)
    assert final.body["response_type"] == "in_channel" and final.body.get("replace_original") is True
    assert "pulled" in final.text
    assert len(fake_slack.responses(sent.rid)) <= 5


async def test_a_second_request_for_the_same_pull_joins_the_first(slack_app, engine_services, fake_slack,
                                                                 remote_image, stack):
    img = remote_image(size=60_000_000)
    services = engine_services(operators=frozenset({"UALICE", "UBOB"}))
    started = []
    real_pull = services.engine.pull

    def counting_pull(repository, tag, **kw):
        started.append((repository, tag))
        return real_pull(repository, tag, **kw)

    services.engine.pull = counting_pull
    h = await slack_app(services)
    await h.command("/pull", img.ref, user_id="UALICE")
    repository, tag = img.ref.rsplit(":", 1)
    for _ in range(600):  # until the first pull's channel message is known to the pull in flight
        note = services.pulls.note(services.label, repository, tag)
        if note and note.get("ts"):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the first pull finished before its message was posted")
    second = await h.command("/docker", f"pull {img.ref}", user_id="UBOB")
    answer = await h.reply(second, timeout=60)
    assert "Status: Downloaded newer image" in answer.text and answer.body["response_type"] == "ephemeral"
    await fake_slack.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    announced = [c for c in fake_slack.api_calls("chat.postMessage") if not c.body.get("thread_ts")]
    assert len(announced) == 1 and "<@UALICE> is pulling" in announced[0].text
    thread = [c.text for c in fake_slack.api_calls("chat.postMessage") if c.body.get("thread_ts")]
    assert any("<@UBOB> asked for the same pull" in t for t in thread)
    assert started == [(repository, tag)]  # one engine pull for both
    assert stack.docker("image", "inspect", img.ref).returncode == 0

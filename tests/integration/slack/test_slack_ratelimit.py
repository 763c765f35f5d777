"""One Slack rate budget for the whole app, against a fake Slack that enforces
Slack's limits (``chat.update`` Tier 3, ``chat.postMessage`` one a second per
channel) and answers 429 with Retry-After as Slack does.

Concurrent pulls in one channel: nobody sees a 429, every pull's message ends
in its final state, and the calls stay within the budget."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from bot.slack import ratelimit
from tests.fakes.slack_api import RateRule, message_problems, message_text
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

CHANNEL = "CDOCKHAND"


@pytest.fixture
def remote_images(make_image, stack):
    """Images only the registry has (pushed, then removed from the engine)."""

    def make(count: int, size: int = 0):
        images = [make_image(f"slack-rate-{uuid.uuid4().hex[:8]}", push=True, size=size) for _ in range(count)]
        for img in images:
            stack.docker("rmi", img.ref)
        return images

    return make


def accepted(call) -> bool:
    return call.status == 200 and bool(call.response.get("ok"))


class Pulls:
    """The channel messages of a set of /pulls, as the fake Slack saw them."""

    def __init__(self, fake, images):
        self.fake, self.images = fake, images

    def announcement(self, img):
        found = [c for c in self.fake.api_calls("chat.postMessage")
                 if accepted(c) and not c.body.get("thread_ts") and f"is pulling `{img.ref}`" in c.text]
        return found[0] if found else None

    def ts(self, img) -> str:
        return self.announcement(img).response["ts"]

    def shown(self, img) -> str:
        """What the channel shows now (the message's latest accepted state)."""
        return message_text(self.fake.messages[(CHANNEL, self.ts(img))])

    def records(self, img):
        return [c for c in self.fake.api_calls("chat.postMessage")
                if accepted(c) and c.body.get("thread_ts") == self.ts(img)]

    def finished(self, img) -> bool:
        return self.announcement(img) is not None and f"<@UALICE> pulled `{img.ref}`" in self.shown(img) \
            and bool(self.records(img))

    async def wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.finished(img) for img in self.images):
            if time.monotonic() > deadline:
                state = {img.ref: (self.shown(img)[:120] if self.announcement(img) else "not posted")
                         for img in self.images}
                raise AssertionError(f"not every pull ended in its final state: {state}")
            await asyncio.sleep(0.05)


def within(calls, rate: float, burst: float, jitter: float = 0.2) -> bool:
    """True when ``calls`` never exceed ``burst`` plus ``rate`` a second over any
    stretch of time (as the fake saw them arrive: ``jitter`` seconds of leeway
    for calls that left on time and arrived late)."""
    times = sorted(c.at for c in calls)
    return all(j - i + 1 <= burst + rate * (times[j] - times[i] + jitter)
               for i in range(len(times)) for j in range(i, len(times)))


async def test_five_concurrent_pulls_in_one_channel_stay_within_the_budget(slack_app, engine_services, fake_slack,
                                                                            remote_images):
    fake_slack.enforce_rate_limits = True
    images = remote_images(5, size=40_000_000)  # pulls long enough to show progress
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    sent = await asyncio.gather(*(h.command("/pull", img.ref) for img in images))
    assert all(s.status == 200 and s.body == "" for s in sent)
    pulls = Pulls(fake_slack, images)
    await pulls.wait()
    await asyncio.sleep(1.5)  # anything still queued would arrive now and overwrite a final state

    assert fake_slack.ratelimited == [], "the budget keeps every call within Slack's limits"
    for img in images:
        shown = pulls.shown(img)
        assert f":white_check_mark: <@UALICE> pulled `{img.ref}`" in shown, shown[:300]
        assert "Status: Downloaded newer image" in shown
        updates = [c for c in fake_slack.api_calls("chat.update") if c.body.get("ts") == pulls.ts(img)]
        assert "pulled" in updates[-1].text and not any("pulled" in c.text for c in updates[:-1])
        assert len(pulls.records(img)) == 1
    for s in sent:
        assert fake_slack.responses(s.rid) == [], "nobody is told anything but the channel message"
    calls = [c for c in fake_slack.api_calls() if c.name in ("chat.update", "chat.postMessage")]
    assert all(accepted(c) and message_problems(c.body) == [] for c in calls)
    assert not any("ratelimited" in c.text or ":x:" in c.text for c in calls)

    updates = fake_slack.api_calls("chat.update")
    posts = fake_slack.api_calls("chat.postMessage")
    assert len(posts) == 10  # five announcements, five thread records
    assert within(updates, rate=ratelimit.TIER3_PER_MINUTE / 60, burst=ratelimit.UPDATE_BURST), \
        [round(c.at - updates[0].at, 2) for c in updates]
    assert within(posts, rate=ratelimit.POST_PER_SECOND, burst=ratelimit.POST_BURST), \
        [round(c.at - posts[0].at, 2) for c in posts]


async def test_a_429_is_waited_out_and_retried_and_nobody_sees_it(slack_app, engine_services, fake_slack,
                                                                  remote_images):
    # a Slack stricter than the budget assumes: the app meets 429s and must wait them out
    fake_slack.enforce_rate_limits = True
    fake_slack.rate_limits["chat.update"] = RateRule(0.5, 2)
    fake_slack.rate_limits["chat.postMessage"] = RateRule(1.0, 2, per_channel=True)
    images = remote_images(3)
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    sent = await asyncio.gather(*(h.command("/pull", img.ref) for img in images))
    pulls = Pulls(fake_slack, images)
    await pulls.wait()

    limited = list(fake_slack.ratelimited)
    assert limited, "this Slack is stricter than the budget: it said 429"
    assert all(c.status == 429 and c.retry_after >= 1 and c.response == {"ok": False, "error": "ratelimited"}
               for c in limited)
    for r in limited:
        same = [c for c in fake_slack.api_calls(r.name) if c is not r]
        # everyone waits: no call of that method (calls already on their way aside) before Retry-After
        early = [c for c in same if r.at + 0.3 < c.at < r.at + r.retry_after - 0.05]
        assert early == [], (r.name, r.retry_after, [round(c.at - r.at, 2) for c in early])
        if r.name == "chat.postMessage" or "pulled" in r.text:  # a state that must arrive: retried as it was
            assert any(accepted(c) and c.text == r.text and c.at >= r.at + r.retry_after - 0.05 for c in same)
    for img in images:
        assert f":white_check_mark: <@UALICE> pulled `{img.ref}`" in pulls.shown(img)
        assert len(pulls.records(img)) == 1
    for s in sent:
        assert fake_slack.responses(s.rid) == []

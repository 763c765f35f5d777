"""The app's one Slack rate budget (bot/slack/ratelimit.py), on an injected clock.

The limiter reads the time from ``clock``; a test moves that clock, then
``wake()``s the pump and lets the event loop run (``settle``). No test
sleeps for real."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.slack import ratelimit
from bot.slack.ratelimit import MethodLimiter, OtherMethodsRateLimitRetryHandler, SlackBudget, TokenBucket


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def advance(limiter: MethodLimiter, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    limiter.wake()
    await settle()


class Slack:
    """Records the calls the limiter lets through, in order; ``fail`` answers
    a label with an exception (once per entry in the list)."""

    def __init__(self):
        self.sent: list[str] = []
        self.fail: dict[str, list[Exception]] = {}
        self.hold: dict[str, asyncio.Event] = {}

    def call(self, label: str):
        async def make():
            self.sent.append(label)
            if label in self.hold:
                await self.hold[label].wait()
            errors = self.fail.get(label)
            if errors:
                raise errors.pop(0)
            return {"ok": True, "label": label}

        return make


def slack_error(status: int, error: str, headers: dict | None = None) -> SlackApiError:
    response = AsyncSlackResponse(client=None, http_verb="POST", api_url="https://slack.com/api/chat.update",
                                  req_args={}, data={"ok": False, "error": error}, headers=headers or {},
                                  status_code=status)
    return SlackApiError("The request to the Slack API failed.", response)


def limiter(clock: Clock, **kw) -> MethodLimiter:
    kw.setdefault("rate", 1.0)
    kw.setdefault("burst", 2)
    return MethodLimiter("chat.update", clock=clock, **kw)


# --- the bucket ------------------------------------------------------------------

def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    b = TokenBucket(rate=50 / 60, burst=6, now=0.0)
    for _ in range(6):
        assert b.wait(0.0) == 0
        b.take(0.0)
    assert b.wait(0.0) == pytest.approx(1.2)  # 60/50 s for the next token
    assert b.wait(0.0, keep=3) == pytest.approx(4.8)
    assert b.wait(1.2) == 0
    assert b.full(1000.0) and b.tokens == 6  # never more than the burst saved up
    b.drain(1000.0)
    assert b.wait(1000.0) == pytest.approx(1.2)


def test_the_slack_budget_is_slacks_documented_one():
    budget = SlackBudget()
    update, post = budget["chat.update"], budget["chat.postMessage"]
    assert update.rate * 60 == pytest.approx(50) and not update.per_channel  # Tier 3, the whole app
    assert post.rate == 1.0 and post.per_channel  # one a second per channel
    assert 1 < post.burst <= 4 and 1 < update.burst <= 10  # short bursts
    assert 0 < update.interim_reserve < update.burst


# --- priorities ------------------------------------------------------------------

async def test_a_final_state_overtakes_queued_interim_updates():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=4, interim_reserve=2)
    for label in ("f1", "f2", "f3", "f4"):  # the burst is spent
        lim.submit(slack.call(label))
    await settle()
    assert slack.sent == ["f1", "f2", "f3", "f4"]
    interims = [lim.submit(slack.call(f"progress {m}"), key=("C", m), interim=True) for m in "ABC"]
    final = lim.submit(slack.call("pulled D"), key=("C", "D"))
    await advance(lim, clock, 1.0)  # one token: enough for a final, not for an interim
    assert slack.sent[4:] == ["pulled D"]
    assert (await final)["label"] == "pulled D"
    assert not any(f.done() for f in interims)
    await advance(lim, clock, 3.0)  # three tokens: interims leave two for finals
    assert slack.sent[5:] == ["progress A"]
    await advance(lim, clock, 1.0)
    assert slack.sent[6:] == ["progress B"]
    late_final = lim.submit(slack.call("pulled E"), key=("C", "E"))
    await settle()
    assert slack.sent[7:] == ["pulled E"], "the reserve lets a final go at once"
    assert (await late_final)["ok"]


async def test_finals_queued_together_go_first_in_order():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=6, interim_reserve=3)
    lim.submit(slack.call("progress A"), key="A", interim=True)
    lim.submit(slack.call("progress B"), key="B", interim=True)
    lim.submit(slack.call("final C"), key="C")
    lim.submit(slack.call("final D"), key="D")
    await settle()
    assert slack.sent == ["final C", "final D", "progress A"]  # the reserve keeps B waiting


async def test_interim_states_of_one_message_are_coalesced():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=2, interim_reserve=0)
    first = lim.submit(slack.call("A 10%"), key="A", interim=True)
    await settle()
    older = [lim.submit(slack.call(f"A {p}%"), key="A", interim=True) for p in (20, 30, 40)]
    newest = lim.submit(slack.call("A 50%"), key="A", interim=True)
    await settle()
    assert slack.sent == ["A 10%"], "at most one interim a second per message"
    assert [await f for f in older] == [None, None, None]  # replaced while they waited
    await advance(lim, clock, 1.0)
    assert slack.sent == ["A 10%", "A 50%"]
    assert (await first)["ok"] and (await newest)["label"] == "A 50%"
    assert lim.stats["coalesced"] == 3


async def test_a_replaced_interim_keeps_its_messages_turn():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=2, interim_reserve=0)
    lim.submit(slack.call("x"))
    lim.submit(slack.call("y"))
    await settle()
    lim.submit(slack.call("A 1"), key="A", interim=True)
    lim.submit(slack.call("B 1"), key="B", interim=True)
    lim.submit(slack.call("A 2"), key="A", interim=True)
    await advance(lim, clock, 1.0)
    assert slack.sent[2:] == ["A 2"]  # A was waiting first: it keeps its place with its newest state
    await advance(lim, clock, 1.0)
    assert slack.sent[3:] == ["B 1"]


async def test_the_final_state_drops_its_own_waiting_interim_and_later_ones():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=2, interim_reserve=1)
    lim.submit(slack.call("other"))
    await settle()
    waiting = lim.submit(slack.call("A progress"), key="A", interim=True)
    final = lim.submit(slack.call("A pulled"), key="A")
    late = lim.submit(slack.call("A stale progress"), key="A", interim=True)
    await settle()
    assert await waiting is None and await late is None
    assert (await final)["label"] == "A pulled"
    await advance(lim, clock, 10.0)
    assert slack.sent == ["other", "A pulled"], "nothing overwrites the final state"


async def test_one_call_per_message_at_a_time():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=10.0, burst=10, interim_reserve=0)
    slack.hold["A progress"] = asyncio.Event()
    lim.submit(slack.call("A progress"), key="A", interim=True)
    await settle()
    final = lim.submit(slack.call("A pulled"), key="A")
    other = lim.submit(slack.call("B pulled"), key="B")
    await settle()
    assert slack.sent == ["A progress", "B pulled"], "the final waits for the update in flight"
    assert (await other)["ok"]
    slack.hold["A progress"].set()
    await settle()
    assert slack.sent[-1] == "A pulled" and (await final)["ok"]


async def test_post_message_is_counted_per_channel():
    clock, slack = Clock(), Slack()
    lim = MethodLimiter("chat.postMessage", rate=1.0, burst=1, per_channel=True, clock=clock)
    one = lim.submit(slack.call("C1 first"), channel="C1")
    two = lim.submit(slack.call("C1 second"), channel="C1")
    other = lim.submit(slack.call("C2 first"), channel="C2")
    await settle()
    assert slack.sent == ["C1 first", "C2 first"]  # C1's second message does not hold up C2
    assert (await one)["ok"] and (await other)["ok"] and not two.done()
    await advance(lim, clock, 0.5)
    assert not two.done()
    await advance(lim, clock, 0.5)
    assert slack.sent[-1] == "C1 second" and (await two)["ok"]


# --- 429 ----------------------------------------------------------------------------

async def test_a_429_is_waited_out_by_everyone_then_retried():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=10.0, burst=10, interim_reserve=0)
    slack.fail["A pulled"] = [slack_error(429, "ratelimited", {"Retry-After": "3"})]
    first = lim.submit(slack.call("A pulled"), key="A")
    await settle()
    assert slack.sent == ["A pulled"] and not first.done()
    assert lim.paused_until == pytest.approx(clock.now + 3)
    second = lim.submit(slack.call("B pulled"), key="B")
    progress = lim.submit(slack.call("C progress"), key="C", interim=True)
    await advance(lim, clock, 2.9)
    assert slack.sent == ["A pulled"], "nobody calls the method before Retry-After has passed"
    await advance(lim, clock, 0.1)
    assert slack.sent[1] == "A pulled", "the call that met the 429 goes first"
    assert (await first)["label"] == "A pulled" and (await second)["ok"]
    await advance(lim, clock, 1.0)
    assert (await progress)["ok"]
    assert sorted(slack.sent[2:]) == ["B pulled", "C progress"]
    assert lim.stats["ratelimited"] == 1


async def test_a_429_without_retry_after_waits_a_second():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=10.0, burst=10)
    slack.fail["x"] = [slack_error(429, "ratelimited")]
    done = lim.submit(slack.call("x"))
    await settle()
    await advance(lim, clock, 0.9)
    assert slack.sent == ["x"]
    await advance(lim, clock, 0.1)
    assert slack.sent == ["x", "x"] and (await done)["ok"]


async def test_retries_are_bounded():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=10.0, burst=10, max_retries=2)
    slack.fail["x"] = [slack_error(429, "ratelimited", {"retry-after": "1"}) for _ in range(5)]
    done = lim.submit(slack.call("x"))
    for _ in range(4):
        await advance(lim, clock, 1.0)
    with pytest.raises(SlackApiError):
        await done
    assert slack.sent == ["x", "x", "x"] and lim.stats["gave_up"] == 1


async def test_other_errors_reach_the_caller_at_once():
    clock, slack = Clock(), Slack()
    lim = limiter(clock)
    slack.fail["x"] = [slack_error(200, "message_not_found")]
    with pytest.raises(SlackApiError):
        await lim.submit(slack.call("x"))
    assert lim.paused_until == float("-inf") and slack.sent == ["x"]


@pytest.mark.parametrize("headers,seconds", [
    ({"Retry-After": "30"}, 30.0), ({"retry-after": ["2"]}, 2.0), ({}, 1.0), ({"Retry-After": "soon"}, 1.0),
    ({"Retry-After": "99999"}, ratelimit.MAX_RETRY_AFTER),
])
def test_retry_after_is_read_from_the_429(headers, seconds):
    assert ratelimit.retry_after(slack_error(429, "ratelimited", headers)) == seconds


def test_only_a_429_has_a_retry_after():
    assert ratelimit.retry_after(slack_error(200, "channel_not_found", {"Retry-After": "3"})) is None
    assert ratelimit.retry_after(RuntimeError("boom")) is None


async def test_the_sdk_retries_429s_only_of_the_methods_the_budget_does_not_limit():
    handler = OtherMethodsRateLimitRetryHandler(max_retry_count=2)
    response = HttpResponse(status_code=429, headers={"Retry-After": "1"})

    async def retries(method: str) -> bool:
        request = HttpRequest(method="POST", url=f"https://slack.com/api/{method}", headers={})
        return await handler.can_retry_async(state=RetryState(), request=request, response=response)

    assert not await retries("chat.update") and not await retries("chat.postMessage")
    assert await retries("usergroups.users.list") and await retries("auth.test")


# --- one budget, bounded ----------------------------------------------------------

async def test_every_client_of_one_app_shares_one_budget():
    class Client:
        def __init__(self, token, base_url="https://slack.com/api/"):
            self.token, self.base_url = token, base_url

    # Bolt gives every listener a client of its own, with the app's token
    assert ratelimit.for_client(Client("xoxb-1")) is ratelimit.for_client(Client("xoxb-1"))
    assert ratelimit.for_client(Client("xoxb-1")) is not ratelimit.for_client(Client("xoxb-2"))
    assert ratelimit.for_client(Client("xoxb-1")) is not ratelimit.for_client(Client("xoxb-1", "http://fake/api/"))


async def test_waiting_interims_are_bounded():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=1, max_interims=10)
    lim.submit(slack.call("spend"))
    await settle()
    futures = [lim.submit(slack.call(f"m{i}"), key=i, interim=True) for i in range(50)]
    assert lim.waiting == 10
    assert all(f.done() and f.result() is None for f in futures[:40])  # the oldest were dropped
    assert not any(f.done() for f in futures[40:])


async def test_per_channel_buckets_and_per_message_memory_are_bounded():
    clock, slack = Clock(), Slack()
    lim = MethodLimiter("chat.postMessage", rate=1.0, burst=1, per_channel=True, clock=clock, max_lanes=5,
                        max_keys=8)
    for i in range(40):
        await lim.submit(slack.call(f"C{i}"), channel=f"C{i}", key=("C", i))
        clock.now += 0.1
    assert len(slack.sent) == 40
    assert len(lim._buckets) <= 5 and len(lim._finished) <= 8
    update = limiter(clock, rate=100.0, burst=100, interim_reserve=0, max_keys=8)
    for i in range(40):
        await update.submit(slack.call(f"p{i}"), key=i, interim=True)
    assert len(update._last_interim) <= 8


async def test_a_caller_that_gives_up_is_not_called():
    clock, slack = Clock(), Slack()
    lim = limiter(clock, rate=1.0, burst=1)
    lim.submit(slack.call("spend"))
    await settle()
    gone = lim.submit(slack.call("cancelled"), key="A")
    gone.cancel()
    await advance(lim, clock, 5.0)
    assert slack.sent == ["spend"] and lim.waiting == 0


def test_an_interim_needs_its_message_and_the_reserve_leaves_it_room():
    with pytest.raises(ValueError):
        MethodLimiter("chat.update", rate=1, burst=2, interim_reserve=2)

    async def run():
        lim = limiter(Clock())
        with pytest.raises(ValueError):
            lim.submit(Slack().call("x"), interim=True)

    asyncio.run(run())


# --- the removals' messages share it ---------------------------------------------------

class RecordingClient:
    """An AsyncWebClient stand-in: the app's token and URL, calls recorded."""

    def __init__(self, token: str):
        self.token, self.base_url = token, "http://fake-slack/api/"
        self.calls: list[tuple[str, dict]] = []

    async def chat_update(self, **kwargs):
        self.calls.append(("chat.update", kwargs))
        return {"ok": True, "channel": kwargs["channel"], "ts": kwargs["ts"]}

    async def chat_postMessage(self, **kwargs):
        self.calls.append(("chat.postMessage", kwargs))
        return {"ok": True, "channel": kwargs["channel"], "ts": "2.000001"}


async def test_a_removals_running_state_waits_in_line_and_its_result_goes_first():
    from handlers.ports import Operation

    from bot.slack import operations as slack_operations

    client = RecordingClient("xoxb-removal-test")
    budget = ratelimit.for_client(client)
    for i in range(ratelimit.UPDATE_BURST - ratelimit.INTERIM_RESERVE):  # other messages' finals
        await budget.call("chat.update", lambda i=i: client.chat_update(channel="C1", ts=f"9.{i}"), key=("C1", i))
    op = Operation(id="a" * 32, kind="rmi", command="docker rmi x", host="h", requester="UALICE",
                   message={"channel": "C1", "ts": "1.000001"})
    running = Operation(**{**op.__dict__, "state": "running"})
    done = Operation(**{**op.__dict__, "state": "done"})
    message = {"text": "t", "blocks": []}
    assert await slack_operations._update(None, client, running, {**message, "text": "running"}) is True
    assert len(client.calls) == 3, "the removal goes on; its progress waits for the budget's reserve"
    assert await slack_operations._update(None, client, done, {**message, "text": "done"}) is True
    await settle()
    texts = [kw.get("text") for _, kw in client.calls]
    assert texts[-1] == "done" and "running" not in texts  # replaced while it waited for the budget
    assert await slack_operations._post(client, "C1", "*Record*", thread_ts="1.000001") == "2.000001"
    assert budget["chat.postMessage"].stats["sent"] == 1 and budget["chat.update"].stats["coalesced"] == 1

"""One Slack rate budget for the whole app.

Slack limits Web API calls per method, per app, per workspace
(https://api.slack.com/docs/rate-limits), not per message:

* ``chat.update`` is Tier 3: "50+ per minute", "sporadic bursts are welcome";
* ``chat.postMessage`` has its own tier: "generally allows posting one message
  per second per channel" ("short bursts >1 allowed"), within a
  workspace-wide limit;
* over a limit Slack answers HTTP 429, ``{"ok": false, "error": "ratelimited"}``
  and a ``Retry-After`` header: the seconds to wait before calling that
  method again.

So every ``chat.update`` and ``chat.postMessage`` of Dockhand (pull progress
and results, the removals' audit messages and thread records, shares) goes
through ONE :class:`MethodLimiter` per method, found with :func:`for_client`:

* a token bucket per method (``chat.update``) or per channel
  (``chat.postMessage``) spends the budget;
* **interim** states (pull progress) are coalesced: a message has at most one
  interim waiting, and a newer one takes its place (and its turn in line);
  each message gets at most one interim a second, and interims leave
  :data:`INTERIM_RESERVE` tokens of the burst untouched;
* a message's **final** state goes before every interim that waits (its own
  waiting interim is dropped, later ones are ignored), as soon as a token is
  there: never behind a per-message interval;
* one call per message at a time, so updates of a message never overtake
  each other;
* a 429 pauses the whole method for ``Retry-After`` seconds (everyone waits)
  and the call is retried (at most :data:`MAX_RETRIES` times); this module
  owns 429s of the methods it limits: the SDK's own retry handler is kept
  for the other methods only (:class:`OtherMethodsRateLimitRetryHandler`).

Memory and work are bounded: at most :data:`MAX_INTERIMS` interims wait (the
oldest is dropped), idle per-channel buckets are forgotten, per-message
bookkeeping is capped (:data:`MAX_KEYS`), and finals are only as many as the
callers awaiting them.

Bolt hands each listener its own ``AsyncWebClient`` (same token, same base
URL); Slack's budget belongs to the app in the workspace, which the token
names, so :func:`for_client` shares one :class:`SlackBudget` per (event loop,
API URL, token).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Hashable, Optional

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

log = logging.getLogger("dockhand.slack")

Call = Callable[[], Awaitable[Any]]

TIER3_PER_MINUTE = 50  # chat.update: Slack's Tier 3, "50+ per minute"
UPDATE_BURST = 6  # chat.update tokens that may go at once ("sporadic bursts")
INTERIM_RESERVE = 3  # chat.update tokens interims leave for final states
POST_PER_SECOND = 1.0  # chat.postMessage: "one message per second per channel"
POST_BURST = 3  # chat.postMessage: "short bursts >1 allowed"
INTERIM_INTERVAL = 1.0  # seconds between two interim states of one message
MAX_RETRIES = 5  # 429s one call may meet before its caller gets the error
MAX_RETRY_AFTER = 300.0  # seconds: a larger Retry-After is read as this
DEFAULT_RETRY_AFTER = 1.0  # seconds, for a 429 without a usable Retry-After
MAX_INTERIMS = 1000  # interim states waiting at most (one per message)
MAX_LANES = 1000  # per-channel buckets kept at most
MAX_KEYS = 4096  # messages remembered (last interim, final sent)
TIER4_PER_MINUTE = 100  # views.publish: Slack's Tier 4, "100+ per minute"
PUBLISH_BURST = 8  # views.publish tokens that may go at once (Slack publishes no burst size: stay modest)
HOME_INTERVAL = 5.0  # seconds between two Home tab publishes for one person (newest wins)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; full at start."""

    def __init__(self, rate: float, burst: float, now: float):
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and room for one token")
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float, keep: float = 0.0) -> float:
        """Seconds until a token can be taken with ``keep`` tokens left over."""
        self._refill(now)
        missing = 1.0 + keep - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def drain(self, now: float) -> None:
        """Slack said "too many": nothing saved up any more."""
        self._refill(now)
        self.tokens = min(self.tokens, 0.0)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


@dataclass(eq=False)
class _Entry:
    call: Call
    lane: Hashable  # which bucket pays: "" (the method) or a channel
    key: Optional[Hashable]  # which message: (channel, ts), or None
    interim: bool
    future: asyncio.Future
    tries: int = 0


def retry_after(exc: BaseException) -> Optional[float]:
    """Seconds Slack asked to wait, when ``exc`` is a 429 answer; else None."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    status = getattr(response, "status_code", None)
    try:
        error = response.get("error")
    except Exception:  # noqa: BLE001 - not a SlackResponse
        error = None
    if status != 429 and error != "ratelimited":
        return None
    value: Any = None
    headers = getattr(response, "headers", None) or {}
    for name in list(headers.keys()):
        if str(name).lower() == "retry-after":
            value = headers[name]
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = DEFAULT_RETRY_AFTER
    if seconds != seconds:  # NaN
        seconds = DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class MethodLimiter:
    """The budget of one Web API method, shared by every caller.

    ``submit`` queues a call and returns a future for its result (``None``
    for an interim that was replaced or dropped before it was sent); one
    pump task sends what the budget allows, each call in a task of its own.
    ``clock`` tells the time for the budget (tests inject one, then
    :meth:`wake` the pump after moving it).
    """

    def __init__(self, method: str, *, rate: float, burst: float, per_channel: bool = False,
                 interim_reserve: float = 0.0, interim_interval: float = INTERIM_INTERVAL,
                 max_retries: int = MAX_RETRIES, max_interims: int = MAX_INTERIMS,
                 max_lanes: int = MAX_LANES, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic):
        if not 0 <= interim_reserve <= burst - 1:
            raise ValueError("interims must be able to use at least one token of the burst")
        self.method, self.rate, self.burst, self.per_channel = method, rate, burst, per_channel
        self.interim_reserve, self.interim_interval = interim_reserve, interim_interval
        self.max_retries, self.max_interims = max_retries, max_interims
        self.max_lanes, self.max_keys, self.clock = max_lanes, max_keys, clock
        self.paused_until = float("-inf")  # a 429's Retry-After: nobody calls the method before
        self._finals: deque[_Entry] = deque()
        self._interims: OrderedDict[Hashable, _Entry] = OrderedDict()  # message -> its newest interim, in turn
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self._busy: set[Hashable] = set()  # messages with a call in flight
        self._last_interim: OrderedDict[Hashable, float] = OrderedDict()
        self._finished: OrderedDict[Hashable, None] = OrderedDict()  # messages whose final state is queued
        self._wake: Optional[asyncio.Event] = None
        self._pump_task: Optional[asyncio.Task] = None
        self._running: set[asyncio.Task] = set()
        self.stats = {"sent": 0, "coalesced": 0, "dropped": 0, "ratelimited": 0, "gave_up": 0}

    # -- the callers' side

    def submit(self, call: Call, *, channel: str = "", key: Optional[Hashable] = None,
               interim: bool = False) -> asyncio.Future:
        """Queue ``call`` (a coroutine function making ONE Web API call).

        ``key`` names the message the call changes; an ``interim`` needs one.
        ``channel`` picks the bucket of a per-channel method."""
        if interim and key is None:
            raise ValueError("an interim state must name its message")
        future = asyncio.get_running_loop().create_future()
        entry = _Entry(call, channel if self.per_channel else "", key, interim, future)
        if interim:
            if key in self._finished:
                self._resolve(entry, None, "dropped")  # the final state is on its way
                return future
            older = self._interims.get(key)
            if older is not None:
                self._resolve(older, None, "coalesced")
            elif len(self._interims) >= self.max_interims:
                _, oldest = self._interims.popitem(last=False)
                self._resolve(oldest, None, "dropped")
            self._interims[key] = entry  # a replaced interim keeps its message's turn
        else:
            if key is not None:
                waiting = self._interims.pop(key, None)
                if waiting is not None:
                    self._resolve(waiting, None, "coalesced")
                self._remember(self._finished, key, None)
                self._last_interim.pop(key, None)
            self._finals.append(entry)
        self.wake()
        return future

    async def call(self, call: Call, **kwargs) -> Any:
        return await self.submit(call, **kwargs)

    def wake(self) -> None:
        """Look at the queue again (something was queued, or ``clock`` moved)."""
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if (self._finals or self._interims) and (self._pump_task is None or self._pump_task.done()):
            self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name=f"slack {self.method}")

    @property
    def waiting(self) -> int:
        return len(self._finals) + len(self._interims)

    # -- the pump

    async def _pump(self) -> None:
        while self._finals or self._interims:
            entry, wait = self._pick(self.clock())
            if entry is not None:
                self._start(entry)
                await asyncio.sleep(0)  # let it go out; callers keep their turn
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _bucket(self, lane: Hashable, now: float) -> TokenBucket:
        bucket = self._buckets.get(lane)
        if bucket is None:
            if len(self._buckets) >= self.max_lanes:
                self._forget_idle_lanes(now)
            bucket = self._buckets[lane] = TokenBucket(self.rate, self.burst, now)
        return bucket

    def _forget_idle_lanes(self, now: float) -> None:
        """A full bucket is the same as a new one: forget those (the oldest
        first), and the oldest of the rest if still too many."""
        for lane in [lane for lane, b in self._buckets.items() if b.full(now)]:
            del self._buckets[lane]
        while len(self._buckets) >= self.max_lanes:
            self._buckets.popitem(last=False)

    def _pick(self, now: float) -> tuple[Optional[_Entry], Optional[float]]:
        """The next call to make now, or how long until one may go (None:
        until a call in flight ends)."""
        if self.paused_until > now:
            return None, self.paused_until - now
        soonest: Optional[float] = None
        blocked: set[Hashable] = set()  # lanes where a final waits for a token
        for entry in list(self._finals):
            if entry.future.done():  # its caller gave up
                self._finals.remove(entry)
                continue
            if entry.key is not None and entry.key in self._busy:
                continue
            wait = self._bucket(entry.lane, now).wait(now)
            if wait <= 0:
                self._finals.remove(entry)
                return entry, 0.0
            blocked.add(entry.lane)
            soonest = wait if soonest is None else min(soonest, wait)
        for key, entry in list(self._interims.items()):
            if entry.future.done():
                del self._interims[key]
                continue
            if key in self._busy or entry.lane in blocked:
                continue
            due = self._last_interim.get(key, float("-inf")) + self.interim_interval - now
            wait = max(due, self._bucket(entry.lane, now).wait(now, keep=self.interim_reserve))
            if wait <= 0:
                del self._interims[key]
                return entry, 0.0
            soonest = wait if soonest is None else min(soonest, wait)
        return None, soonest

    def _start(self, entry: _Entry) -> None:
        now = self.clock()
        self._bucket(entry.lane, now).take(now)
        self._buckets.move_to_end(entry.lane)
        if entry.interim:
            self._remember(self._last_interim, entry.key, now)
        if entry.key is not None:
            self._busy.add(entry.key)
        task = asyncio.get_running_loop().create_task(self._run(entry))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, entry: _Entry) -> None:
        try:
            result = await entry.call()
        except asyncio.CancelledError:
            entry.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            seconds = retry_after(exc)
            if seconds is None:
                self._fail(entry, exc)
            elif entry.tries >= self.max_retries:
                self.stats["gave_up"] += 1
                log.error("%s: still rate limited after %d retries", self.method, entry.tries)
                self._fail(entry, exc)
            else:
                self._rate_limited(entry, seconds)
        else:
            self.stats["sent"] += 1
            if not entry.future.done():
                entry.future.set_result(result)
        finally:
            if entry.key is not None:
                self._busy.discard(entry.key)
            self.wake()

    def _rate_limited(self, entry: _Entry, seconds: float) -> None:
        """Slack answered 429: the whole method waits, then ``entry`` goes again first."""
        now = self.clock()
        self.stats["ratelimited"] += 1
        self.paused_until = max(self.paused_until, now + seconds)
        self._bucket(entry.lane, now).drain(now)
        log.warning("Slack rate limited %s: every %s call waits %.1fs", self.method, self.method, seconds)
        entry.tries += 1
        if not entry.interim:
            self._finals.appendleft(entry)
        elif entry.key in self._interims or entry.key in self._finished:
            self._resolve(entry, None, "coalesced")  # something newer took its place meanwhile
        else:
            self._interims[entry.key] = entry
            self._interims.move_to_end(entry.key, last=False)

    # -- bookkeeping

    def _resolve(self, entry: _Entry, result: Any, why: str) -> None:
        self.stats[why] += 1
        if not entry.future.done():
            entry.future.set_result(result)

    @staticmethod
    def _fail(entry: _Entry, exc: BaseException) -> None:
        if not entry.future.done():
            entry.future.set_exception(exc)

    def _remember(self, table: OrderedDict, key: Hashable, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_keys:
            table.popitem(last=False)


class SlackBudget:
    """The limiters of the methods Dockhand posts and updates with."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 overrides: Optional[dict[str, dict[str, Any]]] = None):
        """``overrides``: keyword arguments of a method's limiter, by method."""
        overrides = overrides or {}
        self.limiters: dict[str, MethodLimiter] = {
            "chat.update": MethodLimiter("chat.update", rate=TIER3_PER_MINUTE / 60.0, burst=UPDATE_BURST,
                                         interim_reserve=INTERIM_RESERVE, clock=clock,
                                         **overrides.get("chat.update", {})),
            "chat.postMessage": MethodLimiter("chat.postMessage", rate=POST_PER_SECOND, burst=POST_BURST,
                                              per_channel=True, clock=clock,
                                              **overrides.get("chat.postMessage", {})),
            # Home tabs: every publish is an interim keyed by its person (bot/slack/home.py), so
            # a burst of openings is one publish now and at most one more every HOME_INTERVAL.
            "views.publish": MethodLimiter("views.publish", rate=TIER4_PER_MINUTE / 60.0, burst=PUBLISH_BURST,
                                           interim_interval=HOME_INTERVAL, clock=clock,
                                           **overrides.get("views.publish", {})),
        }

    def __getitem__(self, method: str) -> MethodLimiter:
        return self.limiters[method]

    def submit(self, method: str, call: Call, **kwargs: Any) -> asyncio.Future:
        return self.limiters[method].submit(call, **kwargs)

    async def call(self, method: str, call: Call, **kwargs: Any) -> Any:
        """Make ``call`` when ``method``'s budget allows; its result (a final
        state: never coalesced) or its exception."""
        return await self.limiters[method].submit(call, **kwargs)


LIMITED_METHODS = frozenset({"chat.update", "chat.postMessage", "views.publish"})

_budgets: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], SlackBudget]]" = \
    weakref.WeakKeyDictionary()


def for_client(client) -> SlackBudget:
    """The one budget of the app that ``client`` calls Slack as."""
    loop = asyncio.get_running_loop()
    token = str(getattr(client, "token", "") or "")
    key = (str(getattr(client, "base_url", "") or ""), hashlib.sha256(token.encode()).hexdigest())
    per_loop = _budgets.setdefault(loop, {})
    budget = per_loop.get(key)
    if budget is None:
        budget = per_loop[key] = SlackBudget()
    return budget


def log_failure(what: str) -> Callable[[asyncio.Future], None]:
    """A done-callback for a call nobody awaits (an interim state): log its error."""

    def done(future: asyncio.Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            try:
                error = str(exc.response["error"])  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                error = type(exc).__name__
            log.error("%s failed: %s", what, error)

    return done


class OtherMethodsRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's retry on 429, for the methods the budget does not limit
    (``usergroups.users.list``, ``auth.test``…). A 429 of ``chat.update`` or
    ``chat.postMessage`` goes to its :class:`MethodLimiter` instead, which
    pauses every caller of the method, not only the one that met it."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        method = str(getattr(request, "url", "")).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if method in LIMITED_METHODS:
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)

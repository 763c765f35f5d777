"""One pull per image per host: concurrent requests share one engine pull.

Two people asking for ``nginx:1.27`` on the same host a second apart should
not start two transfers from the registry. :class:`PullHub` keeps the pulls in
flight by (host, reference); the first request starts the engine's pull in a
task of its own, and every request for the same reference while it runs
*joins* it: it gets the events seen so far, then the live ones, and ends the
way the pull ends (done, or the same error). A request that goes away (its
command cancelled) only leaves; the transfer stops when nobody is left.

Front ends may attach their own data to a pull in flight (``note``), e.g. the
Slack message the first request posted, so that a later request joins that
message instead of posting its own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from .ports import Engine, PullEvent
from .records import record

_END = object()


@dataclass
class _Shared:
    events: list[PullEvent] = field(default_factory=list)
    queues: list[asyncio.Queue] = field(default_factory=list)
    outcome: BaseException | None = None
    finished: bool = False
    task: asyncio.Task | None = None
    requests: int = 0  # how many requests joined (the first included)
    note: dict = field(default_factory=dict)  # front ends' data about this pull
    started: float = field(default_factory=time.monotonic)


@record
class PullInFlight:
    """A pull running now, as a summary (the Home tab lists them)."""

    host: str
    repository: str
    tag: str  # or digest
    platform: str
    requests: int  # how many requests share it
    seconds: float  # since it started
    done: int  # bytes received so far (layers that said how many)
    total: int  # bytes of those layers


class PullHub:
    def __init__(self) -> None:
        self._pulls: dict[tuple[str, str, str, str], _Shared] = {}

    def in_flight(self, host: str, repository: str, tag: str, platform: str = "") -> _Shared | None:
        shared = self._pulls.get((host, repository, tag, platform))
        return shared if shared is not None and not shared.finished else None

    def note(self, host: str, repository: str, tag: str, platform: str = "") -> dict | None:
        """The front ends' notes on a pull in flight (None when there is none)."""
        shared = self.in_flight(host, repository, tag, platform)
        return shared.note if shared is not None else None

    def active(self, host: str | None = None, *, limit: int = 50) -> list[PullInFlight]:
        """The pulls running now (on ``host``, or everywhere), oldest first, at most ``limit``."""
        now = time.monotonic()
        out = []
        for (h, repository, tag, platform), shared in list(self._pulls.items()):
            if shared.finished or (host is not None and h != host):
                continue
            layers: dict[str, tuple[int, int]] = {}
            for ev in shared.events:
                if ev.id and ev.total and ev.status == "Downloading":  # not Extracting: bytes received
                    layers[ev.id] = (ev.current, ev.total)
                elif ev.id and ev.status in ("Pull complete", "Download complete", "Already exists") and ev.id in layers:
                    layers[ev.id] = (layers[ev.id][1], layers[ev.id][1])
            out.append(PullInFlight(h, repository, tag, platform, shared.requests, max(0.0, now - shared.started),
                                    sum(c for c, _ in layers.values()), sum(t for _, t in layers.values())))
        out.sort(key=lambda p: -p.seconds)
        return out[:limit]

    async def stream(self, engine: Engine, host: str, repository: str, tag: str,
                     **options: Any) -> AsyncIterator[PullEvent]:
        """The events of the pull of ``repository:tag`` on ``host``: the
        engine's own stream for the first request, a copy for later ones."""
        key = (host, repository, tag, str(options.get("platform") or ""))  # another platform is another pull
        shared = self.in_flight(*key)
        if shared is None:
            shared = _Shared()
            self._pulls[key] = shared
            shared.task = asyncio.ensure_future(self._pump(key, shared, engine.pull(repository, tag, **options)))
        shared.requests += 1
        queue: asyncio.Queue = asyncio.Queue()
        for ev in shared.events:
            queue.put_nowait(ev)
        shared.queues.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    if shared.outcome is not None:
                        raise shared.outcome
                    return
                yield item
        finally:
            if queue in shared.queues:
                shared.queues.remove(queue)
            if not shared.queues and not shared.finished and shared.task is not None:
                shared.task.cancel()  # nobody is listening any more: stop the transfer

    async def _pump(self, key, shared: _Shared, events: AsyncIterator[PullEvent]) -> None:
        try:
            async for ev in events:
                shared.events.append(ev)
                for q in list(shared.queues):
                    q.put_nowait(ev)
        except asyncio.CancelledError:
            shared.outcome = asyncio.CancelledError()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to every request, which raises it
            shared.outcome = exc
        finally:
            shared.finished = True
            if self._pulls.get(key) is shared:
                del self._pulls[key]
            close = getattr(events, "aclose", None)
            if close is not None:
                try:
                    await close()
                except BaseException:  # noqa: BLE001
                    pass
            for q in list(shared.queues):
                q.put_nowait(_END)

"""One pull per image per host (handlers/pullhub.py), through dispatch."""

from __future__ import annotations

import asyncio

import pytest

from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.errors import RegistryUnreachable
from handlers.ports import PullEvent
from handlers.pullhub import PullHub
from tests.unit.fake_engine import FakeEngine

ME = Actor("root", "root", via="shell")


class GatedEngine(FakeEngine):
    """A pull that sends its header, then waits for ``release`` before ending."""

    def __init__(self, fail=None):
        super().__init__()
        self.release = asyncio.Event()
        self.started = 0
        self.cancelled = 0
        self.fail_with = fail

    async def pull(self, repository, tag, **options):
        self.started += 1
        try:
            yield PullEvent(status=f"Pulling from {repository.split('/', 1)[-1]}", id=tag)
            yield PullEvent(status="Downloading", id="aaaaaaaaaaaa", current=1, total=2)
            await self.release.wait()
            if self.fail_with is not None:
                raise self.fail_with
            yield PullEvent(status="Pull complete", id="aaaaaaaaaaaa")
            yield PullEvent(status=f"Status: Downloaded newer image for {repository}:{tag}")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def inspect_image(self, ref):
        return {"Id": "sha256:" + "b" * 64}


async def _until(predicate, timeout=2.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_two_requests_for_one_image_share_one_engine_pull_and_both_are_answered():
    engine = GatedEngine()
    s = Services(engine=engine, host_label="h")
    first = asyncio.ensure_future(dispatch("pull 127.0.0.1:5000/x:1", ME, s))
    await _until(lambda: engine.started == 1)
    second = asyncio.ensure_future(dispatch("docker image pull 127.0.0.1:5000/x:1", ME, s))
    other = asyncio.ensure_future(dispatch("pull 127.0.0.1:5000/x:2", ME, s))  # another tag: its own pull
    await _until(lambda: engine.started == 2)
    await asyncio.sleep(0.05)
    engine.release.set()
    replies = await asyncio.gather(first, second, other)
    assert engine.started == 2
    assert all(r.ok for r in replies)
    assert all("aaaaaaaaaaaa: Pull complete" in r.parts[0].text for r in replies[:2])
    assert s.pulls.in_flight("h", "127.0.0.1:5000/x", "1") is None  # forgotten once done


async def test_an_error_reaches_every_request():
    engine = GatedEngine(fail=RegistryUnreachable("Error response from daemon: dial tcp: connection refused"))
    s = Services(engine=engine, host_label="h")
    first = asyncio.ensure_future(dispatch("pull 127.0.0.1:5000/x:1", ME, s))
    await _until(lambda: engine.started == 1)
    second = asyncio.ensure_future(dispatch("pull 127.0.0.1:5000/x:1", ME, s))
    await asyncio.sleep(0.05)
    engine.release.set()
    replies = await asyncio.gather(first, second)
    assert engine.started == 1 and all(not r.ok and "connection refused" in r.parts[-1].message for r in replies)


async def test_one_request_leaving_does_not_stop_the_other_and_the_last_one_stops_the_transfer():
    engine = GatedEngine()
    hub = PullHub()

    async def consume():
        return [ev async for ev in hub.stream(engine, "h", "r", "1")]

    a, b = asyncio.ensure_future(consume()), asyncio.ensure_future(consume())
    await _until(lambda: engine.started == 1)
    await asyncio.sleep(0.02)
    a.cancel()
    await asyncio.sleep(0.02)
    assert engine.cancelled == 0
    engine.release.set()
    assert len(await b) == 4
    engine.release.clear()
    c = asyncio.ensure_future(consume())  # a new pull, then its only request goes away
    await _until(lambda: engine.started == 2)
    await asyncio.sleep(0.02)
    c.cancel()
    with pytest.raises(asyncio.CancelledError):
        await c
    await _until(lambda: engine.cancelled == 1)

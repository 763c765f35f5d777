"""Fair shares of the registry lane, on the private engine.

The reported case: one person's twelve calls to a registry that answers
slowly took every registry slot, and another person's ``search ubuntu``
waited behind them (159 s). Here, through ``dispatch`` as people use it:

* one person starts twelve slow searches (the fake index's ``slow-N`` hook),
  or twelve pulls from a registry of the test's own that answers every
  manifest request only after ``SLOW`` seconds; another person's
  ``search ubuntu`` is answered within a few seconds, and the registry calls
  in flight, counted where they arrive, never exceed the lane's bound;
* many people's slow searches on one index do not hold up a search on another.

The indexes are the stack's fake index behind small counting proxies on
127.0.0.1 (each proxy is a registry of its own to the engine and to the lane),
so "in flight" is what the index sees, not what Dockhand believes.
Before the fair lane, every case here waited the full ``SLOW`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.config import Settings
from bot.wiring import build_services, close_services
from handlers.dispatch import dispatch
from handlers.context import Actor
from handlers.replies import Status
from tests.fakes.forwarder import Forwarder

pytestmark = pytest.mark.integration

SLOW = 8  # seconds a slow registry call takes
QUICK = 3.0  # "answered within a few seconds": a quick search on an idle engine takes well under 1 s
BOUND = 6  # registry calls at once: the engine's 8 workers but two
PER_PERSON, PER_REGISTRY = 3, 4  # the defaults


def person(name: str) -> Actor:
    return Actor(f"U{name.upper()}", name, via="slack", channel="C1")


ALICE, BOB, CAROL = person("alice"), person("bob"), person("carol")


class Flight:
    """Registry calls in flight, counted at the registries (shared by proxies)."""

    def __init__(self):
        self.now = 0
        self.peak = 0
        self.at: dict[str, int] = {}
        self.peak_at: dict[str, int] = {}
        self.lock = threading.Lock()  # the slow registry counts from its threads

    def up(self, where: str) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.at[where] = self.at.get(where, 0) + 1
            self.peak_at[where] = max(self.peak_at.get(where, 0), self.at[where])

    def down(self, where: str) -> None:
        with self.lock:
            self.now -= 1
            self.at[where] -= 1


class CountingProxy(Forwarder):
    """127.0.0.1:<port> in front of the fake index: an index of its own to the
    engine. A search is in flight from its ``GET /v1/search`` until the first
    bytes of its answer."""

    def __init__(self, target: str, flight: Flight):
        super().__init__(target)
        self.flight = flight

    async def chunk(self, data: bytes, *, to_target: bool, conn: dict) -> None:
        pending = conn.get("pending", 0)  # searches sent on this connection, not answered yet
        if to_target and data.startswith(b"GET /v1/search"):
            conn["pending"] = pending + 1
            self.flight.up(self.address)
        elif not to_target and pending:
            conn["pending"] = pending - 1
            self.flight.down(self.address)

    def closed(self, conn: dict) -> None:
        for _ in range(conn.get("pending", 0)):
            self.flight.down(self.address)


class SlowRegistry:
    """A registry v2 on 127.0.0.1 that answers every manifest request after
    ``delay`` seconds, with "manifest unknown": each pull from it is one slow
    registry call that ends in a clear error, and nothing is left on the engine."""

    def __init__(self, flight: Flight, delay: float):
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _slowly(self) -> None:
                flight.up(registry.address)
                try:
                    time.sleep(delay)
                finally:
                    flight.down(registry.address)

            def _answer(self, body: bool) -> None:
                if "/manifests/" in self.path:
                    self._slowly()
                    data = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
                    status = 404
                elif self.path.startswith("/v1/"):  # no search endpoint: Dockhand lists the catalog instead
                    data, status = "404 page not found", 404
                elif self.path.startswith("/v2/_catalog"):
                    self._slowly()
                    data, status = json.dumps({"repositories": ["dockhand/slow"]}), 200
                elif self.path.endswith("/tags/list") or "/tags/list?" in self.path:
                    self._slowly()
                    data, status = json.dumps({"name": "dockhand/slow", "tags": ["1"]}), 200
                else:  # /v2/: "a registry v2, no authentication"
                    data, status = "{}", 200
                raw = data.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if body:
                    self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
async def lane(stack, tmp_path):
    """(make_services, flight, proxy factory): Dockhand as wired by build_services
    (default lane: 6 slots, 3 per person, 4 per registry), everyone an operator."""
    flight = Flight()
    made, proxies = [], []

    def make(**settings):
        base = Settings(docker_host=stack.docker_host, state_dir=str(tmp_path / "state"),
                        search_index=stack.index,
                        operators=frozenset(p.id for p in (ALICE, BOB, CAROL)))
        s = build_services(replace(base, **settings))
        made.append(s)
        return s

    async def proxy() -> CountingProxy:
        p = await CountingProxy(stack.index, flight).start()
        proxies.append(p)
        return p

    yield make, flight, proxy
    for s in made:
        await close_services(s)  # waits for the slow calls still running: at most SLOW s
    for p in proxies:
        await p.stop()


async def until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def settle(flight: Flight, seconds: float = 0.7) -> None:
    """Wait until the count at the registries stops rising."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < seconds:
        if flight.now != last:
            last, stable_since = flight.now, time.monotonic()
        await asyncio.sleep(0.05)


async def quick_search(services, who: Actor, term: str = "ubuntu") -> float:
    t0 = time.monotonic()
    reply = await dispatch(f"search {term}", who, services)
    elapsed = time.monotonic() - t0
    assert reply.status is Status.OK, reply
    assert "ubuntu" in str(reply.parts[0]), reply
    return elapsed


async def stop(tasks) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_one_persons_twelve_slow_searches_leave_room_for_anothers(lane):
    make, flight, proxy = lane
    index = await proxy()
    services = make(search_index=index.address)
    engine = services.engine
    await quick_search(services, CAROL)  # the engine knows the index: the timings below are the lane's
    alice = [asyncio.create_task(dispatch(f"search slow-{SLOW}-{n}", ALICE, services)) for n in range(12)]
    more: list[asyncio.Task] = []
    try:
        await until(lambda: flight.now >= PER_PERSON)
        await settle(flight)
        hers = flight.now
        elapsed = await quick_search(services, BOB)
        assert elapsed < QUICK, f"bob waited {elapsed:.1f} s behind alice's slow searches"
        assert hers == PER_PERSON  # her share, not the whole lane
        assert engine.registry_lane.held_by(ALICE.id) == PER_PERSON and engine.registry_lane.waiting == 9

        # others fill the lane from another index: it never runs more than its bound
        other = await proxy()
        more += [asyncio.create_task(dispatch(f"search {other.address}/slow-{SLOW}-{n}", who, services))
                 for n in range(3) for who in (BOB, CAROL)]
        await until(lambda: flight.now >= BOUND)
        await settle(flight)
        assert flight.now == BOUND and flight.peak == BOUND
        assert flight.peak_at[index.address] == PER_PERSON + 1  # alice's three, and bob's search
        assert not any(t.done() for t in alice + more)
    finally:
        await stop(alice + more)
    assert flight.peak <= BOUND


async def test_one_slow_index_does_not_hold_up_searches_on_another(lane, stack):
    make, flight, proxy = lane
    slow_index, other = await proxy(), await proxy()
    services = make()
    await quick_search(services, CAROL, f"{other.address}/ubuntu")
    # six people, two slow searches each, all on one index
    people = [person(f"p{i}") for i in range(6)]
    busy = [asyncio.create_task(dispatch(f"search {slow_index.address}/slow-{SLOW}-{n}", who, services))
            for n in range(2) for who in people]
    try:
        await until(lambda: flight.now >= PER_REGISTRY)
        await settle(flight)
        held = flight.at[slow_index.address]
        elapsed = await quick_search(services, CAROL, f"{other.address}/ubuntu")
        assert elapsed < QUICK, f"a search on another index waited {elapsed:.1f} s behind a slow one"
        assert held == PER_REGISTRY  # that index's share, not the whole lane
        # the index of DOCKHAND_SEARCH_INDEX too
        elapsed = await quick_search(services, CAROL)
        assert elapsed < QUICK
        assert not any(t.done() for t in busy)
    finally:
        await stop(busy)
    assert flight.peak_at[slow_index.address] == PER_REGISTRY and flight.peak <= BOUND


async def test_one_persons_twelve_slow_pulls_leave_room_for_anothers_search(lane):
    """The case as reported: pulls (through handlers/pull.py), then a search."""
    make, flight, proxy = lane
    registry = SlowRegistry(flight, SLOW)
    index = await proxy()
    services = make(search_index=index.address)
    engine = services.engine
    await quick_search(services, CAROL)
    tag = uuid.uuid4().hex[:8]
    alice = [asyncio.create_task(dispatch(f"pull {registry.address}/dockhand/slow-{n}:{tag}", ALICE, services))
             for n in range(12)]
    try:
        await until(lambda: flight.at.get(registry.address, 0) >= PER_PERSON, timeout=10)
        await settle(flight)
        hers = flight.at[registry.address]
        elapsed = await quick_search(services, BOB)
        assert elapsed < QUICK, f"bob waited {elapsed:.1f} s behind alice's slow pulls"
        assert hers == PER_PERSON
        assert engine.registry_lane.held_by(ALICE.id) == PER_PERSON  # handlers/pull.py says whose pulls
        assert not any(t.done() for t in alice)
    finally:
        await stop(alice)
        registry.stop()
    assert flight.peak <= BOUND


async def test_catalog_listings_take_their_share_of_the_lane_too(lane):
    """A search on a registry without a search endpoint lists its catalog and
    tags (bot/registry.py): those calls wait their turn in the same lane, so
    one person's twelve such searches hold her share, not the registry."""
    make, flight, proxy = lane
    registry = SlowRegistry(flight, SLOW)
    index = await proxy()
    services = make(search_index=index.address)
    engine = services.engine
    await quick_search(services, CAROL)
    alice = [asyncio.create_task(dispatch(f"search {registry.address}/slow", ALICE, services)) for _ in range(12)]
    try:
        await until(lambda: flight.at.get(registry.address, 0) >= PER_PERSON, timeout=10)
        await settle(flight)
        assert flight.at[registry.address] == PER_PERSON  # her share: before, all twelve listed at once
        assert engine.registry_lane.held_by(ALICE.id) == PER_PERSON
        elapsed = await quick_search(services, BOB)
        assert elapsed < QUICK, f"bob waited {elapsed:.1f} s behind alice's catalog listings"
        assert not any(t.done() for t in alice)
    finally:
        await stop(alice)
        registry.stop()
    assert flight.peak_at[registry.address] == PER_PERSON


async def test_a_slow_pull_ends_with_the_registrys_answer(lane):
    """The slow registry is a real one to the engine: a pull from it ends, late, with its error."""
    make, flight, _ = lane
    registry = SlowRegistry(flight, 1)
    try:
        reply = await dispatch(f"pull {registry.address}/dockhand/slow:latest", ALICE, make())
        assert reply.status is Status.FAILED
        assert "manifest unknown" in str(reply.parts) or "not found" in str(reply.parts)
        assert flight.peak_at[registry.address] >= 1 and flight.now == 0
    finally:
        registry.stop()

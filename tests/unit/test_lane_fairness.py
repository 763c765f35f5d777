"""Fair shares of the registry lane (bot/registry_lane.py), with a fake slow
engine: bounded in total, capped per person and per registry, a fair queue
for the rest; and the handlers say on whose behalf they pull and search.
The same on the private engine: tests/integration/test_registry_lane.py."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.registry_lane import DEFAULT_PER_PERSON, DEFAULT_PER_REGISTRY, RegistryLane
from handlers.dispatch import dispatch
from handlers.access import Policy
from handlers.context import Actor, Services
from tests.unit.fake_engine import FakeEngine, image


class SlowRegistries:
    """Registry calls through a lane that last until released (or ``seconds``),
    with what was in flight checked at every start."""

    def __init__(self, lane: RegistryLane):
        self.lane = lane
        self.running: list[tuple[str, str]] = []
        self.started: list[tuple[str, str, int]] = []  # (owner, registry, n-th call of that owner)
        self.max_total = 0
        self.problems: list[str] = []

    async def call(self, owner: str, registry: str, n: int = 0, *, seconds: float | None = None,
                   release: asyncio.Event | None = None) -> None:
        async with self.lane.slot(owner, registry):
            self.running.append((owner, registry))
            self.started.append((owner, registry, n))
            self.max_total = max(self.max_total, len(self.running))
            if len(self.running) > self.lane.slots:
                self.problems.append(f"{len(self.running)} in flight")
            if sum(o == owner for o, _ in self.running) > self.lane.per_person:
                self.problems.append(f"{owner} above the person cap")
            if sum(r == registry for _, r in self.running) > self.lane.per_registry:
                self.problems.append(f"{registry} above the registry cap")
            try:
                if release is not None:
                    await release.wait()
                else:
                    await asyncio.sleep(seconds or 0)
            finally:
                self.running.remove((owner, registry))


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_persons_twelve_slow_calls_leave_room_for_anothers_search():
    """The reported case: alice's twelve slow pulls, then bob's quick search."""
    lane = RegistryLane(6)  # the defaults: 3 per person, 4 per registry
    reg = SlowRegistries(lane)
    hold = asyncio.Event()
    alice = [asyncio.create_task(reg.call("UALICE", "slow.example", n, release=hold)) for n in range(12)]
    await settle()
    assert lane.in_flight == DEFAULT_PER_PERSON == 3 and lane.waiting == 9
    bob = asyncio.create_task(reg.call("UBOB", "docker.io", seconds=0))
    await asyncio.wait_for(bob, 0.5)  # at once, not after alice's calls
    hold.set()
    await asyncio.gather(*alice)
    assert reg.problems == [] and lane.in_flight == 0 and lane.waiting == 0


async def test_before_the_change_a_shared_semaphore_made_bob_wait():
    """What the lane replaces, for the record: first come, first served."""
    gate = asyncio.Semaphore(6)
    hold = asyncio.Event()

    async def call(release=None):
        async with gate:
            if release is not None:
                await release.wait()

    alice = [asyncio.create_task(call(hold)) for _ in range(12)]
    await settle()
    bob = asyncio.create_task(call())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(bob), 0.2)
    hold.set()
    await asyncio.gather(bob, *alice)


async def test_a_slow_registry_leaves_room_for_the_others():
    lane = RegistryLane(6)
    reg = SlowRegistries(lane)
    hold = asyncio.Event()
    many = [asyncio.create_task(reg.call(f"U{i}", "slow.example", release=hold)) for i in range(8)]
    await settle()
    assert lane.held_at("slow.example") == DEFAULT_PER_REGISTRY == 4 and lane.waiting == 4
    await asyncio.wait_for(reg.call("UCAROL", "docker.io"), 0.5)
    # a newcomer to the slow registry waits: it is full
    late = asyncio.create_task(reg.call("UDAVE", "slow.example"))
    await settle()
    assert not late.done()
    hold.set()
    await asyncio.gather(late, *many)
    assert reg.problems == []


async def test_the_total_bound_holds_whoever_asks():
    lane = RegistryLane(6, per_person=6, per_registry=6)
    reg = SlowRegistries(lane)
    hold = asyncio.Event()
    tasks = [asyncio.create_task(reg.call(f"U{i % 4}", f"r{i % 3}.example", release=hold)) for i in range(20)]
    await settle()
    assert lane.in_flight == 6 and lane.waiting == 14
    hold.set()
    await asyncio.gather(*tasks)
    assert reg.problems == [] and lane.peak == 6


async def test_random_load_never_breaks_a_bound_and_everyone_finishes():
    rnd = random.Random(7)
    lane = RegistryLane(6, per_person=3, per_registry=4)
    reg = SlowRegistries(lane)
    tasks = [asyncio.create_task(reg.call(rnd.choice(["UA", "UB", "UC", "", "UD"]),
                                          rnd.choice(["docker.io", "a.example", "b.example:5000"]),
                                          seconds=rnd.random() / 100))
             for _ in range(300)]
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert reg.problems == [] and lane.peak == 6
    assert lane.in_flight == 0 and lane.waiting == 0


async def test_freed_slots_go_round_robin_between_people():
    """No caps in the way (2 slots, 2 per person): the queue alone decides."""
    lane = RegistryLane(2, per_person=2, per_registry=2)
    reg = SlowRegistries(lane)
    gates = [asyncio.Event() for _ in range(8)]
    # alice takes both slots and queues four more; then bob and carol queue one each
    tasks = [asyncio.create_task(reg.call("A", "r", n, release=gates[n])) for n in range(6)]
    await settle()
    tasks.append(asyncio.create_task(reg.call("B", "r", 0, release=gates[6])))
    await settle()
    tasks.append(asyncio.create_task(reg.call("C", "r", 0, release=gates[7])))
    await settle()
    order = lambda: [(o, n) for o, _, n in reg.started]
    assert order() == [("A", 0), ("A", 1)]
    gates[0].set()
    await settle()
    assert order()[-1] == ("B", 0)  # not alice's third, though she asked first
    gates[1].set()
    await settle()
    assert order()[-1] == ("C", 0)
    gates[6].set()  # bob done: alice holds none, carol one: alice's third
    await settle()
    assert order()[-1] == ("A", 2)
    for g in gates:
        g.set()
    await asyncio.gather(*tasks)
    assert [n for o, _, n in reg.started if o == "A"] == list(range(6))  # one person: first come, first served


async def test_one_persons_calls_alternate_between_registries():
    lane = RegistryLane(1, per_person=1, per_registry=1)
    reg = SlowRegistries(lane)
    first = asyncio.Event()
    tasks = [asyncio.create_task(reg.call("A", "slow.example", 0, release=first))]
    await settle()
    tasks += [asyncio.create_task(reg.call("A", "slow.example", n)) for n in (1, 2)]
    tasks += [asyncio.create_task(reg.call("A", "fast.example", n)) for n in (3, 4)]
    await settle()
    first.set()
    await asyncio.gather(*tasks)
    assert [r for _, r, _ in reg.started] == ["slow.example", "fast.example", "slow.example",
                                               "fast.example", "slow.example"]


async def test_cancelled_calls_give_their_place_and_their_slot_back():
    lane = RegistryLane(1)
    hold = asyncio.Event()
    reg = SlowRegistries(lane)
    running = asyncio.create_task(reg.call("A", "r", release=hold))
    await settle()
    waiting = asyncio.create_task(reg.call("B", "r"))
    await settle()
    assert lane.waiting == 1
    waiting.cancel()  # cancelled in the queue
    await asyncio.gather(waiting, return_exceptions=True)
    assert lane.waiting == 0 and lane.in_flight == 1
    running.cancel()  # cancelled while it holds its slot
    await asyncio.gather(running, return_exceptions=True)
    assert lane.in_flight == 0 and lane.held_by("A") == 0
    await asyncio.wait_for(reg.call("C", "r"), 0.5)


async def test_a_slot_granted_to_a_call_cancelled_at_that_moment_is_passed_on():
    lane = RegistryLane(1)
    first, second = asyncio.Event(), asyncio.Event()
    reg = SlowRegistries(lane)
    a = asyncio.create_task(reg.call("A", "r", release=first))
    await settle()
    b = asyncio.create_task(reg.call("B", "r", release=second))
    c = asyncio.create_task(reg.call("C", "r"))
    await settle()
    first.set()
    await asyncio.sleep(0)  # a releases: its slot is granted to b, which has not run yet
    b.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    await asyncio.wait_for(c, 0.5)  # b gave its slot back: c got it
    assert lane.in_flight == 0 and lane.waiting == 0


def test_caps_are_at_most_the_lane_and_at_least_one():
    lane = RegistryLane(2, per_person=5, per_registry=9)
    assert (lane.per_person, lane.per_registry) == (2, 2)
    with pytest.raises(ValueError):
        RegistryLane(6, per_person=0)


# -- the handlers say on whose behalf ------------------------------------------------

POLICY = Policy(admins=frozenset({"UADMIN"}), operators=frozenset({"UOPER"}))


async def test_search_pull_and_run_pass_the_person_to_the_engine():
    s = Services(engine=FakeEngine(), policy=POLICY, search_index="127.0.0.1:5001")
    await dispatch("search ubuntu", Actor("UVIEW", "vic", via="slack", channel="C1"), s)
    await dispatch("pull 127.0.0.1:5000/dockhand/pullme", Actor("UOPER", "otto", via="slack", channel="C1"), s)
    await dispatch("docker run 127.0.0.1:5000/dockhand/other", Actor("UADMIN", "ada", via="slack", channel="C1"), s)
    assert s.engine.owners == [("search", "UVIEW"), ("pull", "UOPER"), ("pull", "UADMIN")]


async def test_the_shells_person_is_its_actor():
    s = Services(engine=FakeEngine(images=[image("a", ["busybox:latest"])]))
    await dispatch("search busybox", Actor("root", "root", via="shell"), s)
    assert s.engine.owners == [("search", "root")]


# -- settings ------------------------------------------------------------------------

def test_settings_defaults_and_values():
    s = load_settings({})
    assert (s.per_person_registry_calls, s.per_registry_calls) == (DEFAULT_PER_PERSON, DEFAULT_PER_REGISTRY)
    s = load_settings({"DOCKHAND_PER_PERSON_REGISTRY_CALLS": "2", "DOCKHAND_PER_REGISTRY_CALLS": " 5 "})
    assert (s.per_person_registry_calls, s.per_registry_calls) == (2, 5)


def test_settings_problems_are_one_line_each():
    with pytest.raises(ConfigError) as exc:
        load_settings({"DOCKHAND_PER_PERSON_REGISTRY_CALLS": "0", "DOCKHAND_PER_REGISTRY_CALLS": "1.5"})
    assert exc.value.problems == [
        "DOCKHAND_PER_PERSON_REGISTRY_CALLS='0' must be more than 0",
        "DOCKHAND_PER_REGISTRY_CALLS='1.5' is not a whole number (e.g. DOCKHAND_PER_REGISTRY_CALLS=4)",
    ]


async def test_wiring_hands_the_caps_to_the_engine(tmp_path):
    from bot.wiring import build_services, close_services

    settings = replace(Settings(docker_host="unix:///nonexistent/docker.sock", state_dir=str(tmp_path)),
                       per_person_registry_calls=2, per_registry_calls=5)
    services = build_services(settings)
    try:
        lane = services.engine._registry_gate()
        assert (lane.slots, lane.per_person, lane.per_registry) == (6, 2, 5)
    finally:
        await close_services(services)

"""The plan -> confirm -> act flow through dispatch and handlers.operations,
with an in-memory engine (whose removals follow handlers.plans' rules) and
the real SQLite store and audit log. The same flow runs against the private
engine and through signed Slack requests in tests/integration."""

from __future__ import annotations

import asyncio

import pytest

from bot.audit_log import AuditLog, verify
from bot.render.text import render
from bot.store import SqliteStore
from handlers import operations
from handlers.dispatch import dispatch
from handlers.access import Policy
from handlers.context import Actor, Services
from handlers.replies import Confirmation, Status
from tests.unit.fake_engine import FakeEngine, container, image

SHELL = Actor("root", "root", via="shell")
ALICE = Actor("UALICE", "alice", via="slack", channel="C1")
BOB = Actor("UBOB", "bob", via="slack", channel="C1")
CAROL = Actor("UCAROL", "carol", via="slack", channel="C1")


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
async def make(tmp_path):
    made = []

    def build(images=(), containers=(), policy=None, ttl=600.0):
        store = SqliteStore(tmp_path / f"state{len(made)}.db")
        s = Services(engine=FakeEngine(images=images, containers=containers), host_label="test-host",
                     store=store, audit=AuditLog(tmp_path / "audit.jsonl"), policy=policy,
                     confirm_ttl=ttl, clock=Clock())
        made.append(s)
        return s

    yield build
    for s in made:
        await s.store.close()


def table(reply):
    return next(p for p in reply.parts if hasattr(p, "rows"))


def removed(s):
    return [c for c in s.engine.calls if c[0] == "remove_image"]


async def test_a_plan_is_a_success_that_asks_and_removes_nothing(make):
    s = make(images=[image("a", ["x:1", "x:2"], size=1000)])
    reply = await dispatch("rmi x:1", SHELL, s)
    assert reply.status is Status.OK
    assert isinstance(reply.parts[-1], Confirmation)
    assert table(reply).rows[0][2] == "untag x:1"
    assert reply.operation.state == "pending" and removed(s) == []
    stored = await s.store.get(reply.operation.id)
    assert stored.fingerprint == reply.operation.fingerprint and stored.requester == "root"


async def test_confirm_removes_exactly_the_plan_once_under_20_concurrent_clicks(make):
    s = make(images=[image("a", ["x:1"], size=1000), image("b", ["y:1"], size=2000)])
    plan = await dispatch("rmi x:1 y:1", SHELL, s)
    replies = await asyncio.gather(*(operations.confirm(plan.operation.id, SHELL, s) for _ in range(20)))
    # a late click is told the operation's current state (which may be "done" by then): count the one that ran
    done = [r for r in replies if not r.meta.get("late") and r.operation is not None and r.operation.state == "done"]
    assert len(done) == 1
    assert len(removed(s)) == 2  # one engine call per planned argument, once
    assert [i.id for i in s.engine.images] == []
    assert "Untagged: x:1" in render(done[0]) and "Deleted: sha256:" in render(done[0])
    assert sum(1 for r in replies if r.meta.get("late")) == 19


async def test_a_retag_between_plan_and_confirm_removes_nothing_and_offers_a_new_plan(make):
    old, new = image("a", ["x:1"]), image("b", [])
    s = make(images=[old, new])
    plan = await dispatch("rmi x:1", SHELL, s)
    # x:1 now points at another image
    s.engine.images = [image("a", []), image("b", ["x:1"])]
    reply = await operations.confirm(plan.operation.id, SHELL, s)
    assert removed(s) == []
    assert reply.operation.state == "pending" and reply.operation.id != plan.operation.id
    assert "situation changed" in render(reply)
    assert (await s.store.get(plan.operation.id)).state == "superseded"
    assert reply.parts[-1].op == reply.operation.id


async def test_expiry_with_an_injected_clock(make):
    s = make(images=[image("a", ["x:1"])], ttl=600)
    plan = await dispatch("rmi x:1", SHELL, s)
    s.clock.now += 601
    reply = await operations.confirm(plan.operation.id, SHELL, s)
    assert reply.status is Status.FAILED and "expired" in render(reply)
    assert removed(s) == [] and (await s.store.get(plan.operation.id)).state == "expired"
    again = await dispatch("rmi x:1", SHELL, s)
    s.clock.now += 601
    assert [op.id for op in await operations.expire_due(s)] == [again.operation.id]


async def test_roles_and_the_two_person_rule(make):
    policy = Policy(admins=frozenset({"UALICE", "UBOB"}), approvers=frozenset({"UBOB"}))
    s = make(images=[image("a", ["x:1"])], policy=policy)
    denied = await dispatch("rmi x:1", CAROL, s)  # a viewer
    assert denied.status is Status.FAILED and "needs the admin role" in denied.parts[0].message
    assert "DOCKHAND_ADMINS" in denied.parts[0].hint and "UCAROL" in denied.parts[0].hint
    pull = await dispatch("pull x:2", CAROL, s)
    assert "needs the operator role" in pull.parts[0].message and s.engine.calls == []
    plan = await dispatch("rmi x:1", ALICE, s)
    assert plan.operation.needs_approver
    own = await operations.confirm(plan.operation.id, ALICE, s)
    assert own.meta.get("denied") and "someone else" in own.parts[0].message
    stranger = await operations.confirm(plan.operation.id, CAROL, s)
    assert stranger.meta.get("denied") and removed(s) == []
    ok = await operations.confirm(plan.operation.id, BOB, s)
    assert ok.operation.state == "done" and ok.operation.decided_by == "UBOB"
    events = [r["event"] for r in await s.audit.tail(20)]
    assert events == ["denied", "denied", "requested", "denied", "denied", "confirmed", "running", "done"]
    assert verify(s.audit.path).ok


async def test_groups_grant_roles(make):
    policy = Policy(admins=frozenset({"SADMINS"}))
    s = make(images=[image("a", ["x:1"])], policy=policy)
    member = Actor("UDAVE", "dave", via="slack", groups=frozenset({"SADMINS"}))
    assert (await dispatch("rmi x:1", member, s)).operation.state == "pending"


async def test_cancel(make):
    s = make(images=[image("a", ["x:1"])], policy=Policy(admins=frozenset({"UALICE"})))
    plan = await dispatch("rmi x:1", ALICE, s)
    assert (await operations.cancel(plan.operation.id, CAROL, s)).meta.get("denied")
    reply = await operations.cancel(plan.operation.id, ALICE, s)
    assert reply.operation.state == "cancelled"
    late = await operations.confirm(plan.operation.id, ALICE, s)
    assert late.meta.get("late") and removed(s) == []


async def test_refused_plan_has_no_confirmation(make):
    img = image("a", ["x:1"])
    s = make(images=[img], containers=[container("c" * 64, img.id, state="running")])
    reply = await dispatch("rmi x:1", SHELL, s)
    assert reply.confirmation is None and reply.status is Status.FAILED
    assert 'unable to remove repository reference "x:1" (must force)' in render(reply)


async def test_substitution_of_images_q(make):
    s = make(images=[image("a", ["x:1", "x:2"]), image("b", ["y:1"])])
    reply = await dispatch("docker rmi -f $(docker images -q)", SHELL, s)
    assert [row[0] for row in table(reply).rows] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert "1 repeated" in reply.parts[0].text
    for bad in ("rmi $(docker ps -q)", "images $(docker images -q)", "rmi $(docker images)", "rmi $(rm -rf /)"):
        assert (await dispatch(bad, SHELL, s)).status is Status.USAGE, bad


async def test_work_is_bounded_whatever_the_number_of_arguments(make):
    imgs = [image(f"{i:04x}", [f"r{i}:1"]) for i in range(1, 250)]
    s = make(images=imgs)
    args = " ".join(f"{i:04x}" for i in range(1, 250))
    reply = await dispatch(f"rmi {args}", SHELL, s)
    assert len(table(reply).rows) == 249
    assert len(s.engine.calls) <= 5, s.engine.calls  # list, containers, df, version
    too_many = await dispatch("rmi " + " ".join(f"a{i}" for i in range(301)), SHELL, s)
    assert too_many.status is Status.USAGE and "at most 300" in too_many.parts[0].message


async def test_prune_plan_lists_candidates_and_removes_the_listed_ones(make):
    used, unused, dangling = image("a", ["x:1"], size=1000), image("b", ["y:1"], size=2000), image("c", [], size=500)
    s = make(images=[used, unused, dangling], containers=[container("d" * 64, used.id)])
    plan = await dispatch("image prune -a", SHELL, s)
    assert sorted(row[1] for row in table(plan).rows) == ["bbbbbbbbbbbb", "cccccccccccc"]
    assert "2.5kB freed" in render(plan)
    s.engine.images.append(image("e", [], size=10))  # a new dangling image after the plan
    changed = await operations.confirm(plan.operation.id, SHELL, s)
    assert changed.operation.state == "pending" and removed(s) == []
    done = await operations.confirm(changed.operation.id, SHELL, s)
    assert done.operation.state == "done"
    assert sorted(i.id[7:8] for i in s.engine.images) == ["a"]
    assert "Total reclaimed space:" in render(done)


async def test_recovery_marks_only_operations_whose_runner_is_gone(make):
    s = make(images=[image("a", ["x:1"]), image("b", ["y:1"])])
    s.runner = "here:1:100"
    mine = await dispatch("rmi x:1", SHELL, s)
    theirs = await dispatch("rmi y:1", SHELL, s)
    await s.store.transition(mine.operation.id, ["pending"], "running", now=s.clock(), result={"runner": "here:1:100"})
    await s.store.transition(theirs.operation.id, ["pending"], "running", now=s.clock(),
                             result={"runner": "there:2:200"})
    s.runner_alive = lambda runner: runner == "there:2:200"
    recovered = await operations.recover(s)
    assert [op.id for op in recovered] == [mine.operation.id]
    assert (await s.store.get(theirs.operation.id)).state == "running"
    assert (await s.store.get(mine.operation.id)).state == "interrupted"
    assert [r["event"] for r in await s.audit.tail(1)] == ["interrupted"]

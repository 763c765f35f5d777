"""The shell's way of settling what a reply asks (``bot.shell.answer``): every
confirmation, and the new plan an answer asks about when the host changed
before the plan ran; with an in-memory engine and the real store and audit log.
The same over three real engines: tests/integration/test_many_hosts.py."""

from __future__ import annotations

import io

import pytest

from bot.audit_log import AuditLog
from bot.shell import MAX_FOLLOW_UPS, answer
from bot.store import SqliteStore
from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.replies import Status
from tests.unit.fake_engine import FakeEngine, image

SHELL = Actor("root", "root", via="shell")


class Clock:
    def __call__(self):
        return 1_000_000.0


class Moving(FakeEngine):
    """An engine where `x:1` names a new image at every reading (someone keeps retagging)."""

    n = 0

    async def list_images(self, *, all=False, filters=None):
        self.n += 1
        self.images = [image(f"{self.n:x}", ["x:1"])]
        return await super().list_images(all=all, filters=filters)


@pytest.fixture
async def make(tmp_path):
    made = []

    def build(engine):
        s = Services(engine=engine, host_label="test-host", store=SqliteStore(tmp_path / f"s{len(made)}.db"),
                     audit=AuditLog(tmp_path / "audit.jsonl"), confirm_ttl=600.0, clock=Clock())
        made.append(s)
        return s

    yield build
    for s in made:
        await s.store.close()


def collector():
    shown = []

    async def show(reply):
        shown.append(reply)

    return shown, show


async def test_yes_confirms_the_new_plan_of_a_host_that_changed(make):
    s = make(FakeEngine(images=[image("a", ["x:1"]), image("b", [])]))
    plan = await dispatch("rmi x:1", SHELL, s)
    s.engine.images = [image("a", []), image("b", ["x:1"])]  # x:1 now names b
    shown, show = collector()
    out = io.StringIO()
    assert await answer(plan, SHELL, s, yes=True, can_ask=False, show=show, out=out) is Status.OK
    assert out.getvalue().count("Confirmed by --yes: Remove as planned on test-host?") == 2
    first, second = shown
    assert first.operation.state == "pending" and "situation changed" in str(first.parts)
    assert second.operation.state == "done" and second.operation.id == first.operation.id
    assert [i.id for i in s.engine.images] == [image("a", []).id]  # the new plan's image went, not a


async def test_n_to_the_new_plan_cancels_it_alone(make):
    s = make(FakeEngine(images=[image("a", ["x:1"]), image("b", [])]))
    plan = await dispatch("rmi x:1", SHELL, s)
    s.engine.images = [image("a", []), image("b", ["x:1"])]
    shown, show = collector()
    out = io.StringIO()
    status = await answer(plan, SHELL, s, yes=False, can_ask=True, show=show, out=out, stdin=io.StringIO("y\nn\n"))
    assert status is Status.OK and out.getvalue().count("[y/N]") == 2
    assert shown[-1].operation.state == "cancelled" and len(s.engine.images) == 2
    assert (await s.store.get(plan.operation.id)).state == "superseded"


async def test_a_host_that_changes_under_every_plan_is_asked_a_bounded_number_of_times(make):
    s = make(Moving())
    plan = await dispatch("rmi x:1", SHELL, s)
    shown, show = collector()
    out = io.StringIO()
    status = await answer(plan, SHELL, s, yes=True, can_ask=False, show=show, out=out)
    assert status is Status.FAILED
    assert out.getvalue().count("Confirmed by --yes") == MAX_FOLLOW_UPS + 1
    assert "kept changing" in str(shown[-1].parts)
    assert [c for c in s.engine.calls if c[0] == "remove_image"] == []
    assert await s.store.in_state("pending") == []  # the last new plan is cancelled, nothing left waiting
    events = [r["event"] for r in s.audit.tail_sync(100)]
    assert events.count("superseded") == MAX_FOLLOW_UPS + 1 and events[-1] == "cancelled"


async def test_no_terminal_cancels_and_says_how_to_confirm(make):
    s = make(FakeEngine(images=[image("a", ["x:1"])]))
    plan = await dispatch("rmi x:1", SHELL, s)
    shown, show = collector()
    assert await answer(plan, SHELL, s, yes=False, can_ask=False, show=show) is Status.FAILED
    assert "Not confirmed" in shown[0].parts[0].message and shown[0].operation.state == "cancelled"
    assert await answer(shown[0], SHELL, s, yes=True, can_ask=False, show=show) is None  # nothing more asked

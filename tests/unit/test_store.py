"""bot/store.py: the SQLite operation store.

The races are run three ways: tasks on one store, two stores on one file, and
separate OS processes on one file; each must produce exactly one winner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest

from bot.store import DB_NAME, SCHEMA_VERSION, SqliteStore
from handlers.ports import Operation

ROOT = Path(__file__).resolve().parents[2]


def make_op(op_id: str = "a" * 32, **kw) -> Operation:
    """An operation with every field set to something other than its default."""
    values = dict(
        id=op_id,
        kind="rmi",
        command="docker rmi -f busybox:1.36",
        host="prod-1",
        requester="U123",
        requester_name="alice",
        via="shell",
        channel="C42",
        fingerprint="f" * 16,
        plan={"refs": ["busybox:1.36"], "bytes": 4_400_000, "nested": {"ok": True, "none": None}},
        created_at=1000.25,
        expires_at=1300.5,
        needs_approver=True,
        state="pending",
        decided_by="",
        decided_by_name="",
        message={"channel": "C42", "ts": "1700000000.000100"},
        result={},
        updated_at=1000.25,
    )
    values.update(kw)
    return Operation(**values)


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore.open(tmp_path / "state")
    yield s
    await s.close()


# --------------------------------------------------------------------- add / get


async def test_add_get_round_trip_with_nested_json(store):
    plan = MappingProxyType({
        "images": [{"id": "sha256:" + "0" * 64, "tags": ["a:1", "b:2"], "size": 123}],
        "by_host": MappingProxyType({"prod-1": {"count": 2, "ratio": 0.5}}),
        "text": "déjà vu ✓ \"quoted\"",
        "flags": [True, False, None],
    })
    op = make_op(plan=plan, result={"deleted": ["sha256:" + "1" * 64], "space": 10})
    await store.add(op)
    got = await store.get(op.id)
    assert got == op
    # JSON comes back as plain dicts, whatever Mapping went in.
    assert type(got.plan) is dict and type(got.plan["by_host"]) is dict
    assert got.plan["by_host"]["prod-1"] == {"count": 2, "ratio": 0.5}
    assert type(got.needs_approver) is bool and type(got.created_at) is float


async def test_get_unknown_is_none(store):
    assert await store.get("nope") is None


async def test_duplicate_add_fails_and_keeps_the_first(store):
    op = make_op()
    await store.add(op)
    with pytest.raises(ValueError, match="already exists"):
        await store.add(dataclasses.replace(op, command="docker rmi other"))
    assert await store.get(op.id) == op


async def test_add_refuses_unknown_state_and_non_json(store):
    with pytest.raises(ValueError, match="unknown state"):
        await store.add(make_op(state="pondering"))
    with pytest.raises(TypeError, match="plan"):
        await store.add(make_op(plan={"s": {1, 2}}))
    assert await store.get(make_op().id) is None


# --------------------------------------------------------------------- transitions


async def test_transition_happy_path(store):
    op = make_op()
    await store.add(op)

    running = await store.transition(op.id, ["pending"], "running", now=1100.0, by="U999", by_name="bob")
    assert running == dataclasses.replace(op, state="running", decided_by="U999", decided_by_name="bob",
                                          updated_at=1100.0)  # fmt: skip
    assert await store.get(op.id) == running

    # No `by`: the confirmer stays; the result is set.
    done = await store.transition(op.id, ["running"], "done", now=1200.0, result={"deleted": ["x"], "n": 1})
    assert done == dataclasses.replace(running, state="done", result={"deleted": ["x"], "n": 1}, updated_at=1200.0)
    assert await store.get(op.id) == done


async def test_transition_refused_from_wrong_state(store):
    op = make_op()
    await store.add(op)
    assert await store.transition(op.id, ["running"], "done", now=1100.0, by="U9") is None
    assert await store.get(op.id) == op  # untouched: no state, no updated_at, no decided_by
    assert await store.transition("unknown", ["pending"], "running", now=1100.0) is None


async def test_transition_rejects_bad_states(store):
    op = make_op()
    await store.add(op)
    with pytest.raises(ValueError, match="to_state"):
        await store.transition(op.id, ["pending"], "finished", now=1.0)
    with pytest.raises(ValueError, match="from_state"):
        await store.transition(op.id, ["pendng"], "running", now=1.0)
    with pytest.raises(TypeError, match="not a str"):
        await store.transition(op.id, "pending", "running", now=1.0)
    assert await store.get(op.id) == op


async def test_twenty_concurrent_transitions_one_winner(store):
    op = make_op()
    await store.add(op)
    results = await asyncio.gather(*(
        store.transition(op.id, ["pending"], "running", now=2000.0, by=f"U{i}") for i in range(20)
    ))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and results.count(None) == 19
    assert await store.get(op.id) == winners[0]


async def test_race_between_two_stores_on_one_file(tmp_path):
    a, b = SqliteStore(tmp_path / DB_NAME), SqliteStore(tmp_path / DB_NAME)
    try:
        op = make_op()
        await a.add(op)
        results = await asyncio.gather(*(
            (a if i % 2 else b).transition(op.id, ["pending"], "running", now=2000.0, by=f"U{i}")
            for i in range(20)
        ))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert await a.get(op.id) == await b.get(op.id) == winners[0]
    finally:
        await a.close()
        await b.close()


# --------------------------------------------------------------------- other processes

CHILD = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from bot.store import SqliteStore
    from handlers.ports import Operation

    async def main(db, action, arg):
        store = SqliteStore(db)
        await store.get("warm-up")  # connected, schema ready, before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        if action == "transition":
            me = f"pid{os.getpid()}"
            op = await store.transition(arg, ["pending"], "running", now=2000.0, by=me)
            print(f"won {me}" if op else "lost", flush=True)
        elif action == "deliver":
            print("won" if await store.first_delivery(arg, now=100.0, ttl=60.0) else "lost", flush=True)
        elif action == "add-and-die":
            await store.add(Operation(**json.loads(arg)))
            print("added", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no close(), no clean exit
        await store.close()

    asyncio.run(main(*sys.argv[1:4]))
""")


def run_children(tmp_path: Path, n: int, action: str, arg: str) -> list[str]:
    """Start n processes on one file, let them all get ready, release them at
    once; the last line each printed."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / DB_NAME), action, arg],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(n)
    ]  # fmt: skip
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line == "ready\n", line + p.stderr.read()
        for p in procs:  # the start signal, as close together as we can
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert action == "add-and-die" or p.returncode == 0, err
            outs.append(out.strip().splitlines()[-1] if out.strip() else "")
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


async def test_race_between_processes_one_winner(tmp_path):
    store = SqliteStore(tmp_path / DB_NAME)
    try:
        op = make_op()
        await store.add(op)
        outs = await asyncio.to_thread(run_children, tmp_path, 20, "transition", op.id)
        winners = [o for o in outs if o.startswith("won ")]
        assert len(winners) == 1 and outs.count("lost") == 19, outs
        got = await store.get(op.id)
        assert got.state == "running" and got.decided_by == winners[0].split()[1]
    finally:
        await store.close()


async def test_first_delivery_across_processes_one_true(tmp_path):
    # No store here: the children create the file and its schema concurrently.
    outs = await asyncio.to_thread(run_children, tmp_path, 12, "deliver", "T123")
    assert outs.count("won") == 1 and outs.count("lost") == 11, outs


async def test_committed_operation_survives_a_killed_process(tmp_path):
    op = make_op()
    [out] = await asyncio.to_thread(run_children, tmp_path, 1, "add-and-die", json.dumps(dataclasses.asdict(op)))
    assert out == "added"
    store = SqliteStore(tmp_path / DB_NAME)
    try:
        assert await store.get(op.id) == op
    finally:
        await store.close()


# --------------------------------------------------------------------- durability, schema


async def test_survives_close_and_reopen(tmp_path):
    op = make_op()
    first = SqliteStore.open(tmp_path / "state")
    await first.add(op)
    await first.set_message(op.id, {"channel": "C1", "ts": "1.2"})
    await first.close()

    again = SqliteStore.open(tmp_path / "state")
    try:
        expected = dataclasses.replace(op, message={"channel": "C1", "ts": "1.2"})
        assert await again.get(op.id) == expected
        assert await again.in_state("pending") == [expected]
        assert await again.transition(op.id, ["pending"], "cancelled", now=1.0, by="U1") is not None
    finally:
        await again.close()


async def test_open_creates_private_dir_wal_and_schema_version(tmp_path):
    state_dir = tmp_path / "deep" / "state"
    store = SqliteStore.open(state_dir)
    try:
        await store.get("x")
        assert (state_dir.stat().st_mode & 0o777) == 0o700
        assert store.path == state_dir / "state.db" and store.path.exists()
        raw = sqlite3.connect(store.path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        finally:
            raw.close()
    finally:
        await store.close()


async def test_connection_settings(store):
    """Per-connection settings, so only visible through the store's own connection."""

    def pragmas(conn):
        return {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("synchronous", "busy_timeout", "journal_mode")}  # fmt: skip

    got = await store._run(pragmas)
    assert got["synchronous"] == 2  # FULL: a commit that returned survives a power cut
    assert 1000 <= got["busy_timeout"] <= 30_000
    assert got["journal_mode"] == "wal"


async def test_refuses_a_newer_schema(tmp_path):
    store = SqliteStore(tmp_path / DB_NAME)
    await store.get("x")
    await store.close()
    raw = sqlite3.connect(tmp_path / DB_NAME)
    with raw:
        raw.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    raw.close()
    newer = SqliteStore(tmp_path / DB_NAME)
    try:
        with pytest.raises(RuntimeError, match="schema version 99"):
            await newer.get("x")
    finally:
        await newer.close()


async def test_event_loop_keeps_running_while_the_file_is_locked(tmp_path):
    """Another process holds the write lock: the store's call waits (busy
    timeout) in its own thread while the loop goes on, then succeeds."""
    store = SqliteStore(tmp_path / DB_NAME)
    try:
        op = make_op()
        await store.add(op)
        raw = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            task = asyncio.create_task(store.transition(op.id, ["pending"], "running", now=5.0))
            loop = asyncio.get_running_loop()
            ticks, start = 0, loop.time()
            while loop.time() - start < 0.4:
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks >= 10  # the loop was not stuck in sqlite
            assert not task.done()  # the call is waiting on the lock, not failing
        finally:
            raw.execute("COMMIT")
            raw.close()
        assert (await asyncio.wait_for(task, 5)).state == "running"
    finally:
        await store.close()


# --------------------------------------------------------------------- queries


async def test_due_returns_only_expired_pending(store):
    ops = [
        make_op("1" * 32, expires_at=50.0),  # expired
        make_op("2" * 32, expires_at=100.0),  # expires exactly now: due
        make_op("3" * 32, expires_at=100.5),  # not yet
        make_op("4" * 32, expires_at=10.0, state="running"),
        make_op("5" * 32, expires_at=10.0, state="cancelled"),
        make_op("6" * 32, expires_at=20.0),  # expired, earlier than the first
    ]
    for op in ops:
        await store.add(op)
    assert [o.id for o in await store.due(100.0)] == ["6" * 32, "1" * 32, "2" * 32]
    assert await store.due(5.0) == []


async def test_in_state_oldest_first(store):
    for i, created in enumerate([30.0, 10.0, 20.0]):
        await store.add(make_op(str(i) * 32, created_at=created))
    await store.add(make_op("9" * 32, created_at=5.0, state="done"))
    assert [o.created_at for o in await store.in_state("pending")] == [10.0, 20.0, 30.0]
    assert [o.id for o in await store.in_state("done")] == ["9" * 32]
    assert await store.in_state("running") == []
    with pytest.raises(ValueError):
        await store.in_state("bogus")


async def test_set_message(store):
    op = make_op(message={})
    await store.add(op)
    await store.set_message(op.id, {"channel": "C9", "ts": "2.3"})
    assert await store.get(op.id) == dataclasses.replace(op, message={"channel": "C9", "ts": "2.3"})
    with pytest.raises(KeyError):
        await store.set_message("unknown", {"channel": "C9"})


async def test_purge_removes_only_old_final_operations(store):
    ops = {
        "done-old": make_op("a" * 32, state="done", updated_at=10.0),
        "failed-old": make_op("b" * 32, state="failed", updated_at=49.0),
        "expired-edge": make_op("c" * 32, state="expired", updated_at=50.0),  # exactly at the cut: kept
        "done-new": make_op("d" * 32, state="done", updated_at=95.0),
        "pending-old": make_op("e" * 32, state="pending", updated_at=1.0),
        "running-old": make_op("f" * 32, state="running", updated_at=1.0),
    }
    for op in ops.values():
        await store.add(op)
    assert await store.purge(100.0, 50.0) == 2
    left = {name for name, op in ops.items() if await store.get(op.id) is not None}
    assert left == {"expired-edge", "done-new", "pending-old", "running-old"}
    assert await store.purge(100.0, 50.0) == 0


# --------------------------------------------------------------------- deliveries


async def test_first_delivery_then_duplicate_then_after_ttl(store):
    assert await store.first_delivery("T1", now=100.0, ttl=10.0) is True
    assert await store.first_delivery("T1", now=105.0, ttl=10.0) is False
    assert await store.first_delivery("T2", now=105.0, ttl=10.0) is True  # other keys are independent
    assert await store.first_delivery("T1", now=110.0, ttl=10.0) is False  # exactly ttl later: still seen
    assert await store.first_delivery("T1", now=110.5, ttl=10.0) is True  # forgotten, seen anew
    assert await store.first_delivery("T1", now=111.0, ttl=10.0) is False


async def test_first_delivery_one_true_across_two_stores(tmp_path):
    a, b = SqliteStore(tmp_path / DB_NAME), SqliteStore(tmp_path / DB_NAME)
    try:
        results = await asyncio.gather(*(
            (a if i % 2 else b).first_delivery("T-race", now=100.0, ttl=60.0) for i in range(20)
        ))
        assert results.count(True) == 1
    finally:
        await a.close()
        await b.close()


# --------------------------------------------------------------------- close


async def test_closed_store_raises(tmp_path):
    store = SqliteStore(tmp_path / DB_NAME)
    op = make_op()
    await store.add(op)
    # A call made before close() still completes.
    got, _ = await asyncio.gather(store.get(op.id), store.close())
    assert got == op
    calls = [
        store.add(make_op("b" * 32)),
        store.get(op.id),
        store.transition(op.id, ["pending"], "running", now=1.0),
        store.set_message(op.id, {}),
        store.due(1.0),
        store.in_state("pending"),
        store.first_delivery("k", now=1.0, ttl=1.0),
        store.purge(1.0, 1.0),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="the state store is closed"):
            await call
    await store.close()  # twice is fine

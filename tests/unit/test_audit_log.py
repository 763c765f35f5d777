"""bot/audit_log.py: the hash-chained JSON Lines audit log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot import audit_log
from bot.audit_log import AuditLog, AuditLogError, format_records, verify
from handlers.ports import AuditEvent

ROOT = Path(__file__).resolve().parents[2]
ZERO = "0" * 64


def spec_hash(record: dict) -> str:
    """The hash as the spec defines it, written independently of the module."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_log(tmp_path: Path, n: int) -> tuple[AuditLog, list[dict]]:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    recs = [log.append({"event": "done", "op": f"op{i}", "command": f"docker rmi img{i}", "at": 1000.0 + i})
            for i in range(1, n + 1)]
    return log, recs


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def records_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in lines_of(path)]


# --------------------------------------------------------------------------
# The chain


def test_chain_of_three_verifies(tmp_path):
    log, recs = make_log(tmp_path, 3)
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["prev"] == ZERO
    assert recs[1]["prev"] == recs[0]["hash"] and recs[2]["prev"] == recs[1]["hash"]
    assert all(r["hash"] == spec_hash(r) for r in recs)
    # What append returned is exactly what is on disk, one record a line.
    assert records_of(log.path) == recs
    assert json.loads(log.head_path.read_text()) == {"seq": 3, "hash": recs[2]["hash"]}
    assert verify(log.path) == audit_log.VerifyResult(True, 3, None, "3 records, chain and head intact")


def test_files_and_dirs_are_private(tmp_path):
    log = AuditLog(tmp_path / "a" / "b" / "audit.jsonl")
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
    log.append({"event": "x"})
    assert stat.S_IMODE(os.stat(log.head_path).st_mode) == 0o600


def test_empty_and_missing_logs(tmp_path):
    missing = verify(tmp_path / "nope.jsonl")
    assert not missing.ok and "no audit log" in missing.reason and str(tmp_path / "nope.jsonl") in missing.reason
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert verify(empty) == audit_log.VerifyResult(True, 0, None, "the log is empty")
    fresh = AuditLog(tmp_path / "fresh.jsonl")  # creates log + a seq-0 head
    assert verify(fresh.path).ok and verify(fresh.path).records == 0
    assert fresh.tail_sync(5) == []


def test_caller_cannot_set_chain_fields(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="seq"):
        log.append({"event": "x", "seq": 7})
    assert log.path.read_bytes() == b""


def test_values_are_stored_as_they_read_back(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    rec = log.append({"event": "x", "detail": {"refs": ("a", "b"), "n": float("nan"), "s": "caf\u00e9 \ud800"}})
    assert rec["detail"] == {"refs": ["a", "b"], "n": "nan", "s": "caf\u00e9 ?"}
    assert records_of(log.path) == [rec]
    assert verify(log.path).ok


# --------------------------------------------------------------------------
# Tampering


def test_edited_middle_record_is_caught_at_its_line(tmp_path):
    log, _ = make_log(tmp_path, 5)
    lines = lines_of(log.path)
    rec = json.loads(lines[2])
    rec["command"] = "docker rmi innocent"
    lines[2] = (json.dumps(rec) + "\n").encode()
    log.path.write_bytes(b"".join(lines))
    result = verify(log.path)
    assert (result.ok, result.bad_line, result.records) == (False, 3, 2)
    assert result.reason == "record 3: hash does not match its content (edited?)"


def test_deleted_middle_line_is_caught(tmp_path):
    log, _ = make_log(tmp_path, 5)
    lines = lines_of(log.path)
    del lines[2]
    log.path.write_bytes(b"".join(lines))
    result = verify(log.path)
    assert (result.ok, result.bad_line, result.records) == (False, 3, 2)
    assert result.reason == "record 3: its seq is 4 (a record was removed, added or reordered)"


def test_deleted_line_with_renumbered_seq_is_caught_by_prev(tmp_path):
    # Someone removes record 3 and fixes seq + hash of the ones after: prev still tells.
    log, _ = make_log(tmp_path, 5)
    recs = records_of(log.path)
    del recs[2]
    for i, r in enumerate(recs[2:], start=3):
        r["seq"] = i
        r["hash"] = spec_hash(r)
    log.path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = verify(log.path)
    assert (result.ok, result.bad_line) == (False, 3)
    assert result.reason == "record 3: prev does not match record 2 (a record was removed or reordered)"


def test_swapped_lines_are_caught(tmp_path):
    log, _ = make_log(tmp_path, 5)
    lines = lines_of(log.path)
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_bytes(b"".join(lines))
    result = verify(log.path)
    assert (result.ok, result.bad_line, result.records) == (False, 2, 1)
    assert result.reason == "record 2: its seq is 3 (a record was removed, added or reordered)"


def test_removing_the_last_records_is_caught_by_the_head(tmp_path):
    log, _ = make_log(tmp_path, 5)
    log.path.write_bytes(b"".join(lines_of(log.path)[:-2]))
    result = verify(log.path)
    assert (result.ok, result.records, result.bad_line) == (False, 3, None)
    assert result.reason == "the log ends at record 3 but its head says 5 (records were removed from the end)"
    # Appending would overwrite the head and hide the cut: refused.
    with pytest.raises(AuditLogError, match="removed from the end"):
        log.append({"event": "x"})
    assert len(lines_of(log.path)) == 3


def test_replaced_end_is_caught_by_the_head(tmp_path):
    log, _ = make_log(tmp_path, 4)
    recs = records_of(log.path)
    recs[3]["command"] = "docker rmi other"
    recs[3]["hash"] = spec_hash(recs[3])  # a consistent chain, but not the one the head remembers
    log.path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = verify(log.path)
    assert (result.ok, result.bad_line) == (False, 4)
    assert "head" in result.reason
    with pytest.raises(AuditLogError):
        log.append({"event": "x"})


def test_deleted_head_is_caught(tmp_path):
    log, _ = make_log(tmp_path, 2)
    log.head_path.unlink()
    result = verify(log.path)
    assert not result.ok and "no head file" in result.reason
    with pytest.raises(AuditLogError, match="missing"):
        log.append({"event": "x"})


def test_a_lagging_head_is_fine(tmp_path):
    # Killed between writing the log and replacing the head: the head is one behind.
    log, _ = make_log(tmp_path, 3)
    old_head = log.head_path.read_bytes()
    log.append({"event": "done"})
    log.head_path.write_bytes(old_head)
    assert verify(log.path) == audit_log.VerifyResult(True, 4, None, "4 records, chain and head intact")
    rec = log.append({"event": "after"})
    assert rec["seq"] == 5
    assert json.loads(log.head_path.read_text())["seq"] == 5
    assert verify(log.path).ok


def test_a_lagging_head_still_pins_its_record(tmp_path):
    log, _ = make_log(tmp_path, 3)
    old_head = log.head_path.read_bytes()
    log.append({"event": "done"})
    log.head_path.write_bytes(old_head)
    recs = records_of(log.path)
    recs[2]["command"] = "rewritten"  # rewrite records 3 and 4 into a consistent chain
    recs[2]["hash"] = spec_hash(recs[2])
    recs[3]["prev"] = recs[2]["hash"]
    recs[3]["hash"] = spec_hash(recs[3])
    log.path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = verify(log.path)
    assert (result.ok, result.bad_line) == (False, 3)
    with pytest.raises(AuditLogError):
        log.append({"event": "x"})


# --------------------------------------------------------------------------
# Crash recovery


def test_partial_trailing_line_is_recovered_on_next_append(tmp_path):
    log, recs = make_log(tmp_path, 3)
    fragment = b'{"seq":4,"event":"do'
    with open(log.path, "ab") as f:
        f.write(fragment)
    before = verify(log.path)
    assert (before.ok, before.bad_line) == (False, 4)
    assert "unfinished" in before.reason
    assert log.tail_sync(1)[0]["seq"] == 3  # the fragment is not shown as a record

    rec = log.append({"event": "done", "op": "op4"})
    assert rec["seq"] == 5 and rec["op"] == "op4"
    on_disk = records_of(log.path)
    assert [r["seq"] for r in on_disk] == [1, 2, 3, 4, 5]
    recovered = on_disk[3]
    assert recovered["event"] == "recovered"
    assert recovered["detail"] == {"dropped_bytes": len(fragment)}
    assert recovered["prev"] == recs[2]["hash"] and rec["prev"] == recovered["hash"]
    assert fragment not in log.path.read_bytes()
    assert verify(log.path) == audit_log.VerifyResult(True, 5, None, "5 records, chain and head intact")


def test_partial_first_line_is_recovered(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    log.path.write_bytes(b'{"se')
    rec = log.append({"event": "x"})
    assert [r["event"] for r in records_of(log.path)] == ["recovered", "x"]
    assert rec["seq"] == 2
    assert verify(log.path).ok


def test_unreadable_last_record_stops_appends(tmp_path):
    log, _ = make_log(tmp_path, 2)
    with open(log.path, "ab") as f:
        f.write(b"not json\n")
    with pytest.raises(AuditLogError, match="unreadable"):
        log.append({"event": "x"})
    result = verify(log.path)
    assert (result.ok, result.bad_line) == (False, 3)
    assert log.tail_sync(1) == [{"unreadable": "not json"}]


# --------------------------------------------------------------------------
# Concurrency


def test_threads_append_one_chain(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(50):
            log.append({"event": "done", "op": f"t{t}-{i}"})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    recs = records_of(log.path)
    assert [r["seq"] for r in recs] == list(range(1, 401))
    assert sorted(r["op"] for r in recs) == sorted(f"t{t}-{i}" for t in range(8) for i in range(50))
    assert verify(log.path) == audit_log.VerifyResult(True, 400, None, "400 records, chain and head intact")


WORKER = """
import os, sys, time
from bot.audit_log import AuditLog
path, name, go = sys.argv[1], sys.argv[2], sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.001)
log = AuditLog(path)
for i in range(100):
    log.append({"event": "done", "op": f"{name}-{i}", "pid": os.getpid()})
"""


def test_processes_append_one_chain(tmp_path):
    path = tmp_path / "shared" / "audit.jsonl"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), name, str(go)], cwd=ROOT)
             for name in ("a", "b")]
    time.sleep(0.3)  # both interpreters started and waiting
    go.touch()
    for p in procs:
        assert p.wait(timeout=60) == 0
    recs = records_of(path)
    assert [r["seq"] for r in recs] == list(range(1, 201))
    ops = [r["op"] for r in recs]
    for name in ("a", "b"):
        # each process's records, in its own order
        assert [o for o in ops if o.startswith(name + "-")] == [f"{name}-{i}" for i in range(100)]
    assert verify(path) == audit_log.VerifyResult(True, 200, None, "200 records, chain and head intact")


# --------------------------------------------------------------------------
# Reading


def write_chain(path: Path, n: int) -> None:
    """A valid log of n records built from the spec alone (fast: no fsyncs)."""
    prev = ZERO
    out = []
    for i in range(1, n + 1):
        rec = {"seq": i, "event": "done", "op": f"op{i}", "command": f"docker rmi image-{i}",
               "detail": {"pad": "x" * 100}, "at": 1_700_000_000 + i, "prev": prev}
        rec["hash"] = prev = spec_hash(rec)
        out.append(json.dumps(rec) + "\n")
    path.write_text("".join(out))
    path.with_name(path.name + ".head").write_text(json.dumps({"seq": n, "hash": prev}))


async def test_tail_of_a_large_log(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    write_chain(path, 5000)
    assert verify(path).ok and verify(path).records == 5000  # the module agrees with the spec
    log = AuditLog(path)
    size = path.stat().st_size

    read = []
    real_pread = os.pread
    monkeypatch.setattr(audit_log.os, "pread", lambda fd, n, off: read.append(n) or real_pread(fd, n, off))
    t0 = time.perf_counter()
    last3 = await log.tail(3)
    elapsed = time.perf_counter() - t0
    assert [r["seq"] for r in last3] == [4998, 4999, 5000]
    assert last3[-1]["op"] == "op5000"
    assert elapsed < 1.0
    assert sum(read) < size / 10  # read from the end, not the whole file

    assert [r["seq"] for r in log.tail_sync(1)] == [5000]
    many = log.tail_sync(1234)  # spans several read blocks
    assert [r["seq"] for r in many] == list(range(3767, 5001))
    assert [r["seq"] for r in log.tail_sync(9999)] == list(range(1, 5001))
    assert log.tail_sync(0) == [] and await log.tail(-2) == []

    rec = log.append({"event": "after"})  # appending to a log it did not write
    assert rec["seq"] == 5001


def test_tail_with_records_longer_than_a_read_block(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    big = "\u00e9" * 100_000  # 200 KB of UTF-8 a record: several 64 KiB blocks
    for i in range(1, 4):
        log.append({"event": "done", "op": f"op{i}", "detail": {"text": big}})
    last2 = log.tail_sync(2)
    assert [(r["seq"], r["op"], r["detail"]["text"] == big) for r in last2] == [(2, "op2", True), (3, "op3", True)]
    assert [r["seq"] for r in log.tail_sync(5)] == [1, 2, 3]


# --------------------------------------------------------------------------
# The AuditSink side


async def test_record_round_trips_an_event(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    event = AuditEvent(event="confirmed", op="0" * 31 + "1", command="docker rmi -f web:1", host="prod-1",
                       actor="U2", actor_name="bea", via="slack", requester="U1", confirmer="U2",
                       detail={"refs": ["web:1"], "bytes": 1234}, at=1_700_000_123.25)
    before = time.time()
    await log.record(event)
    await log.record(dataclasses.replace(event, event="running", at=0.0))
    first, second = await log.tail(2)
    assert {k: first[k] for k in dataclasses.asdict(event)} == dataclasses.asdict(event)
    assert (first["seq"], second["seq"]) == (1, 2)
    assert second["event"] == "running" and before <= second["at"] <= time.time()
    assert verify(log.path).ok


async def test_events_recorded_together_share_one_write_one_fsync_and_one_head(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "a.jsonl")
    await log.record(AuditEvent(event="requested", op="a", command="docker pull x", host="h", actor="U1"))
    synced, writes = [], []
    real_fsync, real_write = audit_log.os.fsync, audit_log.os.write
    monkeypatch.setattr(audit_log.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(audit_log.os, "write", lambda fd, data: (writes.append(data), real_write(fd, data))[1])
    event = AuditEvent(event="requested", op="b", command="docker pull y", host="h", actor="U1")
    await log.record(event, dataclasses.replace(event, event="running"))
    log_writes = [w for w in writes if w.count(b"\n") == 2]
    assert len(log_writes) == 1  # both records in one write to the log
    assert len(synced) == 2  # the log once, the head once (two single records: four)
    records = await log.tail(3)
    assert [(r["seq"], r["op"], r["event"]) for r in records] == [(1, "a", "requested"), (2, "b", "requested"),
                                                                   (3, "b", "running")]
    assert records[2]["prev"] == records[1]["hash"]
    head = json.loads((tmp_path / "a.jsonl.head").read_text())
    assert (head["seq"], head["hash"]) == (3, records[2]["hash"])
    assert verify(log.path).ok


def test_append_all_refuses_every_record_when_one_sets_a_reserved_field(tmp_path):
    log, before = make_log(tmp_path, 2)
    with pytest.raises(ValueError, match="seq"):
        log.append_all([{"event": "ok"}, {"event": "bad", "seq": 9}])
    assert len(lines_of(log.path)) == 2
    assert log.append_all([]) == []
    assert verify(log.path).ok


async def test_record_raises_when_it_cannot_write(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "a.jsonl")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(audit_log.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        await log.record(AuditEvent(event="running", op="x", command="docker rmi a", host="h", actor="U1"))


# --------------------------------------------------------------------------
# Text for people


def test_format_records_table():
    recs = [
        {"seq": 1, "event": "confirmed", "at": 0, "host": "prod-1", "actor": "U2", "actor_name": "bea",
         "command": "docker rmi web:1", "detail": {"refs": ["web:1", "web:2"], "bytes": 12}},
        {"seq": 12, "event": "recovered", "at": 1_700_000_000.9, "detail": {"dropped_bytes": 7}},
    ]
    lines = format_records(recs).split("\n")
    assert len(lines) == 3
    assert lines[0].split() == ["SEQ", "TIME", "EVENT", "HOST", "ACTOR", "COMMAND", "RESULT"]
    assert lines[1].split() == ["1", "1970-01-01T00:00:00Z", "confirmed", "prod-1", "bea",
                                "docker", "rmi", "web:1", "refs=web:1,web:2", "bytes=12"]
    assert lines[2].split() == ["12", "2023-11-14T22:13:20Z", "recovered", "dropped_bytes=7"]
    # columns line up
    assert lines[1].index("confirmed") == lines[2].index("recovered") == lines[0].index("EVENT")


def test_format_records_strips_control_characters():
    controls = "".join(map(chr, range(0x00, 0x20))) + "\x7f" + "".join(map(chr, range(0x80, 0xA0)))
    recs = [{"seq": 1, "event": "done\x07", "at": 5, "host": "h\x1b]0;pwned\x07",
             "actor": "U1", "actor_name": "ev\u202eil", "command": "docker rmi \x1b[31mred\x1b[0m",
             "detail": {"why\x9b2J": "x" + controls + "y"}},
            {"unreadable": "garbage\x1b[2J\r\n"}]
    out = format_records(recs)
    body = out.replace("\n", "")
    bad = [hex(ord(c)) for c in body if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]
    assert bad == []
    assert out.count("\n") == 2  # a newline in the data cannot add a line
    assert "[31mred" in out and "pwned" in out and "(unreadable)" in out

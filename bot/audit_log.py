"""The local audit trail: an append-only, hash-chained JSON Lines file.

Every record is one line of JSON with three fields the log adds itself:

* ``seq``  -- 1, 2, 3, ... (one per record);
* ``prev`` -- the previous record's ``hash`` (64 zeros for the first);
* ``hash`` -- sha256 (hex) of the record's canonical JSON without ``hash``.

Editing, removing or reordering a record in the middle breaks the chain.
A chain cannot show that records were cut off the *end*, so a small head
file ``<log>.head`` remembers the last record's ``seq`` and ``hash``.

The chain is not a signature: someone who can rewrite the whole file can
recompute it. It catches edits by hand, careless tools and partial restores,
and it makes every change deliberate.

Concurrency: several bot processes (and threads) may append to one file. An
append holds a thread lock and an exclusive ``flock`` on the log file while
it reads the last record, writes the new line (one ``os.write`` on an
``O_APPEND`` fd), fsyncs it and replaces the head, so the chain never forks.

Crash safety: the log is fsynced before the head is replaced, so the head is
never ahead of the log; it may lag one record behind (a process killed
between the two writes), which :func:`verify` accepts. A process killed in
the middle of a write leaves a line without its newline; the next append cuts
it off and first records ``{"event": "recovered"}`` saying how many bytes went.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from handlers.audit import COLUMNS, audit_row
from handlers.records import record

if TYPE_CHECKING:  # only a type here: importing the log need not load the use cases
    from handlers.ports import AuditEvent

__all__ = ["AuditLog", "AuditLogError", "VerifyResult", "verify", "format_records", "ZERO_HASH"]

ZERO_HASH = "0" * 64
RESERVED = ("seq", "prev", "hash")  # set by the log, never by a caller
_BLOCK = 64 * 1024  # read size when walking the log backwards


class AuditLogError(Exception):
    """The log cannot be appended to safely (its end looks tampered with or
    unreadable). Raised rather than "repaired": continuing the chain would
    overwrite the head and erase the evidence."""


# --------------------------------------------------------------------------
# Canonical form and hashing


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: Mapping) -> str:
    """sha256 hex of the canonical JSON of ``record`` without its ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data, exactly as it will read back from the file.

    The record we hash and return must equal what ``json.loads`` gives for the
    written line, or verify would disagree with append: tuples become lists,
    mappings dicts with string keys, non-finite floats strings (NaN is not
    JSON), and lone surrogates (possible in text from outside) are replaced,
    since they cannot be encoded as UTF-8.
    """
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, Mapping):
        return {_jsonable(str(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [_jsonable(v) for v in items]
    return _jsonable(str(obj))


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


# --------------------------------------------------------------------------
# Low-level file helpers


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, each with mode 0o700 (os.makedirs
    applies ``mode`` to the last directory only)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass  # another process made it first
        else:
            _fsync_dir(d.parent)


def _open_log(path: Path) -> tuple[int, bool]:
    """An O_RDWR|O_APPEND fd on the log and whether this call created it."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        return os.open(path, flags), False


def _tail_lines(fd: int, size: int, n: int) -> tuple[list[bytes], int]:
    """The last ``n`` complete lines (without newline) of the first ``size``
    bytes of ``fd``, oldest first, and the length of an unterminated tail.

    Reads backwards in blocks until it has seen n + 1 newlines (or the start),
    so the cost depends on n, not on the size of the log.
    """
    chunks: list[bytes] = []
    newlines = 0
    pos = size
    while pos > 0 and newlines <= n:
        step = min(_BLOCK, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        if len(chunk) != step:
            raise AuditLogError("the audit log shrank while it was being read")
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    lines = data.split(b"\n")
    partial = len(lines.pop())  # after the last newline: b"" or an unfinished write
    # When pos > 0 the first piece may start mid-line; we saw n + 1 newlines,
    # so there are at least n whole lines after it and [-n:] leaves it out.
    return (lines[-n:] if n > 0 else []), partial


def _parse_line(line: bytes) -> dict | None:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_head(path: Path) -> tuple[bool, dict | None]:
    """(exists, head) -- head is None when the file exists but is not a valid head."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False, None
    head = _parse_line(raw.strip())
    if (head is None or not _is_seq(head.get("seq")) or head["seq"] < 0
            or not isinstance(head.get("hash"), str)):
        return True, None
    return True, head


def _write_head(path: Path, seq: int, hash_: str) -> None:
    """Replace the head atomically: a reader sees the old head or the new one.

    No directory fsync after the rename: if a power cut loses it, the old head
    survives and merely lags behind the log, which verify accepts.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = (canonical_json({"seq": seq, "hash": hash_}) + "\n").encode()
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {tmp}")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# The log


class AuditLog:
    """A local append-only audit log; implements ``handlers.ports.AuditSink``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.head_path = _head_path(self.path)
        self._lock = threading.Lock()
        _make_dirs(self.path.parent)
        fd, created = _open_log(self.path)
        try:
            if created:
                # A head at seq 0 from the start: from now on a missing head
                # means it was deleted, and a process killed between the first
                # record and its head only leaves a lagging head (accepted).
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self.head_path.exists():
                    _write_head(self.head_path, 0, ZERO_HASH)
                _fsync_dir(self.path.parent)
        finally:
            os.close(fd)  # also releases the flock

    # -- writing -------------------------------------------------------------

    def append(self, fields: Mapping) -> dict:
        """Append one record made of ``fields`` + seq/prev/hash; return it.

        Durable when it returns (fsynced). Raises on any failure, including a
        log whose end does not match its head (:class:`AuditLogError`).
        """
        return self.append_all([fields])[-1]

    def append_all(self, many: Sequence[Mapping]) -> list[dict]:
        """Append several records in order, in one write, one fsync and one
        head update: all of them are durable when it returns, or none is
        appended. Returns them with their seq/prev/hash."""
        bodies = []
        for fields in many:
            clash = [k for k in RESERVED if k in fields]
            if clash:
                raise ValueError(f"audit fields may not set {', '.join(clash)}: the log sets them")
            bodies.append(_jsonable(dict(fields)))
        if not bodies:
            return []
        with self._lock:
            # Opened per append, not kept open: if the file is moved aside
            # (rotation) or deleted, we write to the file at the path, and the
            # head check below notices a log that lost its records.
            fd, created = _open_log(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                return self._append_locked(fd, created, bodies)
            finally:
                os.close(fd)  # releases the flock

    def _append_locked(self, fd: int, created: bool, bodies: list[dict]) -> list[dict]:
        size = os.fstat(fd).st_size
        lines, partial = _tail_lines(fd, size, 1)
        last = None
        if lines:
            last = _parse_line(lines[-1])
            if last is None or not _is_seq(last.get("seq")) or not isinstance(last.get("hash"), str):
                raise AuditLogError(f"the last record of {self.path} is unreadable; run verify")
        last_seq = last["seq"] if last else 0
        last_hash = last["hash"] if last else ZERO_HASH
        self._check_head(fd, size, last_seq, last_hash)

        start = size - partial
        new: list[dict] = []
        if partial:
            # A process died mid-write: cut the unfinished line off and put the
            # repair itself on the record before the caller's record.
            os.ftruncate(fd, start)
            new.append({"event": "recovered", "at": time.time(), "detail": {"dropped_bytes": partial}})
        new.extend(bodies)

        records = []
        seq, prev = last_seq, last_hash
        for fields in new:
            seq += 1
            record = {"seq": seq, **fields, "prev": prev}
            record["hash"] = prev = record_hash(record)
            records.append(record)
        data = "".join(canonical_json(r) + "\n" for r in records).encode("utf-8")

        written = os.write(fd, data)  # one write: O_APPEND puts it whole at the end
        if written != len(data):
            # Disk full or similar: take the fragment back rather than leave
            # it for the next append to "recover".
            os.ftruncate(fd, start)
            raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
        os.fsync(fd)
        if created:
            _fsync_dir(self.path.parent)
        # Head after the log is durable, so the head is never ahead of it.
        _write_head(self.head_path, seq, prev)
        return records[len(records) - len(bodies):]

    def _check_head(self, fd: int, size: int, last_seq: int, last_hash: str) -> None:
        """Refuse to extend a log that is shorter than its head says.

        Appending would overwrite the head with the new end and so hide that
        records were removed; failing here stops unaudited actions instead.
        """
        exists, head = _read_head(self.head_path)
        if not exists:
            if last_seq == 0:
                return  # a new, empty log
            raise AuditLogError(f"{self.head_path} is missing but the log has records; run verify")
        if head is None:
            raise AuditLogError(f"{self.head_path} is unreadable; run verify")
        if head["seq"] > last_seq:
            raise AuditLogError(f"{self.path} ends at record {last_seq} but its head says "
                                f"{head['seq']} (records were removed from the end); run verify")
        if head["seq"] == last_seq:
            if head["hash"] != last_hash:
                raise AuditLogError(f"record {last_seq} of {self.path} differs from its head; run verify")
            return
        # The head lags (a process was killed between log and head): the
        # record at head.seq must still be the one the head remembers.
        if head["seq"] == 0:
            ok = head["hash"] == ZERO_HASH
        else:
            lines, _ = _tail_lines(fd, size, last_seq - head["seq"] + 1)
            rec = _parse_line(lines[0]) if lines else None
            ok = rec is not None and rec.get("seq") == head["seq"] and rec.get("hash") == head["hash"]
        if not ok:
            raise AuditLogError(f"record {head['seq']} of {self.path} differs from its head; run verify")

    async def record(self, *events: AuditEvent) -> None:
        """Write ``events`` durably, in order, in one write; raise when it
        cannot (never swallowed: an unaudited destructive action must not
        proceed)."""
        many = []
        for event in events:
            # Shallow, then _jsonable converts: dataclasses.asdict would deep-copy
            # ``detail``, which fails for a read-only mapping (MappingProxyType).
            fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
            if not fields["at"]:
                fields["at"] = time.time()
            many.append(fields)
        await asyncio.to_thread(self.append_all, many)

    # -- reading -------------------------------------------------------------

    def tail_sync(self, n: int) -> list[dict]:
        """The last ``n`` records, oldest first. An unfinished last line is
        skipped; a line that is not a JSON object comes back as
        ``{"unreadable": text}`` (this is for people to look at: run
        :func:`verify` to judge the log)."""
        if n <= 0:
            return []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        try:
            # Shared lock: never read a line while an append is writing it.
            fcntl.flock(fd, fcntl.LOCK_SH)
            lines, _ = _tail_lines(fd, os.fstat(fd).st_size, n)
        finally:
            os.close(fd)
        out = []
        for line in lines:
            rec = _parse_line(line)
            out.append(rec if rec is not None else {"unreadable": line.decode("utf-8", "replace")})
        return out

    async def tail(self, n: int) -> list[dict]:
        return await asyncio.to_thread(self.tail_sync, n)


# --------------------------------------------------------------------------
# Verification


@record
class VerifyResult:
    ok: bool
    records: int  # records checked and found good (all of them when ok)
    bad_line: int | None  # 1-based line of the first bad record; None when no line is to blame
    reason: str


def verify(path: str | os.PathLike) -> VerifyResult:
    """Check the whole chain of the log at ``path``, then its head."""
    path = Path(path)
    head_path = _head_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return VerifyResult(False, 0, None, f"there is no audit log at {path}")
    with os.fdopen(fd, "rb") as f:
        # Snapshot under a shared lock (no append in progress): the head and
        # the size go together, and every byte below that size is a finished
        # write. The long scan then runs unlocked, not blocking appends.
        fcntl.flock(fd, fcntl.LOCK_SH)
        size = os.fstat(fd).st_size
        head_exists, head = _read_head(head_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        result, count, hash_at_head = _verify_chain(f, size, head["seq"] if head else -1)
    if result is not None:
        return result

    def bad(reason: str, line: int | None = None) -> VerifyResult:
        return VerifyResult(False, count, line, reason)

    if not head_exists:
        if count == 0:
            return VerifyResult(True, 0, None, "the log is empty")
        return bad(f"the log has {count} records but no head file at {head_path} (deleted?)")
    if head is None:
        return bad(f"the head file {head_path} is unreadable")
    if head["seq"] > count:
        return bad(f"the log ends at record {count} but its head says {head['seq']} "
                   "(records were removed from the end)")
    if head["seq"] == 0:
        if head["hash"] != ZERO_HASH:
            return bad(f"the head file {head_path} says record 0 with a non-zero hash")
    elif hash_at_head != head["hash"]:
        return bad(f"record {head['seq']}: hash differs from the head's "
                   "(the end of the log was replaced)", head["seq"])
    # head["seq"] < count is fine: a process was killed between log and head.
    return VerifyResult(True, count, None, f"{count} records, chain and head intact")


def _verify_chain(f, size: int, head_seq: int) -> tuple[VerifyResult | None, int, str | None]:
    """Walk the lines of ``f`` up to ``size``: (failure or None, good records,
    the hash of record ``head_seq`` if seen)."""
    prev = ZERO_HASH
    hash_at_head = None
    offset = 0
    n = 0
    while offset < size:
        line = f.readline()
        if not line:
            break  # the file shrank after the snapshot
        line = line[: size - offset]  # ignore what was appended after the snapshot
        offset += len(line)
        lineno = n + 1

        def bad(reason: str) -> tuple[VerifyResult, int, None]:
            return VerifyResult(False, n, lineno, reason), n, None

        if not line.endswith(b"\n"):
            return bad(f"line {lineno}: the last line is unfinished "
                       "(a write was interrupted; the next append repairs it)")
        rec = _parse_line(line[:-1])
        if rec is None:
            return bad(f"line {lineno}: not a JSON object")
        if rec.get("hash") != record_hash(rec):
            return bad(f"record {lineno}: hash does not match its content (edited?)")
        if rec.get("seq") != lineno or not _is_seq(rec.get("seq")):
            return bad(f"record {lineno}: its seq is {rec.get('seq')!r} "
                       "(a record was removed, added or reordered)")
        if rec.get("prev") != prev:
            previous = f"record {lineno - 1}" if lineno > 1 else "the start of the log"
            return bad(f"record {lineno}: prev does not match {previous} "
                       "(a record was removed or reordered)")
        prev = rec["hash"]
        n = lineno
        if n == head_seq:
            hash_at_head = prev
    return None, n, hash_at_head


# --------------------------------------------------------------------------
# Text for people

# C0, DEL and C1 controls could drive a terminal (escape sequences, bells,
# CSI as \x9b); line/paragraph separators break lines in some viewers; bidi
# overrides and isolates reorder what is shown (Trojan Source). All of it
# comes from outside (users, registries), so none of it reaches the screen.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_HEADERS = COLUMNS
_MAX_CELL = {"COMMAND": 60, "RESULT": 80}


def _clean(text: Any) -> str:
    return _UNSAFE.sub(" ", str(text))


def _clip(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def format_records(records: Iterable[Mapping]) -> str:
    """A plain text table, one line per record, safe to print to a terminal."""
    rows = [_HEADERS] + [
        tuple(_clip(_clean(cell).strip(), _MAX_CELL.get(name)) for name, cell in zip(_HEADERS, audit_row(r)))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )

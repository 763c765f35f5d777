"""The operation store: :class:`handlers.ports.OperationStore` on SQLite.

Pending confirmations, running operations and the deliveries already seen
live in one SQLite file (``state.db`` in the bot's state directory), so they
survive a restart and can later be shared by several bot processes.

Facts this module relies on:

* ``sqlite3`` blocks. Every database call therefore runs in ONE worker
  thread owned by the store (``ThreadPoolExecutor(max_workers=1)``), which
  also owns the connection; the event loop only awaits the result. One
  thread also means calls of one store run one after another, in the order
  they were made, and the connection is never used from two threads.
* Atomicity comes from SQLite, not from that thread: the same file may be
  used by other stores and other processes. A transition is one conditional
  ``UPDATE ... WHERE id=? AND state IN (...)`` inside a ``BEGIN IMMEDIATE``
  transaction; the rowcount tells whether this caller won (1) or someone
  else got there first (0). ``BEGIN IMMEDIATE`` takes the write lock up
  front, so the row read back after the update is exactly what we wrote,
  and a waiting writer goes through ``busy_timeout`` instead of failing at
  once with SQLITE_BUSY as a deferred read-then-write transaction can in WAL
  mode.
* WAL lets readers and one writer work at the same time (several processes);
  ``synchronous=FULL`` syncs the WAL on every commit, so a confirmation or a
  state change that returned survives a power cut, not only a crash.
* The connection runs in autocommit mode (``isolation_level=None``):
  Python's implicit transactions are off and every multi-statement write is
  an explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from handlers.ports import FINAL_STATES, OP_STATES, Operation

T = TypeVar("T")

DB_NAME = "state.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write lock
CLOSED_MESSAGE = "the state store is closed"

# The columns, in Operation's field order; _insert and _to_operation rely on
# the names matching the dataclass. A new Operation field therefore needs a
# migration, and INSERT fails loudly ("no column named ...") until it has one.
_COLUMNS = tuple(f.name for f in fields(Operation))
_JSON_COLUMNS = frozenset({"plan", "message", "result"})

# Version 1. There is deliberately no CHECK on `state`: SQLite cannot alter a
# CHECK constraint without rebuilding the table, and OP_STATES may grow; the
# store validates states in Python instead.
_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        command TEXT NOT NULL,
        host TEXT NOT NULL,
        requester TEXT NOT NULL,
        requester_name TEXT NOT NULL DEFAULT '',
        via TEXT NOT NULL DEFAULT 'slack',
        channel TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL DEFAULT '',
        plan TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL DEFAULT 0,
        needs_approver INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        decided_by TEXT NOT NULL DEFAULT '',
        decided_by_name TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '{}',
        result TEXT NOT NULL DEFAULT '{}',
        updated_at REAL NOT NULL DEFAULT 0
    )""",
    # due() and in_state() filter on state; purge() on state + updated_at.
    "CREATE INDEX IF NOT EXISTS operations_state_expires ON operations (state, expires_at)",
    "CREATE INDEX IF NOT EXISTS operations_state_updated ON operations (state, updated_at)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        key TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS deliveries_seen_at ON deliveries (seen_at)",
)

# MIGRATIONS[v] brings a database at version v-1 to version v.
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA_V1}


def _to_json(value: Mapping, column: str) -> str:
    """A Mapping as JSON text; nested Mappings (not only dicts) are accepted."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(f"{column}: {type(obj).__name__} is not JSON serialisable")

    if not isinstance(value, Mapping):
        raise TypeError(f"{column} must be a mapping, not {type(value).__name__}")
    # allow_nan=False: NaN/Infinity are not JSON; refuse them on the way in
    # rather than store something another reader cannot parse.
    return json.dumps(dict(value), default=default, allow_nan=False, separators=(",", ":"))


def _check_state(state: str, what: str) -> None:
    if state not in OP_STATES:
        raise ValueError(f"unknown {what} {state!r} (expected one of {', '.join(OP_STATES)})")


class SqliteStore:
    """Operations and deliveries in one SQLite file; see the module docstring.

    ``SqliteStore(db_path)`` returns at once: the connection is opened (and
    the schema created or migrated) in the store's thread, starting now; a
    failure there is raised by the first call and retried by the next one.
    """

    def __init__(self, db_path: str | os.PathLike[str]):
        self.path = Path(db_path)
        self._conn: sqlite3.Connection | None = None
        self._closed = False  # close() was called: refuse new calls (event loop side)
        self._conn_closed = False  # the connection was closed (store thread side)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dockhand-store")
        # Start connecting now so the first real call does not pay for it.
        # Its outcome is not awaited: each job connects again if needed.
        self._executor.submit(self._connection)

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str]) -> SqliteStore:
        """The store in ``state_dir/state.db``; creates ``state_dir`` (mode 0o700,
        only the bot's user may read confirmations and who made them)."""
        state_dir = Path(state_dir)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(state_dir / DB_NAME)

    # ---------------------------------------------------------------- plumbing

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the store's thread."""
        if self._closed:
            raise RuntimeError(CLOSED_MESSAGE)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, *args))

    def _call(self, fn: Callable[..., T], *args: Any) -> T:  # in the store's thread
        return fn(self._connection(), *args)

    def _connection(self) -> sqlite3.Connection:  # in the store's thread
        if self._conn is None:
            if self._conn_closed:  # never reopen behind close()'s back
                raise RuntimeError(CLOSED_MESSAGE)
            # timeout= is SQLite's busy_timeout: how long a statement waits
            # for a lock another connection (or process) holds.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @staticmethod
    def _prepare(conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        # The busy timeout is already set (connect's timeout=): the pragmas and
        # the schema below may wait on another process creating the same file.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            # e.g. a file system without shared memory support: refuse rather
            # than silently lose cross-process safety or durability.
            raise RuntimeError(f"cannot use WAL journal mode for the state store (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        with _write(conn):
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the state store is at schema version {version}, newer than this Dockhand knows "
                    f"({SCHEMA_VERSION}); upgrade Dockhand or use another state directory"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    async def close(self) -> None:
        """Close the connection (in its thread) and stop the thread. Calls made
        before ``close`` still complete; calls after it raise RuntimeError.
        Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True  # from now on _run refuses; earlier jobs are queued ahead of ours
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_connection)
        finally:
            # The worker is idle now (ours was the last job): no need to wait.
            self._executor.shutdown(wait=False)

    def _close_connection(self) -> None:  # in the store's thread
        self._conn_closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # ---------------------------------------------------------------- operations

    async def add(self, op: Operation) -> None:
        """Store a new operation; ValueError when its id is already taken."""
        _check_state(op.state, "state")
        values = tuple(_to_json(getattr(op, c), c) if c in _JSON_COLUMNS else getattr(op, c) for c in _COLUMNS)
        await self._run(_insert, values)

    async def get(self, op_id: str) -> Operation | None:
        return await self._run(_get, op_id)

    async def transition(self, op_id: str, from_states: Sequence[str], to_state: str, *, now: float,
                         by: str = "", by_name: str = "", result: Mapping | None = None) -> Operation | None:
        """Atomically move ``op_id`` from one of ``from_states`` to ``to_state``
        (across processes); the updated operation, or None when it does not
        exist or is in none of ``from_states``. Sets ``updated_at = now``;
        ``decided_by``/``decided_by_name`` only when ``by`` is given;
        ``result`` only when given."""
        if isinstance(from_states, str):
            # A str is a Sequence[str] too: "pending" would mean the states
            # "p", "e", "n", ... and never match. Say so instead.
            raise TypeError("from_states must be a sequence of states, not a str")
        from_states = tuple(from_states)
        _check_state(to_state, "to_state")
        # An unknown from-state would never match and look exactly like
        # "someone else got there first": refuse the typo loudly.
        for s in from_states:
            _check_state(s, "from_state")
        if not from_states:
            return None
        sets = {"state": to_state, "updated_at": now}
        if by:
            sets["decided_by"] = by
            sets["decided_by_name"] = by_name
        if result is not None:
            sets["result"] = _to_json(result, "result")
        return await self._run(_transition, op_id, from_states, sets)

    async def set_message(self, op_id: str, message: Mapping) -> None:
        """Record the front end's handle on the operation's message;
        KeyError when there is no such operation."""
        found = await self._run(_set_message, op_id, _to_json(message, "message"))
        if not found:
            raise KeyError(op_id)

    async def due(self, now: float) -> list[Operation]:
        """Pending operations with ``expires_at <= now``, soonest expired first."""
        return await self._run(
            _select, "WHERE state = 'pending' AND expires_at <= ? ORDER BY expires_at, rowid", (now,)
        )

    async def in_state(self, state: str) -> list[Operation]:
        """Every operation in ``state``, oldest (created) first."""
        _check_state(state, "state")
        return await self._run(_select, "WHERE state = ? ORDER BY created_at, rowid", (state,))

    async def purge(self, now: float, keep_seconds: float) -> int:
        """Delete operations in a final state last updated before
        ``now - keep_seconds``; how many were deleted. Pending and running
        operations are never purged, however old."""
        return await self._run(_purge, now - keep_seconds)

    # ---------------------------------------------------------------- deliveries

    async def first_delivery(self, key: str, *, now: float, ttl: float) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds, by any
        store or process sharing the file. Keys seen before ``now - ttl`` are
        forgotten first, so a key may come back after ``ttl``."""
        return await self._run(_first_delivery, key, now, ttl)


# ------------------------------------------------------------------------------
# The jobs, run in the store's thread with its connection.


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction holding SQLite's write lock from the start (so
    other processes wait on busy_timeout rather than interleave)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # some errors (SQLITE_FULL, ...) roll back by themselves
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _to_operation(row: sqlite3.Row) -> Operation:
    values = {c: row[c] for c in _COLUMNS}
    for c in _JSON_COLUMNS:
        values[c] = json.loads(values[c])  # plain dicts and lists
    values["needs_approver"] = bool(values["needs_approver"])
    return Operation(**values)


def _insert(conn: sqlite3.Connection, values: tuple) -> None:
    sql = f"INSERT INTO operations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    try:
        conn.execute(sql, values)
    except sqlite3.IntegrityError as e:
        # The only constraint a well-formed Operation can break is the key.
        raise ValueError(f"operation {values[0]!r} already exists") from e


def _get(conn: sqlite3.Connection, op_id: str) -> Operation | None:
    row = conn.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
    return _to_operation(row) if row else None


def _transition(conn: sqlite3.Connection, op_id: str, from_states: tuple[str, ...],
                sets: dict[str, Any]) -> Operation | None:  # fmt: skip
    # Column names come from the code above, never from the caller.
    assignments = ", ".join(f"{c} = ?" for c in sets)
    marks = ", ".join("?" * len(from_states))
    with _write(conn):
        cur = conn.execute(
            f"UPDATE operations SET {assignments} WHERE id = ? AND state IN ({marks})",
            (*sets.values(), op_id, *from_states),
        )
        if cur.rowcount != 1:
            return None  # unknown id, or another caller moved it first
        # Still inside the transaction: nobody can have changed it since.
        return _get(conn, op_id)


def _set_message(conn: sqlite3.Connection, op_id: str, message: str) -> bool:
    return conn.execute("UPDATE operations SET message = ? WHERE id = ?", (message, op_id)).rowcount == 1


def _select(conn: sqlite3.Connection, where: str, params: tuple) -> list[Operation]:
    return [_to_operation(row) for row in conn.execute(f"SELECT * FROM operations {where}", params)]


def _purge(conn: sqlite3.Connection, before: float) -> int:
    marks = ", ".join("?" * len(FINAL_STATES))
    cur = conn.execute(
        f"DELETE FROM operations WHERE state IN ({marks}) AND updated_at < ?", (*sorted(FINAL_STATES), before)
    )
    return cur.rowcount


def _first_delivery(conn: sqlite3.Connection, key: str, now: float, ttl: float) -> bool:
    with _write(conn):
        # Forget first, so a key last seen more than ttl ago counts as new.
        # Strictly older: a key seen exactly ttl ago is still "within ttl".
        conn.execute("DELETE FROM deliveries WHERE seen_at < ?", (now - ttl,))
        # The primary key makes this atomic across processes on its own;
        # the transaction only keeps the clean-up and the insert together.
        cur = conn.execute("INSERT OR IGNORE INTO deliveries (key, seen_at) VALUES (?, ?)", (key, now))
        return cur.rowcount == 1

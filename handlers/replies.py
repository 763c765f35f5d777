"""The neutral reply model.

Handlers return a :class:`Reply`; front ends never see Docker objects and
handlers never see Slack or terminal details. Renderers
(``bot/render/text.py``, ``bot/render/blockkit.py``) turn a Reply into what
their platform shows. Every part is an immutable value so a reply can be
rendered twice (e.g. re-paginated) without surprises.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import field
from typing import Any, Union

from .records import record


class Status(enum.IntEnum):
    """Outcome of a command; the values are the shell's exit statuses."""

    OK = 0
    FAILED = 1  # the command ran and failed (image not found, engine down, ...)
    USAGE = 2  # the command line itself was wrong


VOLATILE_COLUMNS = frozenset({"CREATED"})


@record
class Table:
    """Rows under CLI-style column headers (``REPOSITORY TAG IMAGE ID ...``).

    ``headerless`` tables (``docker images -q``) print rows only.

    ``values``: the real quantity behind a cell the CLI shows in words, so a
    front end can sort by it: one tuple per row, one entry per column, a
    number (bytes for SIZE, epoch seconds for CREATED, a count for STARS) or
    None where the cell has none. Empty when no column has any. The words in
    ``rows`` stay what is shown; ``values`` never changes them.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    headerless: bool = False
    values: tuple[tuple[float | None, ...], ...] = field(default=(), compare=False)

    def value(self, row: int, column: int) -> float | None:
        """The real value behind cell (row, column), or None."""
        if row < len(self.values) and column < len(self.values[row]):
            return self.values[row][column]
        return None

    def numeric_columns(self) -> frozenset[int]:
        """Columns that carry a real value in at least one row."""
        return frozenset(i for vals in self.values for i, v in enumerate(vals) if v is not None)

    def fingerprint(self) -> str:
        """A short digest of the rows: lets a paginator tell the list changed.

        Columns whose text moves with the clock (CREATED: "2 seconds ago")
        are left out: an image getting a second older is no change."""
        keep = [i for i, name in enumerate(self.columns) if name not in VOLATILE_COLUMNS]
        h = hashlib.sha256()
        for row in self.rows:
            h.update("\x1f".join(row[i] for i in keep if i < len(row)).encode())
            h.update(b"\x1e")
        return h.hexdigest()[:16]


@record
class Preformatted:
    """CLI-style text shown verbatim in a monospace block (info, version, usage)."""

    text: str


@record
class Notice:
    """A sentence for a person (``Removal is not enabled yet.``)."""

    text: str


@record
class ErrorPart:
    """What went wrong, in the CLI's words, and what to do about it."""

    message: str
    hint: str = ""


# A layer in one of these states is on the host: nothing more to fetch or unpack.
LAYER_DONE = frozenset({"Pull complete", "Already exists"})
# ... and in one of these its download is over (what follows is checking and unpacking).
LAYER_DOWNLOADED = LAYER_DONE | frozenset({"Download complete", "Verifying Checksum", "Extracting"})


@record
class LayerProgress:
    """One layer of a pull as the engine last reported it (``current``/``total``:
    that step's own progress, as the CLI prints it), plus what the transfer
    has done so far: ``size`` (its download size, once the engine said it)
    and ``downloaded`` (bytes of it received)."""

    id: str
    status: str
    current: int = 0
    total: int = 0
    size: int = 0
    downloaded: int = 0

    @property
    def done(self) -> bool:
        return self.status in LAYER_DONE


@record
class Progress:
    """Live state of a long operation (a pull): one line per layer plus a
    status, and how long it has run (``elapsed``, seconds)."""

    title: str
    layers: tuple[LayerProgress, ...] = ()
    status: str = ""
    done: bool = False
    elapsed: float = 0.0

    @property
    def layers_done(self) -> int:
        return sum(1 for layer in self.layers if layer.done)

    @property
    def bytes_done(self) -> int:
        return sum(layer.downloaded for layer in self.layers)

    @property
    def bytes_total(self) -> int:
        """Bytes to download as far as known (layers not started yet add theirs later)."""
        return sum(layer.size for layer in self.layers)

    @property
    def sizes_known(self) -> bool:
        """Every layer's download size is known (or it needs none): the total is final."""
        return all(layer.size or layer.done for layer in self.layers)

    def fraction(self) -> float | None:
        """How far along, 0..1, by bytes: known once every layer's size is
        (before that a figure would jump back as sizes arrive): None."""
        if self.done or (self.layers and self.layers_done == len(self.layers)):
            return 1.0
        if self.layers and self.sizes_known and self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        return None


@record
class Action:
    """A follow-up command a person can run with one click (a Slack button).

    Actions sharing a ``group`` are offered together as one menu named by the
    group ("Pull an image…": one entry per search result)."""

    label: str
    command: str
    group: str = ""


@record
class Confirmation:
    """A question only a person can answer: run the planned operation ``op``?

    Front ends ask it their own way (Slack: Confirm and Cancel buttons; the
    terminal: a y/N prompt) and answer through ``handlers.operations``."""

    op: str  # the operation's opaque id
    question: str  # "Remove these images from prod-web-1?"
    expires_at: float  # epoch seconds
    who: str  # who may confirm, in words ("the requester", "an approver other than the requester")
    verb: str = "Remove"  # what confirming does, for a button ("Remove", "Pull")


@record
class HostHeading:
    """Where one host's section of a reply begins (a command run on several
    hosts at once): the parts after it, up to the next heading, are that
    host's answer. ``ok``: it answered without an error; ``detail``: a few
    words when not ("did not answer within 2 s")."""

    host: str
    ok: bool = True
    engine_version: str = ""
    detail: str = ""
    note: str = ""  # what people must know about that engine (the sample engine)
    pending: bool = False  # an interim reply: this host has not answered yet (``detail``: until when)


Part = Union[Table, Preformatted, Notice, ErrorPart, Progress, Confirmation, HostHeading]


@record
class Reply:
    """Everything a front end needs to answer one command."""

    command: str
    parts: tuple[Part, ...]
    status: Status = Status.OK
    summary: str = ""  # one plain line: notification text, logs
    actions: tuple[Action, ...] = ()
    host: str = ""  # which engine answered (context line)
    engine_version: str = ""
    meta: dict = field(default_factory=dict, compare=False)
    # the mutating operation this reply is about, in the state it reached
    # (front ends keep their audit message in step with it)
    operation: Any = field(default=None, compare=False)
    # what people must know about that engine, shown with the context line
    # ("Dockhand's sample engine: ..."); empty for a real host
    engine_note: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def with_context(self, host: str, engine_version: str, engine_note: str = "") -> "Reply":
        return Reply(self.command, self.parts, self.status, self.summary,
                     self.actions, host, engine_version, dict(self.meta), self.operation, engine_note)

    @property
    def confirmation(self) -> "Confirmation | None":
        """The first question this reply asks (a plan asks one)."""
        return next((p for p in self.parts if isinstance(p, Confirmation)), None)

    @property
    def confirmations(self) -> "tuple[Confirmation, ...]":
        """Every question this reply asks, in order. A plan asks one; the
        answer to a confirmation over several hosts asks one more for each
        host whose plan changed in between (its new plan, a pending operation
        of that host). Each is settled on its own, through
        ``handlers.operations.confirm``/``cancel`` with its ``op``."""
        return tuple(p for p in self.parts if isinstance(p, Confirmation))


def error_reply(command: str, message: str, hint: str = "",
                status: Status = Status.FAILED) -> Reply:
    return Reply(command=command, parts=(ErrorPart(message, hint),),
                 status=status, summary=message.splitlines()[0] if message else "error")

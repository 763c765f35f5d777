"""What handlers need from the outside world, as plain data and a Protocol.

``bot/engine.py`` implements :class:`Engine` with the docker SDK; tests may
implement it with fakes. Nothing here imports Docker or Slack.
"""

from __future__ import annotations

from dataclasses import field
from typing import AsyncIterator, Mapping, Protocol, Sequence

from .records import record


@record
class ImageSummary:
    """One entry of ``GET /images/json``."""

    id: str  # "sha256:<64 hex>"
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    created: int = 0  # epoch seconds
    size: int = 0  # bytes
    containers: int = -1
    labels: Mapping[str, str] = field(default_factory=dict)
    parent_id: str = ""


@record
class ContainerRef:
    id: str
    name: str
    state: str  # running, exited, created, paused, ...
    image: str  # what the container was created from (as given)
    image_id: str


@record
class PullEvent:
    """One decoded event of the engine's pull stream."""

    status: str = ""
    id: str = ""  # layer id (12 hex) or the tag for the header line
    current: int = 0
    total: int = 0
    error: str = ""  # set when the stream reported an error (errorDetail)


@record
class RemoveResult:
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@record
class PruneResult:
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    space_reclaimed: int = 0


@record
class DiskUsage:
    layers_size: int = 0  # bytes of every image layer on the host
    # per image ID: what deleting that image alone frees (its size less the
    # layers it shares with other images: `docker system df -v` UNIQUE SIZE)
    unique: Mapping[str, int] = field(default_factory=dict)
    # per image ID: the containers (running or not) using it, as the engine
    # counts them for `docker system df` (its ACTIVE column: images with some)
    containers: Mapping[str, int] = field(default_factory=dict)

    @property
    def reclaimable(self) -> int:
        """Bytes ``docker system df`` calls reclaimable for images: all layers
        less what the images in use hold on their own (docker/cli's rule)."""
        used = sum(self.unique.get(i, 0) for i, n in self.containers.items() if n)
        return max(0, self.layers_size - used)

    @property
    def active(self) -> int:
        return sum(1 for n in self.containers.values() if n)


@record
class SearchResult:
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


@record
class RunLimits:
    """What one smoke-test container (``docker run``) may use: the host's
    settings (DOCKHAND_RUN_*). It never has a network, and its root
    filesystem is read-only whatever these say."""

    memory: int = 256 * 1024 * 1024  # bytes of memory, swap included (no swap beyond it)
    cpus: float = 1.0  # CPUs' worth of time
    pids: int = 128  # processes and threads at once
    timeout: float = 30.0  # seconds from start; then it is killed
    tmpfs: int = 16 * 1024 * 1024  # bytes of a writable /tmp (memory, counted in ``memory``)


@record
class RunResult:
    """How a smoke-test container ended. It has been removed (``removed``)
    unless ``cleanup_error`` says why not."""

    exit_code: int  # the container's exit status; -1 when unknown
    output_tail: str = ""  # the last lines of stdout and stderr, bounded; untrusted text
    timed_out: bool = False  # still running at the time limit: killed
    image_id: str = ""  # the image the container ran ("sha256:…")
    container: str = ""  # the container's name ("dockhand-run-…")
    truncated: bool = False  # earlier output was left out
    oom_killed: bool = False  # the kernel killed it for its memory limit
    duration: float = 0.0  # seconds it ran
    removed: bool = True
    cleanup_error: str = ""


Filters = Mapping[str, Sequence[str]]


class Engine(Protocol):
    """A Docker Engine on one host. Every method may raise a
    :class:`handlers.errors.EngineError` subclass; none blocks the event loop."""

    @property
    def host(self) -> str: ...

    async def list_images(self, *, all: bool = False, filters: Filters | None = None) -> list[ImageSummary]: ...

    async def inspect_image(self, ref: str) -> dict: ...

    def pull(self, repository: str, tag: str, *, owner: str = "", platform: str = "") -> AsyncIterator[PullEvent]:
        """Pull ``repository:tag``, events as the engine sends them. ``owner``
        says on whose behalf (``Actor.id``): registry calls are shared fairly
        between people and registries; "" is nobody in particular.
        ``platform`` (``os[/arch[/variant]]``): that variant, "" the engine's own."""
        ...

    async def remove_image(self, ref: str, *, force: bool = False, noprune: bool = False) -> RemoveResult: ...

    async def remove_many(self, calls: Sequence[tuple[str, bool, bool]]) -> "list[RemoveResult | Exception]":
        """``remove_image(ref, force=, noprune=)`` for each call, in order, as
        one batch (what a confirmed plan runs). Each outcome is the call's
        RemoveResult or its typed EngineError; a failed call does not stop
        the next ones, as ``docker rmi A B C`` goes on."""
        ...

    async def prune_images(self, *, all: bool = False, filters: Filters | None = None) -> PruneResult: ...

    async def search(self, term: str, *, limit: int = 25, filters: Filters | None = None,
                     owner: str = "") -> list[SearchResult]:
        """``docker search TERM`` on the index the term names; ``owner`` as for :meth:`pull`."""
        ...

    async def info(self) -> dict: ...

    async def version(self) -> dict: ...

    async def containers_using(self, image_id: str) -> list[ContainerRef]: ...

    async def images_in_use(self) -> frozenset[str]:
        """Full IDs of the images any container, running or not, was made from."""
        ...

    async def list_containers(self) -> list[ContainerRef]:
        """Every container, running or not (one call)."""
        ...

    async def disk_usage(self) -> "DiskUsage":
        """Image disk usage as ``docker system df -v`` counts it (one call)."""
        ...

    # The limits a smoke test runs with on this host (settings).
    run_limits: RunLimits

    async def run_container(self, image: str, command: Sequence[str] = (), *,
                            entrypoint: Sequence[str] | None = None, limits: RunLimits,
                            tail_lines: int = 50, tail_bytes: int = 8192) -> RunResult:
        """Run ``image`` (present on the host) once as ``docker run --rm`` would,
        sandboxed: no network, a read-only root filesystem, ``limits``; wait
        for it to exit, or kill it at ``limits.timeout``. The container is
        removed in every case, also when the call fails or is cancelled.
        ``entrypoint``: None keeps the image's, ``[""]`` clears it."""
        ...


class RegistryCatalog(Protocol):
    """A registry's own listing (Docker Registry HTTP API v2), for registries
    that have no search endpoint. Every method may raise a
    :class:`handlers.errors.EngineError` subclass (RegistryUnreachable,
    RegistryUnauthorized, EngineError); names and tags are as the registry
    gave them, checked against the distribution grammar, bounded."""

    async def catalog(self, registry: str, *, limit: int = 1000, owner: str = "") -> list[str]:
        """Repository names on ``registry`` (``host[:port]``), in its order, at most ``limit``.
        ``owner``: on whose behalf (``Actor.id``), for the fair share of
        registry calls that pulls and searches use too."""
        ...

    async def tags(self, registry: str, repository: str, *, limit: int = 200, owner: str = "") -> list[str]:
        """Tags of ``repository`` on ``registry``, at most ``limit``."""
        ...

# --------------------------------------------------------------------------
# State: operations waiting for (or past) a confirmation, deliveries seen,
# and the audit trail. Adapters live in bot/ (SQLite, JSON Lines); a store
# shared by several bot processes can implement the same Protocols later.

# The life of an operation. Only "pending" can be confirmed, cancelled or
# expire; "running" is entered once (an atomic conditional update), so a
# double click or twenty concurrent clicks run it once.
OP_STATES = ("pending", "running", "done", "failed", "cancelled", "expired", "superseded", "interrupted",
             "denied")
FINAL_STATES = frozenset({"done", "failed", "cancelled", "expired", "superseded", "interrupted", "denied"})


@record
class Operation:
    """A mutating command as it moves on: planned, confirmed, run."""

    id: str  # opaque (32 hex), what a Confirm button carries
    kind: str  # "rmi" | "prune" | "pull"
    command: str  # the normalised command line ("docker rmi -f x")
    host: str  # the host's label
    requester: str  # actor id
    requester_name: str = ""
    via: str = "slack"  # "slack" | "shell"
    channel: str = ""
    fingerprint: str = ""  # of the plan shown; the confirm step compares it
    plan: Mapping = field(default_factory=dict)  # JSON-able summary of the plan (what was shown)
    created_at: float = 0.0
    expires_at: float = 0.0
    needs_approver: bool = False  # two-person rule: a different approver must confirm
    state: str = "pending"
    decided_by: str = ""  # who confirmed or cancelled
    decided_by_name: str = ""
    message: Mapping = field(default_factory=dict)  # front end's handle on its message ({"channel", "ts"})
    result: Mapping = field(default_factory=dict)  # JSON-able outcome
    updated_at: float = 0.0


class OperationStore(Protocol):
    """Pending confirmations and operations, surviving a restart."""

    async def add(self, op: Operation) -> None: ...

    async def get(self, op_id: str) -> Operation | None: ...

    async def transition(self, op_id: str, from_states: Sequence[str], to_state: str, *, now: float,
                         by: str = "", by_name: str = "", result: Mapping | None = None) -> Operation | None:
        """Atomically move ``op_id`` from one of ``from_states`` to ``to_state``;
        the updated operation, or None when it was in no such state (someone
        else got there first) or does not exist."""
        ...

    async def set_message(self, op_id: str, message: Mapping) -> None: ...

    async def due(self, now: float) -> list[Operation]:
        """Pending operations whose confirmation expired at or before ``now``."""
        ...

    async def in_state(self, state: str) -> list[Operation]: ...

    async def first_delivery(self, key: str, *, now: float, ttl: float) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds (any process)."""
        ...

    async def close(self) -> None: ...


@record
class AuditEvent:
    """One step of a mutating operation, for every audit sink (the local
    hash-chained log, the channel message)."""

    event: str  # requested | denied | confirmed | cancelled | expired | superseded | running | done | failed | interrupted
    op: str  # operation id
    command: str
    host: str
    actor: str  # who did this step
    actor_name: str = ""
    via: str = ""
    requester: str = ""
    confirmer: str = ""
    detail: Mapping = field(default_factory=dict)  # refs, image ids, digests, bytes, duration, result, reason
    at: float = 0.0


class AuditSink(Protocol):
    async def record(self, *events: AuditEvent) -> None:
        """Write ``events`` durably, in order, before returning (several at
        once: one durable write for all); raise when it cannot."""
        ...

    async def tail(self, n: int) -> list[dict]:
        """The last ``n`` records, oldest first."""
        ...

"""The Docker adapter: :class:`handlers.ports.Engine` on top of docker-py.

Every docker-py call blocks, so each one runs in a small thread pool owned by
the engine (``loop.run_in_executor``) and the event loop never waits on the
socket. docker-py's own exceptions never leave this module: :func:`map_error`
turns them into the typed errors of :mod:`handlers.errors`, worded the way the
docker CLI words them (``Error response from daemon: …``).

Facts this module relies on (Engine API 1.41, docker-py 7.1):

* ``docker.APIClient(version="auto")`` asks the engine for its API version
  while it is being built, so building it is the first thing that fails when
  the engine is down. The client is therefore built lazily, in a worker
  thread, and built again on the next call when that failed.
* ``APIClient.pull(..., stream=True)`` posts with no timeout and returns a
  generator over the chunked response; neither the response nor its socket
  is handed back, and the engine sends no header before the registry
  answered. A pull therefore does not go through docker-py: its worker sends
  ``POST /images/create`` itself with the standard library's HTTP client, on
  a connection it opens (unix or TCP), so it owns the socket. Every read
  waits at most the stall timeout (nothing received for that long ends the
  pull with :class:`EngineTimeout`), and stopping a pull (cancel, close)
  shuts that socket down, which wakes the worker wherever it waits and makes
  the engine cancel its side of the pull. Credentials for the reference's
  registry (:mod:`bot.credentials`) go in ``X-Registry-Auth`` as the CLI
  sends them, and are scrubbed from anything the pull reports.
* A pull can fail inside a 200 stream: the last event is then
  ``{"errorDetail": {"message": …}, "error": …}`` and docker-py raises
  nothing, so every event is scanned.
* A 409 is a plain ``APIError``; a missing tag on pull is ``NotFound`` (not
  ``ImageNotFound``); docker-py turns "repository does not exist" on pull into
  ``ImageNotFound`` although it means "no access".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

if TYPE_CHECKING:
    import docker

from bot.engine_errors import (  # the error mapping lives there
    DAEMON_PREFIX,
    OP_CONNECT,
    OP_LIST,
    OP_INSPECT,
    OP_REMOVE,
    OP_PRUNE,
    OP_SEARCH,
    OP_INFO,
    OP_VERSION,
    OP_CONTAINERS,
    OP_DF,
    hide_address,
    map_error,
    map_stream_error,
)
from bot.connection import ConnectionProblem, EngineTarget, from_url
from bot.credentials import CredentialStore, normalize_registry, registry_of
from bot.engine_batch import _remove_over_one_connection, _untagged_deleted
from bot.engine_pull import DEFAULT_STALL_TIMEOUT, PullStreams, _PullStream
from bot.engine_reads import OwnReads
from bot.engine_run import ContainerRuns
from bot.registry_lane import DEFAULT_PER_PERSON, DEFAULT_PER_REGISTRY, RegistryLane
from handlers.errors import (
    EngineError,
    EngineTimeout,
    EngineUnreachable,
    InvalidArgument,
)
from handlers.ports import (
    ContainerRef,
    DiskUsage,
    Filters,
    ImageSummary,
    PruneResult,
    RemoveResult,
    SearchResult,
)

__all__ = ["DockerEngine", "map_error", "map_stream_error", "DAEMON_PREFIX"]

T = TypeVar("T")

log = logging.getLogger("dockhand.engine")

_FULL_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")

# --------------------------------------------------------------------------
# small conversions


def _normalize_filters(filters: Filters | None) -> dict[str, list[str]] | None:
    """``{"dangling": ["true"]}`` with every value a list of strings."""
    if not filters:
        return None
    out: dict[str, list[str]] = {}
    for name, values in filters.items():
        if isinstance(values, (str, bytes, bool, int)):
            values = [values]
        vals = []
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            vals.append(v if isinstance(v, str) else str(v))
        out[str(name)] = vals
    return out


def _encode_filters(filters: Filters | None) -> str | None:
    """The JSON the Engine API expects in ``?filters=``."""
    normalized = _normalize_filters(filters)
    return json.dumps(normalized) if normalized else None


def _tuple(values: Any, drop: str = "") -> tuple[str, ...]:
    if not values:
        return ()
    return tuple(v for v in values if v and v != drop)


def _summary(raw: Mapping[str, Any]) -> ImageSummary:
    return ImageSummary(
        id=raw.get("Id") or "",
        # Old engines list a dangling image as "<none>:<none>"; here it has none.
        repo_tags=_tuple(raw.get("RepoTags"), "<none>:<none>"),
        repo_digests=_tuple(raw.get("RepoDigests"), "<none>@<none>"),
        created=int(raw.get("Created") or 0),
        size=int(raw.get("Size") or 0),
        containers=int(raw.get("Containers") if raw.get("Containers") is not None else -1),
        labels=dict(raw.get("Labels") or {}),
        parent_id=raw.get("ParentId") or "",
    )


def _target_of(docker_host: str) -> EngineTarget:
    """An address alone: normalised as the CLI does when it can be, else kept
    as it is (docker-py then says what is wrong with it on first use)."""
    try:
        return from_url(docker_host)
    except ConnectionProblem:
        return EngineTarget(docker_host)


def _api_client(target: EngineTarget, timeout: float) -> docker.APIClient:
    """docker-py's client for ``target``, at the API version the engine speaks.

    docker-py negotiates the version while the client is built, before
    ``trust_env`` can be turned off for TLS (:meth:`EngineTarget.api_client`):
    so a first client asks for the version, and the client kept is built with it.

    docker-py is imported here, on first use: a command that only pulls or
    reads the version never needs it (see `bot/engine_reads.py`)."""
    import docker
    import docker.constants
    import docker.errors

    if target.tls is not None and not target.tls.verify:
        # DOCKER_TLS without DOCKER_TLS_VERIFY (said once at start-up): not a warning per request
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    if target.scheme == "ssh":
        target.probe_ssh(timeout)  # paramiko's own connect has no timeout
    if target.tls is None:
        return docker.APIClient(**target.docker_py_kwargs(), version="auto", timeout=timeout)
    probe = target.api_client(version=docker.constants.DEFAULT_DOCKER_API_VERSION, timeout=timeout)
    try:
        version = probe.version(api_version=False)["ApiVersion"]
    except Exception as exc:  # worded as docker-py words a failed negotiation (see map_error)
        raise docker.errors.DockerException(f"Error while fetching server API version: {exc}") from exc
    finally:
        probe.close()
    return target.api_client(version=version, timeout=timeout)


# --------------------------------------------------------------------------
# the engine


class DockerEngine(ContainerRuns, PullStreams, OwnReads):
    """A Docker Engine: an :class:`~bot.connection.EngineTarget` (unix, TCP
    with or without TLS, ssh), or its address alone (``unix:///…``, ``tcp://…``)."""

    def __init__(self, docker_host: "str | EngineTarget", *, timeout: float = 60.0, max_workers: int = 8,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT, credentials: CredentialStore | None = None,
                 per_person: int = DEFAULT_PER_PERSON, per_registry: int = DEFAULT_PER_REGISTRY,
                 label: str = "", metrics=None):
        if max_workers < 2:
            raise ValueError("max_workers must be at least 2")
        if per_person < 1 or per_registry < 1:
            raise ValueError("per_person and per_registry must be at least 1")
        if stall_timeout <= 0:
            raise ValueError("stall_timeout must be more than 0 seconds")
        self._target = docker_host if isinstance(docker_host, EngineTarget) else _target_of(docker_host)
        self._host = self._target.url
        # How replies name this host (DOCKHAND_HOST_LABEL). With a label, errors for people name
        # the label, never the socket path or address (those go to the log only).
        self._label = label
        self._shown = label or self._host
        self._last_address_log = float("-inf")
        # bot.metrics.Metrics of the app, or None: engine call latency, pulls in flight
        self.metrics = None
        if metrics is not None:
            self.count_into(metrics)
        self._timeout = float(timeout)
        # A pull that receives nothing for this long ends (DOCKHAND_PULL_STALL_TIMEOUT).
        self._stall_timeout = float(stall_timeout)
        # Registry credentials for pulls; by default the Docker CLI's config ($DOCKER_CONFIG).
        self._credentials = credentials if credentials is not None else CredentialStore()
        self._executor = ThreadPoolExecutor(max_workers=max_workers,
                                            thread_name_prefix="dockhand-engine")
        self._max_workers = max_workers
        # Pulls and searches wait on registries, sometimes for long: together
        # they may hold all workers but two, so local calls (list, inspect,
        # info, ...) always find a free worker. Within that bound they are
        # shared fairly (bot/registry_lane.py): at most `per_person` for one
        # person and `per_registry` for one registry, so another person's or
        # another registry's call finds a slot at once; a fair queue orders
        # the rest (DOCKHAND_PER_PERSON_REGISTRY_CALLS, DOCKHAND_PER_REGISTRY_CALLS).
        self._registry_slots = max(1, max_workers - 2)
        self._per_person, self._per_registry = per_person, per_registry
        self._gate: RegistryLane | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()
        self._streams: set[_PullStream] = set()
        self._streams_lock = threading.Lock()
        self._closed = False
        self._early_info: concurrent.futures.Future | None = None  # prefetch_info(): for the first info()
        self._busy = 0  # engine calls a worker is in right now (a frozen engine keeps them there)
        self._busy_lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Engine calls still in a worker: after ``close(wait=False)``, the calls
        a frozen engine holds (docker-py offers no way to interrupt them; each
        ends by the engine timeout)."""
        return self._busy

    def count_into(self, metrics) -> None:
        """Count engine calls and pulls in flight into ``metrics`` (bot.metrics.Metrics)."""
        self.metrics = metrics
        metrics.track_pulls(lambda: self.active_pulls)

    def __repr__(self) -> str:
        return f"DockerEngine({self._host!r}, timeout={self._timeout:g})"

    @property
    def host(self) -> str:
        return self._host

    @property
    def target(self) -> EngineTarget:
        return self._target

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def active_pulls(self) -> int:
        """Pull streams whose worker thread has not finished yet."""
        with self._streams_lock:
            return len(self._streams)

    # -- plumbing ----------------------------------------------------------

    def _client(self) -> docker.APIClient:
        """The docker-py client, built on first use (in a worker thread).

        Building it asks the engine for its version; when that fails nothing
        is kept, so the next call tries again."""
        api = self._api
        if api is not None:
            return api
        with self._api_lock:
            if self._api is None:
                try:
                    api = _api_client(self._target, self._timeout)
                except Exception as exc:
                    raise self._map(exc, operation=OP_CONNECT, timeout=self._timeout) from exc
                self._api = api
            return self._api

    def _mapped(self, exc: BaseException, *, operation: str, timeout: float | None = None,
                ref: str = "") -> EngineError:
        """:func:`map_error` for this engine (with its label); an unreachable
        engine chosen by a context (or named in a configuration) gets a hint
        naming that, not DOCKER_HOST, unless a label already hides the address."""
        error = map_error(exc, host=self._host, operation=operation, timeout=timeout, ref=ref, label=self._label)
        source = self._target.source.split(" (")[0]  # "context prod", without the config file's path
        if isinstance(error, EngineUnreachable) and source != "DOCKER_HOST" and not self._label:
            error.hint = (f"Dockhand tried {self._host}, chosen by {source}. Start the engine there, or "
                          "choose another with DOCKER_HOST or DOCKER_CONTEXT (`docker context ls`).")
        return error

    def _map(self, exc: BaseException, *, operation: str, timeout: float | None = None, ref: str = "") -> EngineError:
        """:meth:`_mapped`, as people may see it (:meth:`_for_people`)."""
        return self._for_people(self._mapped(exc, operation=operation, timeout=timeout, ref=ref))

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError(f"the connection to the engine at {self._shown} is closed")

    def _for_people(self, error: EngineError) -> EngineError:
        """``error`` as people may see it: with a host label set, the engine's
        address never appears in it (``hide_address``); the address goes to the
        log instead, at most once a minute."""
        if not self._label:
            return error
        import time

        hidden = hide_address(error, self._host, self._label)
        now = time.monotonic()
        if isinstance(hidden, (EngineUnreachable, EngineTimeout)) and now - self._last_address_log >= 60:
            self._last_address_log = now
            log.warning("engine %s at %s: %s", self._label, self._host, hidden.message)
        return hidden

    def _observe(self, call: str, started: float, ok: bool) -> None:
        if self.metrics is not None:
            import time

            self.metrics.engine_call(call, time.monotonic() - started, ok)

    def _work(self, operation: str, fn: Callable[[docker.APIClient], T], *, ref: str = "",
              get: str = "", own: Callable[[], T] | None = None) -> Callable[[], T]:
        """What a worker thread runs for one call: ``fn(client)``, its errors
        mapped. Where the target speaks HTTP, Dockhand's own connection answers
        instead: ``get`` names the Engine API path of a JSON read that ``fn``
        makes (:meth:`_get_json`); ``own`` is another call made there (:meth:`_ping`)."""

        def work() -> T:
            with self._busy_lock:
                self._busy += 1
            try:
                if self._target.speaks_http:
                    if own is not None:
                        return own()
                    if get:
                        return self._get_json(get)
                return fn(self._client())
            except Exception as exc:
                raise self._map(exc, operation=operation, timeout=self._timeout, ref=ref) from exc
            finally:
                with self._busy_lock:
                    self._busy -= 1

        return work

    def ask_ping(self) -> concurrent.futures.Future:
        """``GET /_ping``, what the docker CLI asks an engine first, sent now
        from a worker thread without an event loop: the start-up check asks it
        as soon as the engine adapter exists and awaits the answer
        (:func:`bot.engine_check.reach`) once the rest of Dockhand is loaded.
        Not ``/version``, for which dockerd runs its runtimes' binaries to
        report their versions (~10 ms). Errors come back mapped."""
        self._check_open()
        return self._executor.submit(self._work(OP_CONNECT, lambda api: api.ping(), own=self._ping))

    async def _run(self, operation: str, fn: Callable[[docker.APIClient], T], *, ref: str = "",
                   get: str = "") -> T:
        """``fn(client)`` in a worker thread (:meth:`_work`), counted in the metrics."""
        import time

        self._check_open()
        work = self._work(operation, fn, ref=ref, get=get)
        loop = asyncio.get_running_loop()
        started, ok = time.monotonic(), False
        try:
            result = await loop.run_in_executor(self._executor, work)
            ok = True
            return result
        except RuntimeError as exc:
            if self._closed:  # shut down while we were waiting for a worker
                raise EngineError(f"the connection to the engine at {self._shown} is closed") from exc
            raise
        finally:
            self._observe(operation, started, ok)

    def _registry_gate(self) -> RegistryLane:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:
            self._gate = RegistryLane(self._registry_slots, per_person=self._per_person,
                                      per_registry=self._per_registry)
            self._gate_loop = loop
        return self._gate

    def registry_slot(self, owner: str, registry: str):
        """One slot of this host's registry lane, for a registry call made
        outside the engine (bot/registry.py: a catalog or a tag list), so it
        waits its turn with the pulls and searches, fairly."""
        return self._registry_gate().slot(owner, normalize_registry(registry))

    @property
    def registry_lane(self) -> RegistryLane | None:
        """The registry lane of the loop that last used it (None before any registry call)."""
        return self._gate

    # -- Engine ------------------------------------------------------------

    async def list_images(self, *, all: bool = False, filters: Filters | None = None) -> list[ImageSummary]:
        normalized = _normalize_filters(filters)
        # the query docker-py's images() sends, asked on Dockhand's own connection (a fraction of the CPU)
        query = {"only_ids": "0", "all": "1" if all else "0"}
        if normalized:
            query["filters"] = json.dumps(normalized)
        raw = await self._run(OP_LIST, lambda api: api.images(all=all, filters=normalized),
                              get=f"/images/json?{urllib.parse.urlencode(query)}")
        return [_summary(r) for r in raw or ()]

    async def inspect_image(self, ref: str) -> dict:
        return await self._run(OP_INSPECT, lambda api: api.inspect_image(ref), ref=ref,
                               get=f"/images/{urllib.parse.quote(ref, safe='/:')}/json")

    async def remove_image(self, ref: str, *, force: bool = False, noprune: bool = False) -> RemoveResult:
        raw = await self._run(OP_REMOVE, lambda api: api.remove_image(ref, force=force, noprune=noprune),
                              ref=ref)
        untagged, deleted = _untagged_deleted(raw)
        return RemoveResult(untagged=untagged, deleted=deleted)

    async def remove_many(self, calls: Sequence[tuple[str, bool, bool]]) -> list[RemoveResult | EngineError]:
        """Several removals in order, in ONE worker job.

        On a unix socket or TCP (with or without TLS) they go over one
        kept-alive connection with Dockhand's own HTTP client,
        ``bot/engine_http.py`` (over ssh, through docker-py): docker-py keeps
        a connection pool per URL on a unix socket, so each ``DELETE
        /images/<ref>`` would open a connection of its own, and its requests
        layer costs about a millisecond of CPU a call (bench/removal.py).
        Errors are mapped exactly as docker-py's."""
        calls = list(calls)

        def work(api: docker.APIClient) -> list[RemoveResult | EngineError]:
            if self._target.speaks_http:
                done = _remove_over_one_connection(self._target, api.api_version, calls, self._timeout)
                return [self._for_people(r) if isinstance(r, EngineError) else r for r in done]
            out: list[RemoveResult | EngineError] = []
            for ref, force, noprune in calls:
                try:
                    out.append(RemoveResult(*_untagged_deleted(api.remove_image(ref, force=force, noprune=noprune))))
                except Exception as exc:  # noqa: BLE001 - one outcome per call
                    out.append(self._map(exc, operation=OP_REMOVE, timeout=self._timeout, ref=ref))
            return out

        return await self._run(OP_REMOVE, work)

    async def prune_images(self, *, all: bool = False, filters: Filters | None = None) -> PruneResult:
        merged: dict[str, Sequence[str]] = dict(filters or {})
        if all and "dangling" not in merged:
            merged["dangling"] = ["false"]  # what `docker image prune -a` sends
        normalized = _normalize_filters(merged)
        raw = await self._run(OP_PRUNE, lambda api: api.prune_images(filters=normalized)) or {}
        untagged, deleted = _untagged_deleted(raw.get("ImagesDeleted"))
        return PruneResult(untagged=untagged, deleted=deleted,
                           space_reclaimed=int(raw.get("SpaceReclaimed") or 0))

    async def search(self, term: str, *, limit: int = 25, filters: Filters | None = None,
                     owner: str = "") -> list[SearchResult]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidArgument(f"invalid limit {limit}: must be between 1 and 100")
        params: dict[str, Any] = {"term": term, "limit": limit}
        encoded = _encode_filters(filters)
        if encoded:
            params["filters"] = encoded

        def call(api: docker.APIClient) -> list:
            # APIClient.search() knows no filters: same endpoint, one more parameter.
            return api._result(api._get(api._url("/images/search"), params=params), True)

        # its registry: the index the term names (`host:port/name`), else Docker Hub
        async with self._registry_gate().slot(owner, registry_of(term)):
            raw = await self._run(OP_SEARCH, call, ref=term,
                                  get=f"/images/search?{urllib.parse.urlencode(params)}")
        return [
            SearchResult(
                name=str(r.get("name") or ""),
                description=str(r.get("description") or ""),
                star_count=int(r.get("star_count") or 0),
                is_official=bool(r.get("is_official")),
                is_automated=bool(r.get("is_automated")),
            )
            for r in raw or ()
        ]

    def prefetch_info(self) -> None:
        """Ask ``GET /info`` now, from a worker thread, for the first
        :meth:`info` to take: a one-shot command asks it while it loads, when
        the engine is idle, rather than while its own pull or removal runs
        (dockerd's info is work: images, containers, runtimes)."""
        self._check_open()
        self._early_info = self._executor.submit(self._work(OP_INFO, lambda api: api.info(), get="/info"))

    async def info(self) -> dict:
        early, self._early_info = self._early_info, None
        if early is not None:
            return await asyncio.wrap_future(early)
        return await self._run(OP_INFO, lambda api: api.info(), get="/info")

    async def version(self) -> dict:
        return await self._run(OP_VERSION, lambda api: api.version(), get="/version")

    async def containers_using(self, image_id: str) -> list[ContainerRef]:
        """Every container, running or not, made from exactly this image.

        ``image_id`` should be the full ``sha256:…`` ID; anything else (a
        short ID, a name) is resolved with an inspect first."""

        def call(api: docker.APIClient) -> list[ContainerRef]:
            full = image_id
            if not _FULL_IMAGE_ID.fullmatch(full):
                full = api.inspect_image(image_id)["Id"]
            found = []
            for c in api.containers(all=True):
                if c.get("ImageID") != full:
                    continue
                names = c.get("Names") or []
                found.append(ContainerRef(
                    id=c.get("Id") or "",
                    name=(names[0] if names else "").lstrip("/"),
                    state=c.get("State") or "",
                    image=c.get("Image") or "",
                    image_id=full,
                ))
            return found

        return await self._run(OP_CONTAINERS, call, ref=image_id)

    async def list_containers(self) -> list[ContainerRef]:
        def call(api: docker.APIClient) -> list[ContainerRef]:
            out = []
            for c in api.containers(all=True):
                names = c.get("Names") or []
                out.append(ContainerRef(id=c.get("Id") or "", name=(names[0] if names else "").lstrip("/"),
                                        state=c.get("State") or "", image=c.get("Image") or "",
                                        image_id=c.get("ImageID") or ""))
            return out

        return await self._run(OP_CONTAINERS, call)

    async def disk_usage(self) -> DiskUsage:
        raw = await self._run(OP_DF, lambda api: api.df()) or {}
        unique, containers = {}, {}
        for img in raw.get("Images") or ():
            size, shared = int(img.get("Size") or 0), int(img.get("SharedSize") or 0)
            # SharedSize is -1 when the engine did not compute it
            unique[img.get("Id") or ""] = size - shared if shared >= 0 else size
            containers[img.get("Id") or ""] = int(img.get("Containers") or 0)
        return DiskUsage(layers_size=int(raw.get("LayersSize") or 0), unique=unique, containers=containers)

    async def images_in_use(self) -> frozenset[str]:
        """Full IDs of the images any container (running or not) was made from:
        one container list, however many images a caller checks."""
        return await self._run(OP_CONTAINERS, lambda api: frozenset(
            c["ImageID"] for c in api.containers(all=True) if c.get("ImageID")))

    async def close(self, wait: bool = True) -> None:
        """Stop running pulls, wait for the workers (``wait=False``: not for
        calls a frozen engine holds, see :attr:`busy`), drop the connection."""
        if self._closed:
            return
        self._closed = True
        with self._streams_lock:
            streams = list(self._streams)
        for s in streams:
            s.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if wait:
            with self._busy_lock:
                busy = self._busy
            if busy or streams:  # a call or a pull still runs: wait without blocking the event loop
                await asyncio.to_thread(self._executor.shutdown, True)
            else:  # every worker is idle and leaves at once: no thread needed to wait for them
                self._executor.shutdown(wait=True)
        api, self._api = self._api, None
        if api is not None:
            api.close()

    async def __aenter__(self) -> "DockerEngine":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

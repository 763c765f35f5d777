"""`docker run` as a smoke test: the engine side (handlers/run.py is the use case).

Mixed into :class:`bot.engine.DockerEngine` (``ContainerRuns``), so the
engine's client, executor and error mapping serve it; the pull, list and
removal code stays in bot/engine.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from typing import Any, Mapping, Sequence

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker

from bot.engine_errors import OP_RUN, _is_timeout, map_error
from handlers.errors import EngineError
from handlers.ports import RunLimits, RunResult

__all__ = ["ContainerRuns"]


class ContainerRuns:
    """What `DockerEngine` gains for `docker run` (see the comment below)."""

    # -- containers: `docker run` as a smoke test (handlers/run.py) ----------
    #
    # A container's whole life (create, start, wait, output, remove) runs in
    # a thread of its own, not in the pool: it waits up to the time limit, and
    # a pool worker held that long would make local calls queue. The thread
    # removes the container in a `finally`, whatever happens to the caller; a
    # cancelled caller kills the container (by its name, chosen before it is
    # created) so that thread ends at once. Each container carries a deadline
    # label: a run that finds one past it (its Dockhand died mid-run) removes it.

    run_limits: RunLimits = RunLimits()  # wiring sets the host's settings

    def _run_lane(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        lane: asyncio.Semaphore | None = getattr(self, "_runs_lane", None)
        if lane is None or getattr(self, "_runs_lane_loop", None) is not loop:
            lane = asyncio.Semaphore(RUN_SLOTS)
            self._runs_lane, self._runs_lane_loop = lane, loop
        return lane

    async def run_container(self, image: str, command: Sequence[str] = (), *,
                            entrypoint: Sequence[str] | None = None, limits: RunLimits,
                            tail_lines: int = 50, tail_bytes: int = 8192) -> RunResult:
        """``docker run --rm`` of ``image`` (already on the host), sandboxed:
        network mode none, read-only root filesystem, ``limits``, no
        capabilities, no new privileges; killed at ``limits.timeout``. The
        container is removed in every case (see :class:`RunResult`)."""
        if not image:
            raise AssertionError("run_container() needs an image")
        self._check_open()
        async with self._run_lane():
            self._check_open()
            job = _RunJob(image=image, command=list(command), entrypoint=None if entrypoint is None
                          else list(entrypoint), limits=limits, tail_lines=max(1, tail_lines),
                          tail_bytes=max(1, tail_bytes))
            loop = asyncio.get_running_loop()
            job.future = loop.create_future()
            threading.Thread(target=self._run_worker, args=(job, loop), name="dockhand-run", daemon=False).start()
            started = time.monotonic()
            try:
                outcome = await asyncio.shield(job.future)
                observe = getattr(self, "_observe", None)  # engine call latency (bot/metrics.py)
                if observe is not None:
                    observe(OP_RUN, started, isinstance(outcome, RunResult))
            except asyncio.CancelledError:
                job.stop.set()
                with contextlib.suppress(Exception):  # wakes the thread's wait; it removes the container
                    await self._run(OP_RUN, lambda api: _kill_quietly(api, job.name))
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(job.future), timeout=self._timeout + 10)
                raise
            if isinstance(outcome, BaseException):
                raise outcome
            if not isinstance(outcome, RunResult):
                raise EngineError(f"{OP_RUN} of {image} ended without a result")
            return outcome

    def _run_worker(self, job: "_RunJob", loop: asyncio.AbstractEventLoop) -> None:
        """Runs in the run's own thread; hands a RunResult or an EngineError to ``job.future``."""
        outcome: Any = None
        api: docker.APIClient | None = None
        created = False
        try:
            shared = self._client()
            api = self._target.api_client(version=shared.api_version, timeout=self._timeout, max_pool_size=2)
            _sweep_stale_runs(api)
            if job.stop.is_set():
                raise _RunStopped
            created = True  # from here on, whatever happens, try to remove it
            api.create_container(job.image, command=job.command or None, entrypoint=job.entrypoint,
                                 name=job.name, labels=job.labels(), host_config=_run_host_config(api, job.limits),
                                 network_disabled=True, use_config_proxy=False, tty=False, stdin_open=False)
            if job.stop.is_set():
                raise _RunStopped
            started = time.monotonic()
            api.start(job.name)
            timed_out = False
            try:
                status = api.wait(job.name, timeout=job.limits.timeout)
            except Exception as exc:  # noqa: BLE001 - a timeout is the time limit; anything else fails the run
                if not _is_timeout(exc):
                    raise
                timed_out = True
                _kill_quietly(api, job.name)
                status = api.wait(job.name, timeout=self._timeout)
            duration = time.monotonic() - started
            if job.stop.is_set():
                raise _RunStopped
            raw = api.logs(job.name, stdout=True, stderr=True, tail=job.tail_lines + 1)
            output, truncated = _output_tail(raw, job.tail_lines, job.tail_bytes)
            info = api.inspect_container(job.name)
            state = info.get("State") or {}
            code = (status or {}).get("StatusCode")
            outcome = RunResult(exit_code=int(code if code is not None else state.get("ExitCode", -1)),
                                output_tail=output, timed_out=timed_out, image_id=str(info.get("Image") or ""),
                                container=job.name, truncated=truncated, oom_killed=bool(state.get("OOMKilled")),
                                duration=round(duration, 3))
        except _RunStopped:
            outcome = _RunStopped()
        except Exception as exc:  # noqa: BLE001 - every failure reaches the caller as a typed error
            outcome = self._mapped(exc, operation=OP_RUN, timeout=self._timeout, ref=job.image)
        finally:
            problem = _remove_run(api, job.name) if created and api is not None else ""
            if problem:
                if isinstance(outcome, RunResult):
                    outcome = _replace(outcome, removed=False, cleanup_error=problem)
                elif isinstance(outcome, EngineError):
                    outcome = EngineError(f"{outcome.message} (and the container {job.name} could not be "
                                          f"removed: {problem})", outcome.hint)
            if isinstance(outcome, EngineError) and hasattr(self, "_for_people"):
                outcome = self._for_people(outcome)
            if api is not None:
                with contextlib.suppress(Exception):
                    api.close()
            _settle(loop, job.future, outcome)



# --------------------------------------------------------------------------
# containers: helpers of DockerEngine.run_container

RUN_SLOTS = 4  # smoke tests at once per engine; more wait their turn
RUN_LABEL = "org.dockhand.run"
RUN_DEADLINE_LABEL = "org.dockhand.run.deadline"  # epoch seconds after which any Dockhand removes it
RUN_GRACE = 120.0  # seconds after the time limit for Dockhand's own clean-up, before others step in
RUN_LOG_MAX = "1m"  # the engine keeps at most this much output of a run


class _RunStopped(Exception):
    """The caller went away (cancelled): nothing to report, only clean up."""


class _RunJob:
    def __init__(self, *, image: str, command: list[str], entrypoint: list[str] | None, limits: RunLimits,
                 tail_lines: int, tail_bytes: int):
        self.image = image
        self.command = command
        self.entrypoint = entrypoint
        self.limits = limits
        self.tail_lines = tail_lines
        self.tail_bytes = tail_bytes
        self.name = "dockhand-run-" + secrets.token_hex(6)
        self.deadline = time.time() + limits.timeout + RUN_GRACE
        self.stop = threading.Event()
        self.future: asyncio.Future | None = None

    def labels(self) -> dict[str, str]:
        return {RUN_LABEL: "smoke-test", RUN_DEADLINE_LABEL: f"{self.deadline:.0f}"}


def _run_host_config(api: docker.APIClient, limits: RunLimits) -> dict:
    return api.create_host_config(
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={int(limits.tmpfs)}"},
        mem_limit=int(limits.memory),
        memswap_limit=int(limits.memory),  # no swap beyond the memory limit
        nano_cpus=int(round(limits.cpus * 1e9)),
        pids_limit=int(limits.pids),
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        log_config={"type": "json-file", "config": {"max-size": RUN_LOG_MAX, "max-file": "1"}},
        auto_remove=False,  # removed by Dockhand once its output is read
    )


def _kill_quietly(api: docker.APIClient, name: str) -> None:
    """SIGKILL; a container already stopped (409) or gone (404) is fine."""
    import docker.errors  # the run's client is docker-py's: already imported

    try:
        api.kill(name)
    except docker.errors.APIError as exc:
        if exc.status_code not in (404, 409):
            raise


def _remove_run(api: docker.APIClient, name: str) -> str:
    """Remove a run's container and its anonymous volumes (``--rm``); "" when
    it is gone (or never was), else why not (after one retry)."""
    import docker.errors

    problem = ""
    for attempt in range(2):
        try:
            api.remove_container(name, force=True, v=True)
            return ""
        except docker.errors.NotFound:
            return ""
        except Exception as exc:  # noqa: BLE001 - reported, never raised from a finally
            problem = map_error(exc, host=str(api.base_url), operation=OP_RUN).message
            if attempt == 0:
                time.sleep(0.5)
    return problem


def _sweep_stale_runs(api: docker.APIClient) -> None:
    """Remove run containers past their deadline (best effort)."""
    now = time.time()
    try:
        stale = [c.get("Id") for c in api.containers(all=True, filters={"label": RUN_LABEL})
                 if _deadline(c.get("Labels") or {}) < now]
    except Exception:  # noqa: BLE001 - a sweep never fails a run
        return
    for cid in stale:
        with contextlib.suppress(Exception):
            api.remove_container(cid, force=True, v=True)


def _deadline(labels: Mapping[str, str]) -> float:
    try:
        return float(labels.get(RUN_DEADLINE_LABEL) or "inf")
    except ValueError:
        return float("inf")


def _output_tail(raw: bytes | str | None, lines: int, limit: int) -> tuple[str, bool]:
    """The last ``lines`` lines and at most ``limit`` bytes of ``raw``, as
    text; and whether anything earlier was left out."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    data = raw or b""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    truncated = len(parts) > lines
    data = b"\n".join(parts[-lines:])
    if len(data) > limit:
        data = data[-limit:]
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data = data[cut + 1:]  # no half line at the top
        truncated = True
    return data.decode("utf-8", "replace"), truncated


def _replace(result: RunResult, **changes: Any) -> RunResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future | None, outcome: Any) -> None:
    """Hand ``outcome`` to the event loop's future, from the run's thread."""
    if future is None:
        return

    def settle() -> None:
        if not future.done():
            future.set_result(outcome)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is gone: nobody is waiting
        pass

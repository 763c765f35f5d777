"""One command on several hosts at once (``@all``, a group).

Each host runs the single-host path on its own ``Services`` concurrently,
bounded by its own timeout (``Fleet.timeout``): a host that is down or slow
is named in its own section and never delays the others beyond its timeout,
nor fails them. The answer is one :class:`Reply` with a section per host
(a :class:`HostHeading` then that host's parts), in the settings' order
whatever order the hosts answered in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from . import engine_identity
from .context import Services
from .errors import DockhandError
from .fleet import Fleet
from .replies import Confirmation, ErrorPart, HostHeading, Reply, Status, error_reply

log = logging.getLogger("dockhand.fanout")

RunOne = Callable[[Services], Awaitable[Reply]]


async def _one(name: str, services: Services, run_one: RunOne, timeout: float | None, line: str) -> Reply:
    """One host's reply with its context line, within ``timeout`` seconds whatever
    happens (None: bounded by the engine's own timeouts, for changes)."""
    started = time.monotonic()
    try:
        reply = await (asyncio.wait_for(run_one(services), timeout) if timeout is not None else run_one(services))
    except asyncio.TimeoutError:
        reply = error_reply(line, f"{name} did not answer within {timeout:g} s",
                            "The engine is down, frozen or overloaded; the other hosts' answers are shown. "
                            f"Check it with `docker -H {name} version`.")
        reply = Reply(reply.command, reply.parts, reply.status, reply.summary, meta={"timed_out": True})
    except DockhandError as exc:
        reply = error_reply(line, exc.message, exc.hint, exc.status)
    except Exception:
        ref = f"{abs(hash((name, started))) % 16**8:08x}"
        log.exception("internal error %s while running %r on %s", ref, line, name)
        reply = error_reply(line, f"Internal error on {name} (logged as {ref}).",
                            "This is a bug in Dockhand: report the reference to the team.")
    left = max(0.0, (timeout or 5.0) - (time.monotonic() - started))
    if not reply.meta.get("timed_out") and left > 0:
        try:  # the context line (version, sample note) within what is left of this host's time
            await asyncio.wait_for(engine_identity.learn(services), left)
        except asyncio.TimeoutError:
            pass
    reply = engine_identity.fit_hints(reply, services)
    return reply.with_context(services.label, services.engine_version, engine_identity.engine_note(services))


def _interim(line: str, names: tuple[str, ...], tasks: list, fleet: Fleet, timeout: bool) -> Reply:
    """The sections of the hosts that answered so far, in order; the others waiting."""
    parts: list = []
    for name, task in zip(names, tasks):
        if task.done() and not task.cancelled():
            reply = task.result()
            parts.append(HostHeading(name, reply.ok, reply.engine_version, _detail(reply), reply.engine_note))
            parts.extend(p for p in reply.parts if not isinstance(p, Confirmation))
        else:
            until = f"up to {fleet.timeout(name):g} s" if timeout else "running"
            parts.append(HostHeading(name, True, detail=until, pending=True))
    answered = sum(1 for t in tasks if t.done())
    return Reply(line, tuple(parts), summary=f"{answered} of {len(names)} hosts answered so far",
                 meta={"interim": True, "fanout": True})


def _detail(reply: Reply) -> str:
    if reply.ok:
        return ""
    error = next((p for p in reply.parts if isinstance(p, ErrorPart)), None)
    return (error.message if error else reply.summary).split("\n")[0][:200]


async def run(line: str, selector: str, names: tuple[str, ...], fleet: Fleet,
              run_one: RunOne, drift_of: str | None = None, *, keep_confirmations: bool = False,
              timeout: bool = True, emit=None) -> Reply:
    """``run_one(services)`` on every host in ``names`` at once: one reply,
    one section per host in ``names``' order. ``drift_of``: a reference
    whose image each host's reply read (``handlers/drift.py``): its drift
    table comes first. ``keep_confirmations``: the hosts' Confirmations stay
    (``handlers/fleet_ops.py`` ties them into one); ``timeout=False``: no
    fan-out timeout (a change runs to its end, bounded by the engine's own)."""
    started = time.monotonic()
    elapsed: dict[str, float] = {}

    async def timed(name: str) -> Reply:
        reply = await _one(name, fleet.services(name), run_one, fleet.timeout(name) if timeout else None, line)
        elapsed[name] = time.monotonic() - started
        return reply

    tasks = [asyncio.ensure_future(timed(n)) for n in names]
    try:
        if emit is not None:  # each answer as it comes: the hosts that answered need not wait for a slow one
            waiting = set(tasks)
            while len(waiting) > 1:
                _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if waiting:
                    await emit(_interim(line, names, tasks, fleet, timeout))
        replies = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    parts: list = []
    meta: dict = {}
    if drift_of is not None:
        from . import drift

        head, meta["drift"] = drift.report(drift_of, names, list(replies))
        parts.extend(head)
    failed = []
    for name, reply in zip(names, replies):
        parts.append(HostHeading(name, reply.ok, reply.engine_version, _detail(reply), reply.engine_note))
        parts.extend(p for p in reply.parts if keep_confirmations or not isinstance(p, Confirmation))
        if not reply.ok:
            failed.append(name)
    answered = len(names) - len(failed)
    summary = f"{answered} of {len(names)} hosts answered" + (f"; failed: {', '.join(failed)}" if failed else "")
    where = f"{selector} ({', '.join(names)})" if selector not in names else selector
    sections = [{"host": n, "ok": r.ok, "timed_out": bool(r.meta.get("timed_out")), "summary": r.summary,
                 "elapsed": round(elapsed.get(n, 0.0), 4)}
                for n, r in zip(names, replies)]
    return Reply(line, tuple(parts), Status.OK if not failed else Status.FAILED, summary, host=where,
                 meta={"sections": sections, "fanout": True, **meta,
                       **({"replies": dict(zip(names, replies))} if keep_confirmations else {})})

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
from .context import Actor, Services
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


def _detail(reply: Reply) -> str:
    if reply.ok:
        return ""
    error = next((p for p in reply.parts if isinstance(p, ErrorPart)), None)
    return (error.message if error else reply.summary).split("\n")[0][:200]


async def run(line: str, selector: str, names: tuple[str, ...], fleet: Fleet,
              run_one: RunOne, drift_of: str | None = None, *, keep_confirmations: bool = False,
              timeout: bool = True) -> Reply:
    """``run_one(services)`` on every host in ``names`` at once: one reply,
    one section per host in ``names``' order. ``drift_of``: a reference
    whose image each host's reply read (``handlers/drift.py``): its drift
    table comes first. ``keep_confirmations``: the hosts' Confirmations stay
    (``handlers/fleet_ops.py`` ties them into one); ``timeout=False``: no
    fan-out timeout (a change runs to its end, bounded by the engine's own)."""
    replies = await asyncio.gather(*(_one(n, fleet.services(n), run_one, fleet.timeout(n) if timeout else None, line)
                                     for n in names))
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
    sections = [{"host": n, "ok": r.ok, "timed_out": bool(r.meta.get("timed_out")), "summary": r.summary}
                for n, r in zip(names, replies)]
    return Reply(line, tuple(parts), Status.OK if not failed else Status.FAILED, summary, host=where,
                 meta={"sections": sections, "fanout": True, **meta,
                       **({"replies": dict(zip(names, replies))} if keep_confirmations else {})})

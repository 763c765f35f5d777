"""Mutating operations: plan, confirm, act once, audit every step.

A destructive command (rmi, prune) never acts when it is typed. It is
planned (``handlers/plans.py``), the plan is stored as a pending
:class:`~handlers.ports.Operation` with a fingerprint and an expiry, and the
reply asks for a confirmation. :func:`confirm` then

1. checks who confirms (``handlers/access.py``: role, two-person rule),
2. checks the expiry,
3. claims the operation with one atomic conditional update (pending ->
   running), so a double click or twenty concurrent clicks act once,
4. plans again and compares fingerprints: if anything changed, nothing is
   removed and the new plan is offered instead,
5. runs exactly the plan's steps and reports what was planned and freed.

A write command (pull) needs no confirmation; it is recorded as an
operation too (running -> done/failed), so a restart can tell what was cut
short. Every step is an :class:`~handlers.ports.AuditEvent` written to the
audit sink before the operation moves on.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from .access import Denial, may_cancel, may_confirm
from .base import Call
from .context import Actor, Emit, Services
from .errors import Conflict, DockhandError, EngineError
from .ports import AuditEvent, Operation
from .replies import Confirmation, ErrorPart, Notice, Preformatted, Reply, Status, Table, error_reply
from .units import human_size, truncate_id

if TYPE_CHECKING:  # the removal planner is loaded by the commands that plan (rmi, prune)
    from .plans import Model, Plan
    from .pull import TagsPlan

log = logging.getLogger("dockhand.operations")

DAEMON_PREFIX = "Error response from daemon: "  # how the CLI prints the engine's refusals

PLAN_COLUMNS = ("IMAGE", "IMAGE ID", "WILL", "CONTAINERS", "FREES")


def new_id() -> str:
    return secrets.token_hex(16)


def _stored(services: Services):
    if services.store is None or services.audit is None:
        raise EngineError("Dockhand has no state store or audit log configured: it cannot run operations "
                          "that change the host.", "Set DOCKHAND_STATE_DIR to a writable directory.")
    return services.store, services.audit


async def audit(services: Services, event: str, op: Operation, actor: Actor | None = None, **detail: Any) -> None:
    """Write one audit event (durably, before the operation moves on)."""
    if services.audit is not None:
        await services.audit.record(_audit_event(services, event, op, actor, detail))


async def audit_steps(services: Services, op: Operation, actor: Actor | None, *events: str) -> None:
    """Several events of ``op`` that happen at the same moment (a pull is
    requested and starts running), written durably in one write."""
    if services.audit is not None:
        await services.audit.record(*(_audit_event(services, event, op, actor, {}) for event in events))


def _audit_event(services: Services, event: str, op: Operation, actor: Actor | None, detail: dict) -> AuditEvent:
    return AuditEvent(
        event=event, op=op.id, command=op.command, host=op.host,
        actor=actor.id if actor else "", actor_name=actor.name if actor else "",
        via=actor.via if actor else op.via, requester=op.requester,
        confirmer=op.decided_by if event not in ("requested", "denied") else "",
        detail=detail, at=services.clock())


def _kind(call: Call) -> str:
    """"pull", "run", "prune" or "rmi" (rm and remove are rmi)."""
    last = call.parsed.spec.path[-1]
    return last if last in ("pull", "run", "prune") else "rmi"


def _operation(call: Call, kind: str, **kw: Any) -> Operation:
    now = call.services.clock()
    actor = call.actor
    return Operation(id=new_id(), kind=kind, command=call.parsed.line, host=call.services.label,
                     requester=actor.id, requester_name=actor.name, via=actor.via, channel=actor.channel,
                     created_at=now, updated_at=now, **kw)


# --------------------------------------------------------------------------
# refusals


async def denied(call: Call, denial: Denial) -> Reply:
    """A command refused by the access policy; audited when it would change something."""
    reply = error_reply(call.parsed.line, denial.message, denial.hint)
    if call.parsed.spec.effect != "read":
        op = _operation(call, _kind(call), state="denied", result={"reason": denial.reason})
        await audit(call.services, "denied", op, call.actor, reason=denial.reason)
        reply = dataclasses.replace(reply, operation=op)
    return reply


# --------------------------------------------------------------------------
# destructive: plan, then ask


def _frees(item) -> bool:
    return bool(item.deleted and not item.refusal)


def plan_parts(plan: Plan) -> tuple:
    rows = tuple((item.arg, truncate_id(item.image_id) if item.image_id else "-", item.summary(),
                  ", ".join(item.containers) or "-", human_size(item.freed) if _frees(item) else "-")
                 for item in plan.items)
    # FREES sorts by the bytes freed ("-": nothing freed, 0)
    values = tuple((None, None, None, None, float(item.freed) if _frees(item) else 0.0) for item in plan.items)
    parts: list = []
    if plan.note:
        parts.append(Notice(plan.note))
    parts.append(Table(PLAN_COLUMNS, rows, values=values))
    parts.append(Notice(plan.headline()))
    return tuple(parts)


def _who_confirms(op: Operation) -> str:
    if op.needs_approver:
        return "an approver other than the requester"
    return "the requester" if op.via != "shell" else "you"


async def _request_tags(call: Call, plan: TagsPlan, replaces: str = "") -> Reply:
    """``pull -a``: the tags it will pull, then a confirmation (no two-person
    rule: that is for removals)."""
    services = call.services
    store, _ = _stored(services)
    op = _operation(call, plan.kind, fingerprint=plan.fingerprint(), plan=plan.to_json(),
                    expires_at=services.clock() + services.confirm_ttl)
    await store.add(op)
    await audit(services, "requested", op, call.actor, plan=plan.to_json(), **_replacing(replaces))
    parts = (Table(("TAG",), tuple((t,) for t in plan.tags)), Notice(plan.headline()),
             Confirmation(op.id, f"Pull these {len(plan.tags)} tags on {op.host}?", op.expires_at, _who_confirms(op),
                          verb="Pull"))
    return Reply(call.parsed.line, parts, summary=f"{plan.headline()} Waiting for confirmation.", operation=op)


async def _run_tags(call: Call, plan: TagsPlan, claimed: Operation, actor: Actor, started: float,
                    emit: Emit) -> Reply:
    services = call.services
    await audit(services, "running", claimed, actor)
    from .pull import pull_tags

    lines, errors = await pull_tags(dataclasses.replace(call, emit=emit), plan)
    ok = len(plan.tags) - len(errors)
    parts = [Preformatted("\n".join(lines)),
             Notice(f"Pulled {ok} of {len(plan.tags)} tags of {plan.shown} in {time.monotonic() - started:.1f}s.")]
    reply = Reply(claimed.command, tuple(parts), status=Status.OK if not errors else Status.FAILED,
                  summary=f"pulled {ok} of {len(plan.tags)} tags")
    return await _finish(claimed, actor, services, "done" if not errors else "failed", started, reply,
                         reference=plan.repository, pulled=[t for t in plan.tags if t not in dict(errors)],
                         errors=[list(e) for e in errors], result=reply.summary)


def _is_tags(plan: Plan | TagsPlan) -> bool:
    """A `pull -a` plan (handlers/pull.py, loaded by the command that made it) rather than a removal's."""
    from .pull import TagsPlan

    return isinstance(plan, TagsPlan)


def _replacing(replaces: str) -> dict:
    """The audit detail of a plan made because an earlier one was superseded."""
    return {"replaces": replaces} if replaces else {}


async def request(call: Call, plan: Plan | TagsPlan, *, replaces: str = "") -> Reply:
    """Store the plan as a pending operation and ask for a confirmation.
    ``replaces``: the id of the plan this one supersedes (its host changed
    before it ran), named in the new plan's audit record."""
    if _is_tags(plan):
        return await _request_tags(call, plan, replaces)
    services = call.services
    line = call.parsed.line
    if not plan.items:
        return call.reply(Preformatted("Total reclaimed space: 0B"), Notice("Nothing to remove."),
                          summary="nothing to remove")
    if not plan.acting:
        # every argument would be refused: say so in the engine's words, as the CLI does
        refusals = tuple(ErrorPart(DAEMON_PREFIX + item.refusal if not item.refusal.startswith("invalid")
                                   else item.refusal) for item in plan.refused)
        return call.reply(*plan_parts(plan)[:-1], *refusals, status=Status.FAILED,
                          summary=f"the engine would refuse: {plan.items[0].refusal[:200]}")
    store, _ = _stored(services)
    policy = services.access()
    op = _operation(call, plan.kind, fingerprint=plan.fingerprint(), plan=plan.to_json(),
                    expires_at=services.clock() + services.confirm_ttl,
                    needs_approver=policy.needs_approver(call.actor))
    await store.add(op)
    await audit(services, "requested", op, call.actor, plan=_plan_detail(plan), **_replacing(replaces))
    question = f"Remove as planned on {op.host}?"
    return Reply(line, plan_parts(plan) + (Confirmation(op.id, question, op.expires_at, _who_confirms(op)),),
                 summary=f"{plan.headline()} Waiting for confirmation.", operation=op)


def _plan_detail(plan: Plan) -> dict:
    return {"untagged": plan.untagged, "deleted": plan.deleted, "freed": plan.freed,
            "refused": [[i.arg, i.refusal] for i in plan.refused]}


async def _replan(op: Operation, services: Services) -> tuple[Plan, Model, Call]:
    from .dispatch import parse_command

    command = parse_command(op.command)
    requester = Actor(op.requester, op.requester_name, op.via, op.channel)
    call = Call(command.parsed, requester, services, None, substitution=command.substitution)
    plan = await command.spec.planner(call)
    return plan, getattr(plan, "model", None), call


def _state_reply(op: Operation, services: Services) -> Reply:
    """What a late click is told: the operation already moved on."""
    who = op.decided_by_name or op.decided_by
    texts = {
        "running": f"This removal is already running (confirmed by {who}).",
        "done": f"This removal was already confirmed by {who} and has run.",
        "failed": f"This removal was already confirmed by {who}; it failed.",
        "cancelled": f"This removal was cancelled by {who}: nothing was removed.",
        "expired": "This confirmation expired: nothing was removed. Run the command again for a fresh plan.",
        "superseded": "This plan was replaced by a newer one because the situation changed: use the newer one.",
        "interrupted": "Dockhand stopped while this removal ran; check the host with `docker images`.",
    }
    return Reply(op.command, (ErrorPart(texts.get(op.state, f"This operation is {op.state}."),
                              "Nothing more was done."),),
                 status=Status.FAILED, summary=f"already {op.state}", operation=op, meta={"late": True})


async def _pending(op_id: str, actor: Actor, services: Services, check, step: str
                   ) -> tuple[Operation | None, Reply | None]:
    """The pending operation ``actor`` may ``step`` (confirm, cancel), or the
    reply that says why not (unknown, already settled, not allowed: audited)."""
    op = await services.store.get(op_id)
    if op is None:
        return None, error_reply("docker", "There is no such pending removal.",
                                 "It may have been made by another Dockhand, or purged long after it ended.")
    if op.state != "pending":
        return op, _state_reply(op, services)
    denial = check(services.access(), actor, op)
    if denial is not None:
        await audit(services, "denied", op, actor, reason=denial.reason, step=step)
        return op, Reply(op.command, (ErrorPart(denial.message, denial.hint),), status=Status.FAILED,
                         summary=denial.reason, operation=op, meta={"denied": True})
    return op, None


async def _host_of(op_id: str, services: Services) -> Services:
    """The Services of the host an operation was planned on (many hosts: the
    operation records its host's label); ``services`` itself otherwise."""
    if services.fleet is None or services.store is None:
        return services
    op = await services.store.get(op_id)
    here = services.fleet.for_label(op.host) if op is not None else None
    return here if here is not None else services


async def _fleet_op(op_id: str, services: Services) -> Operation | None:
    """The fleet operation ``op_id`` names (one confirmation over several hosts), or None."""
    if services.fleet is None or services.store is None:
        return None
    op = await services.store.get(op_id)
    return op if op is not None and op.kind == "fleet" else None


async def claim(op: Operation, actor: Actor, services: Services, store, *,
                fresh: str) -> tuple[Operation | None, Reply | None]:
    """The confirmation's turn: past its expiry the operation is marked expired
    (and audited), else it is claimed once (pending -> running, atomic in the
    store) and the confirmation audited. (claimed, None), or (None, the reply:
    expired, or the state someone else's click already moved it to)."""
    now = services.clock()
    if now >= op.expires_at:
        expired = await store.transition(op.id, ["pending"], "expired", now=now)
        if expired is None:
            return None, _state_reply(await store.get(op.id), services)
        await audit(services, "expired", expired, actor)
        return None, Reply(op.command, (ErrorPart("This confirmation expired: nothing was removed.",
                                                  f"Run the command again for {fresh}."),),
                           status=Status.FAILED, summary="expired", operation=expired)
    claimed = await store.transition(op.id, ["pending"], "running", now=now, by=actor.id, by_name=actor.name,
                                     result={"runner": services.runner})
    if claimed is None:  # someone else's click got there first
        return None, _state_reply(await store.get(op.id), services)
    await audit(services, "confirmed", claimed, actor)
    return claimed, None


async def confirm(op_id: str, actor: Actor, services: Services, emit: Emit = None, *,
                  checked: bool = False) -> Reply:
    """Confirm a pending operation: check, claim once, re-plan, act, report.
    ``checked``: who confirms was already checked (one confirmation over
    several hosts, ``handlers/fleet_ops.py``, checks every host's rules first)."""
    parent = await _fleet_op(op_id, services)
    if parent is not None:
        from . import fleet_ops

        return await fleet_ops.confirm(parent, actor, services)
    services = await _host_of(op_id, services)
    store, _ = _stored(services)
    op, refusal = await _pending(op_id, actor, services, (lambda *_: None) if checked else may_confirm, "confirm")
    if refusal is not None:
        return refusal
    claimed, answer = await claim(op, actor, services, store, fresh="a fresh plan")
    if claimed is None:
        return answer
    if emit is not None:
        await emit(Reply(op.command, (Notice(f"Confirmed by {actor.name or actor.id}: checking the plan again…"),),
                         summary="running", operation=claimed))
    started = time.monotonic()
    try:
        plan, model, call = await _replan(claimed, services)
    except DockhandError as exc:
        return await _finish(claimed, actor, services, "failed", started,
                             Reply(op.command, (ErrorPart(exc.message, exc.hint),), status=Status.FAILED,
                                   summary="could not check the plan again"), error=exc.message)
    if plan.fingerprint() != claimed.fingerprint:
        # the plan shown is not what would happen now: it is superseded (on the
        # record as such), and the new plan is a new pending operation with a
        # confirmation of its own (``replaces`` links the two in the audit log)
        reason = "the situation changed since the plan"
        superseded = await store.transition(op.id, ["running"], "superseded", now=services.clock(),
                                            result={"reason": reason})
        await audit(services, "superseded", superseded or claimed, actor, reason=reason,
                    new_plan=plan.to_json() if _is_tags(plan) else _plan_detail(plan))
        fresh = await request(call, plan, replaces=op.id)
        note = Notice("The situation changed since this plan was shown: nothing was removed. "
                      "Here is the new plan; confirm it if it is still what you want.")
        return dataclasses.replace(fresh, parts=(note,) + fresh.parts,
                                   meta={**fresh.meta, "superseded": superseded or claimed})
    if _is_tags(plan):
        return await _run_tags(call, plan, claimed, actor, started, emit)
    await audit(services, "running", claimed, actor)
    outcome = await execute(plan, model, services)
    status = "done" if not outcome["errors"] else "failed"
    parts = [Preformatted(outcome["text"])] if outcome["text"] else []
    for arg, message in outcome["errors"]:
        parts.append(ErrorPart(message, f"(argument {arg})"))
    freed = outcome["freed"]
    parts.append(Notice(
        f"Planned: untag {len(plan.untagged)}, delete {len(plan.deleted)} "
        f"({human_size(plan.freed)}). Done: untagged {len(outcome['untagged'])}, deleted "
        f"{len(outcome['deleted_images'])} image(s), {human_size(freed)} freed in "
        f"{time.monotonic() - started:.1f}s." + (f" Unplanned: {', '.join(outcome['unplanned'])}."
                                                if outcome["unplanned"] else "")))
    reply = Reply(op.command, tuple(parts), status=Status.OK if status == "done" else Status.FAILED,
                  summary=f"removed {len(outcome['deleted_images'])} image(s), {human_size(freed)} freed")
    return await _finish(claimed, actor, services, status, started, reply,
                         resolved=[[i.arg, i.image_id] for i in plan.items if i.image_id],
                         untagged=outcome["untagged"], deleted=outcome["deleted_images"], freed=freed,
                         errors=[list(e) for e in outcome["errors"]], unplanned=outcome["unplanned"])


async def _finish(op: Operation, actor: Actor, services: Services, state: str, started: float, reply: Reply,
                  **detail: Any) -> Reply:
    detail["duration"] = round(time.monotonic() - started, 3)
    final = await services.store.transition(op.id, ["running"], state, now=services.clock(), result=detail)
    final = final or op
    await audit(services, state, final, actor, **detail)
    return dataclasses.replace(reply, operation=final)


async def execute(plan: Plan, model: Model | None, services: Services) -> dict:
    """Run exactly the plan's steps, as one batch; the CLI's output lines and the outcome."""
    steps = [(item, step) for item in plan.acting for step in item.steps]
    outcomes = await services.engine.remove_many([(s.ref, s.force, s.noprune) for _, s in steps])
    lines: list[str] = []
    untagged: list[str] = []
    deleted: list[str] = []
    errors: list[tuple[str, str]] = []
    word = ("untagged", "deleted") if plan.kind == "prune" else ("Untagged", "Deleted")
    for (item, step), outcome in zip(steps, outcomes):
        if isinstance(outcome, Conflict) and step.tolerate_conflict:
            continue  # the daemon's prune skips an image in conflict, and so does its plan
        if isinstance(outcome, Exception):
            errors.append((item.arg, getattr(outcome, "message", str(outcome))))
            continue
        untagged += outcome.untagged
        deleted += outcome.deleted
        lines += [f"{word[0]}: {u}" for u in outcome.untagged] + [f"{word[1]}: {d}" for d in outcome.deleted]
    # the engine also reports deleted layers; keep the images
    known = set(model.images) if model is not None else None
    deleted_images = [d for d in deleted if known is None or d in known]
    planned = set(plan.deleted)
    unplanned = [truncate_id(d) for d in deleted_images if d not in planned]
    gone = set(deleted_images)
    # what the plan predicted for the images that did go (checked against the
    # engine's own accounting by tests/integration/test_removal_oracle.py)
    freed = sum(item.freed for item in plan.acting if item.deleted and set(item.deleted) <= gone)
    if plan.kind == "prune":
        text = "\n".join((["Deleted Images:"] + lines + [""] if lines else []) +
                         [f"Total reclaimed space: {human_size(freed)}"])
    else:
        text = "\n".join(lines)
    return {"text": text, "untagged": untagged, "deleted_images": deleted_images, "errors": errors,
            "freed": freed, "unplanned": unplanned}


async def cancel(op_id: str, actor: Actor, services: Services) -> Reply:
    parent = await _fleet_op(op_id, services)
    if parent is not None:
        from . import fleet_ops

        return await fleet_ops.cancel(parent, actor, services)
    services = await _host_of(op_id, services)
    store, _ = _stored(services)
    op, refusal = await _pending(op_id, actor, services, may_cancel, "cancel")
    if refusal is not None:
        return refusal
    done = await store.transition(op.id, ["pending"], "cancelled", now=services.clock(), by=actor.id,
                                  by_name=actor.name)
    if done is None:
        return _state_reply(await store.get(op.id), services)
    await audit(services, "cancelled", done, actor)
    return Reply(op.command, (Notice(f"Cancelled by {actor.name or actor.id}: nothing was removed."),),
                 summary="cancelled", operation=done)


async def expire_due(services: Services) -> list[Operation]:
    """Expire every pending operation past its time; the ones this call expired."""
    if services.store is None:
        return []
    now = services.clock()
    out = []
    for op in await services.store.due(now):
        expired = await services.store.transition(op.id, ["pending"], "expired", now=now)
        if expired is not None:
            await audit(services, "expired", expired)
            out.append(expired)
    return out


async def recover(services: Services) -> list[Operation]:
    """At start-up: operations whose process is gone were cut short. They are
    marked interrupted (never run again) and audited. An operation another
    live process is running (several bots or a shell sharing one store) is
    left alone: ``services.runner_alive`` tells."""
    if services.store is None:
        return []
    out = []
    for op in await services.store.in_state("running"):
        runner = str((op.result or {}).get("runner") or "")
        if runner and services.runner_alive(runner):
            continue
        done = await services.store.transition(op.id, ["running"], "interrupted", now=services.clock(),
                                               result={"reason": "Dockhand stopped while it ran"})
        if done is not None:
            await audit(services, "interrupted", done)
            out.append(done)
    return out


# --------------------------------------------------------------------------
# write: run at once, audited


async def run_write(call: Call) -> Reply:
    """A command that adds to the host (pull): recorded as an operation,
    audited when it starts and when it ends."""
    services = call.services
    if services.store is None or services.audit is None:
        return await call.parsed.spec.run(call)
    op = _operation(call, _kind(call), state="running", result={"runner": services.runner})
    await services.store.add(op)
    await audit_steps(services, op, call.actor, "requested", "running")
    started = time.monotonic()
    try:
        reply = await call.parsed.spec.run(call)
    except DockhandError as exc:
        await _finish(op, call.actor, services, "failed", started, error_reply(op.command, exc.message),
                      error=exc.message)
        raise
    except BaseException:
        await services.store.transition(op.id, ["running"], "interrupted", now=services.clock(),
                                        result={"reason": "stopped while it ran"})
        raise
    detail = {k: v for k, v in reply.meta.items()
              if k in ("digest", "image_id", "reference", "exit_code", "timed_out", "container")}
    detail["result"] = reply.summary
    return await _finish(op, call.actor, services, "done" if reply.ok else "failed", started, reply, **detail)


"""Fleet-wide changes: one plan per host, one confirmation for all.

``rmi @all old:1.0`` (or a group) plans on every host at once, each within
its timeout, through the single-host path: each host's plan becomes that
host's own pending :class:`~handlers.ports.Operation` (its policy decides
who may confirm, its audit records name it). A *fleet* operation ties them
together: one Confirmation, whose id is the fleet operation's.

Confirming it checks the confirmer against every host's rules first (one
confirmation covers all or none: a host that needs an approver makes the
whole confirmation need one), claims the fleet operation once, then
confirms every host's operation concurrently through
:func:`handlers.operations.confirm`: each re-plans and acts only on an
unchanged plan. A host whose plan changed is skipped with its new plan
shown; the others go ahead. Each host's result is reported in its own
section and audited on its own; the fleet operation records them all.

A skipped host's first plan is superseded (audited so); its new plan is a
new pending operation of that host, and the answer keeps it in that host's
section with its own :class:`~handlers.replies.Confirmation` (a reply may
ask several: ``Reply.confirmations``), also in ``meta["replanned"]`` (host
-> that host's own reply) for a front end that shows each pending
operation on its own, as Slack does. Confirming it is an ordinary
single-host confirmation: that host's role and two-person rule, its own
expiry, one claim.

Writes that need no confirmation (``pull @web nginx:1.27``) run on every
host at once, each an audited operation of its own host.
"""

from __future__ import annotations

import dataclasses
from typing import Awaitable, Callable

from . import fanout
from .access import authorise, may_cancel, may_confirm
from .argv import DESTRUCTIVE, WRITE
from .context import Actor, Services
from .operations import _state_reply, audit, new_id
from .ports import Operation
from .replies import Confirmation, ErrorPart, Notice, Reply, Status, error_reply

KIND = "fleet"


def _hosts_label(selector: str, names: tuple[str, ...]) -> str:
    return f"{selector} ({', '.join(names)})" if selector not in names else selector


async def request(line: str, selector: str, names: tuple[str, ...], actor: Actor, services: Services,
                  run_one: Callable[[Services], Awaitable[Reply]]) -> Reply:
    """Plan on every host; one pending fleet operation over the hosts' own."""
    fleet = services.fleet
    combined = await fanout.run(line, selector, names, fleet, run_one, keep_confirmations=True)
    children: dict[str, str] = {}
    needs_approver, expires = False, None
    for name, reply in combined.meta["replies"].items():
        question, op = reply.confirmation, reply.operation
        if question is not None and op is not None:
            children[name] = op.id
            needs_approver = needs_approver or op.needs_approver
            expires = op.expires_at if expires is None else min(expires, op.expires_at)
    parts = tuple(p for p in combined.parts if not isinstance(p, Confirmation))
    meta = {k: v for k, v in combined.meta.items() if k != "replies"}
    if not children:
        return dataclasses.replace(combined, parts=parts, meta=meta)
    now = services.clock()
    where = _hosts_label(selector, names)
    parent = Operation(id=new_id(), kind=KIND, command=line, host=where, requester=actor.id,
                       requester_name=actor.name, via=actor.via, channel=actor.channel,
                       plan={"children": children}, created_at=now, updated_at=now, expires_at=expires,
                       needs_approver=needs_approver)
    await services.store.add(parent)
    await audit(services, "requested", parent, actor, hosts=list(children))
    skipped = [n for n in names if n not in children]
    text = f"One confirmation runs the plans of {', '.join(children)} at once."
    if skipped:
        text += f" Nothing is planned on {', '.join(skipped)}."
    who = ("an approver other than the requester" if needs_approver
           else ("the requester" if actor.via != "shell" else "you"))
    question = Confirmation(parent.id, f"Run as planned on {len(children)} host(s): {', '.join(children)}?",
                            expires, who)
    return dataclasses.replace(combined, parts=parts + (Notice(text), question), operation=parent,
                               summary=f"{combined.summary}; waiting for one confirmation", meta=meta)


def _may_confirm_here(here: Services, actor: Actor, child: Operation, parent: Operation):
    """May ``actor`` confirm this host's part of a fleet operation? Its own
    rule (the two-person rule where it has approvers, else the requester
    with the role); and when another host needs an approver (so the
    confirmer is not the requester), holding the role that removing needs
    here: a confirmation acts on each host, so its confirmer must be allowed
    to act on each."""
    policy = here.access()
    if child.needs_approver or actor.id == child.requester:
        return may_confirm(policy, actor, child)
    return authorise(policy, actor, DESTRUCTIVE if child.kind in ("rmi", "prune") else WRITE,
                     f"docker {child.kind}")


async def _children(parent: Operation, services: Services) -> list[tuple[str, Services, Operation | None]]:
    fleet = services.fleet
    out = []
    for name, op_id in parent.plan.get("children", {}).items():
        here = fleet.services(name) if fleet is not None and name in fleet.targets else None
        if here is not None:
            out.append((name, here, await services.store.get(op_id)))
    return out


async def confirm(parent: Operation, actor: Actor, services: Services) -> Reply:
    """Check the confirmer on every host, claim once, confirm each host's plan at once."""
    from . import operations

    store = services.store
    if parent.state != "pending":
        return _state_reply(parent, services)
    children = await _children(parent, services)
    for name, here, child in children:
        if child is None or child.state != "pending":
            continue
        denial = _may_confirm_here(here, actor, child, parent)
        if denial is not None:
            await audit(services, "denied", parent, actor, reason=denial.reason, step="confirm", on=name)
            return Reply(parent.command, (ErrorPart(f"On {name}: {denial.message}", denial.hint),),
                         status=Status.FAILED, summary=denial.reason, operation=parent, meta={"denied": True})
    claimed, answer = await operations.claim(parent, actor, services, store, fresh="fresh plans")
    if claimed is None:
        return answer

    async def one(child_id: str, here: Services) -> Reply:
        return await operations.confirm(child_id, actor, here, checked=True)

    names = tuple(n for n, _, _ in children)
    by_name = {n: (h, c) for n, h, c in children}

    async def run_one(here: Services) -> Reply:
        name = next(n for n, (h, _) in by_name.items() if h is here)
        child = by_name[name][1]
        if child is None:
            return error_reply(parent.command, f"The plan for {name} is gone from the store.")
        return await one(child.id, here)

    # no fan-out timeout here: each host's removal is bounded by its engine's own timeouts
    combined = await fanout.run(parent.command, parent.host.split(" (")[0], names, services.fleet, run_one,
                                keep_confirmations=True, timeout=False)
    results: dict[str, str] = {}
    replanned: dict[str, Reply] = {}  # a changed host -> its answer: the new plan, a pending operation there
    settled = True  # every host either acted as planned or asks its own question now
    deleted, freed = 0, 0
    for name, reply in combined.meta["replies"].items():
        op = reply.operation
        superseded = reply.meta.get("superseded")
        state = "changed" if superseded is not None else (op.state if op is not None else "failed")
        results[name] = state
        if state == "changed":
            settled = settled and reply.ok
            if reply.confirmation is not None and op is not None and op.state == "pending":
                replanned[name] = reply
        else:
            settled = settled and state == "done"
        if op is not None and state == "done":
            deleted += len((op.result or {}).get("deleted") or ())
            freed += int((op.result or {}).get("freed") or 0)
    # A changed host's section keeps its new plan and that plan's own Confirmation
    # (Reply.confirmations): a front end settles it as it settles any plan, through
    # operations.confirm/cancel on that host's new operation, so the host's own
    # rules, its expiry and one claim apply to it as to every confirmation.
    parts = list(combined.parts)
    changed = [n for n, s in results.items() if s == "changed"]
    if changed:
        asked = [n for n in changed if n in replanned]
        text = (f"Skipped on {', '.join(changed)}: the plan changed since it was shown, so nothing was removed "
                "there.")
        if asked:
            text += (f" The new plan for {', '.join(asked)} waits for a confirmation of its own: nothing more is "
                     "removed there until it is confirmed.")
        parts.append(Notice(text))
    failed = any(s not in ("done", "changed") for s in results.values())  # a skipped host is no failure
    record = {"hosts": results, "deleted": [""] * deleted, "freed": freed}
    if replanned:
        record["replanned"] = {n: r.operation.id for n, r in replanned.items()}
    final = await store.transition(parent.id, ["running"], "failed" if failed else "done", now=services.clock(),
                                   result=record)
    final = final or claimed
    await audit(services, final.state, final, actor, hosts=results,
                **({"replanned": record["replanned"]} if replanned else {}))
    summary = ", ".join(f"{n}: {s}" for n, s in results.items())
    meta = {k: v for k, v in combined.meta.items() if k != "replies"} | {"hosts": results}
    if replanned:
        meta["replanned"] = replanned
    return dataclasses.replace(combined, parts=tuple(parts), status=Status.OK if settled else Status.FAILED,
                               summary=summary, operation=final, meta=meta)


async def cancel(parent: Operation, actor: Actor, services: Services) -> Reply:
    """Cancel the fleet operation and every host's pending plan under it."""
    from . import operations

    if parent.state != "pending":
        return _state_reply(parent, services)
    denial = may_cancel(services.access(), actor, parent)
    if denial is not None:
        await audit(services, "denied", parent, actor, reason=denial.reason, step="cancel")
        return Reply(parent.command, (ErrorPart(denial.message, denial.hint),), status=Status.FAILED,
                     summary=denial.reason, operation=parent, meta={"denied": True})
    done = await services.store.transition(parent.id, ["pending"], "cancelled", now=services.clock(), by=actor.id,
                                           by_name=actor.name)
    if done is None:
        return _state_reply(await services.store.get(parent.id), services)
    await audit(services, "cancelled", done, actor)
    for _name, here, child in await _children(parent, services):
        if child is not None and child.state == "pending":
            await operations.cancel(child.id, actor, here)
    return Reply(parent.command, (Notice(f"Cancelled by {actor.name or actor.id}: nothing was removed on "
                                         f"{parent.host}."),), summary="cancelled", operation=done)

"""Who may run, confirm or cancel what: the one place that decides.

Roles grow: a *viewer* runs read-only commands, an *operator* also pulls, an
*admin* also removes (rmi, prune) and runs smoke tests (``docker run``). A
command's role follows from its effect in the command table
(``CommandSpec.effect``), or from its ``CommandSpec.role`` when the table asks
for more than the effect implies; never from its name.

Grants are Slack user IDs (``U…``/``W…``) and user-group IDs (``S…``); the
front end tells which of the configured groups an actor belongs to
(``Actor.groups``). With nothing configured everyone is a viewer. The
terminal's user is an admin: they already hold the Docker socket.

Two-person rule: when approvers are configured, a destructive operation
requested in chat must be confirmed by a *different* person among them; the
requester cannot. Without approvers, the requester confirms.
"""

from __future__ import annotations

import enum
from dataclasses import field

from .argv import DESTRUCTIVE, READ, WRITE
from .context import Actor
from .ports import Operation
from .records import record


class Role(enum.IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return {0: "no role", 1: "viewer", 2: "operator", 3: "admin"}[int(self)]


ROLE_FOR_EFFECT = {READ: Role.VIEWER, WRITE: Role.OPERATOR, DESTRUCTIVE: Role.ADMIN}
ROLE_BY_NAME = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}
SETTING_FOR_ROLE = {Role.VIEWER: "DOCKHAND_VIEWERS", Role.OPERATOR: "DOCKHAND_OPERATORS",
                    Role.ADMIN: "DOCKHAND_ADMINS"}


@record
class Denial:
    """Why not, in words a person can act on; ``reason`` is short, for the audit log."""

    message: str
    hint: str
    reason: str


@record
class Policy:
    admins: frozenset[str] = frozenset()
    operators: frozenset[str] = frozenset()
    viewers: frozenset[str] = frozenset()  # empty: everyone is a viewer
    approvers: frozenset[str] = frozenset()  # non-empty: two-person rule for destructive operations
    channels: frozenset[str] = frozenset()  # non-empty: chat commands only in these channels
    # the role a removal (a DESTRUCTIVE command) needs on this host: a staging host may let operators remove
    remove_role: Role = Role.ADMIN
    groups: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        everything = self.admins | self.operators | self.viewers | self.approvers
        object.__setattr__(self, "groups", frozenset(g for g in everything if g.startswith("S")))

    def _ids(self, actor: Actor) -> frozenset[str]:
        return frozenset({actor.id}) | frozenset(actor.groups)

    def role_of(self, actor: Actor) -> Role:
        if actor.via == "shell":
            return Role.ADMIN
        ids = self._ids(actor)
        if ids & self.admins:
            return Role.ADMIN
        if ids & self.operators:
            return Role.OPERATOR
        if not self.viewers or ids & self.viewers:
            return Role.VIEWER
        return Role.NONE

    def is_approver(self, actor: Actor) -> bool:
        return bool(self._ids(actor) & self.approvers)

    @property
    def two_person(self) -> bool:
        return bool(self.approvers)

    def needs_approver(self, actor: Actor) -> bool:
        """Whether an operation ``actor`` requests must be confirmed by someone else."""
        return self.two_person and actor.via != "shell"


def _grant_hint(actor: Actor, role: Role) -> str:
    who = f"your Slack user ID ({actor.id})" if actor.via == "slack" else f"'{actor.id}'"
    return (f"An admin of this Dockhand grants it by adding {who} or one of your user groups to "
            f"{SETTING_FOR_ROLE[role]} (or to a setting of a higher role), then restarting Dockhand.")


def role_needed(effect: str, role: str = "", policy: Policy | None = None) -> Role:
    """The role a command needs: what its effect implies (a removal: the
    policy's ``remove_role``, admin unless a host lowers it), or its own
    ``CommandSpec.role`` when that is higher (``docker run`` is a WRITE that
    needs an admin)."""
    need = ROLE_FOR_EFFECT[effect]
    if effect == DESTRUCTIVE and policy is not None:
        need = policy.remove_role
    return max(need, ROLE_BY_NAME[role]) if role else need


def authorise(policy: Policy, actor: Actor, effect: str, command_path: str, role: str = "") -> Denial | None:
    """May ``actor`` run a command of this effect (and declared role) here? None when yes."""
    if actor.via == "slack" and policy.channels and actor.channel not in policy.channels:
        return Denial(f"Dockhand does not take commands in this channel ({actor.channel or 'unknown'}).",
                      "Use one of the channels listed in DOCKHAND_CHANNELS, or ask an admin to add this one.",
                      "channel not allowed")
    need = role_needed(effect, role, policy)
    have = policy.role_of(actor)
    if have >= need:
        return None
    return Denial(f"`{command_path}` needs the {need.label} role; you have {have.label}.",
                  _grant_hint(actor, need), f"needs {need.label}, has {have.label}")


def may_confirm(policy: Policy, actor: Actor, op: Operation) -> Denial | None:
    """May ``actor`` confirm ``op``? The role again, then the two-person rule."""
    path = {"prune": "docker image prune", "pull-all": "docker pull"}.get(op.kind, f"docker {op.kind}")
    denial = authorise(policy, actor, DESTRUCTIVE if op.kind in ("rmi", "prune") else WRITE, path)
    if denial is not None and denial.reason == "channel not allowed":
        return denial
    if op.needs_approver:
        if actor.id == op.requester:
            return Denial("You asked for this removal, so someone else must confirm it (two-person rule).",
                          "Ask one of the approvers (DOCKHAND_APPROVERS) to press Confirm.",
                          "requester cannot approve")
        if not policy.is_approver(actor):
            return Denial("Only an approver may confirm this removal (two-person rule).",
                          "Approvers are listed in DOCKHAND_APPROVERS.", "not an approver")
        return None  # an approver confirms whatever their own role
    if denial is not None:
        return denial
    if actor.id != op.requester:
        return Denial("Only the person who asked for this removal may confirm it.",
                      f"Ask {op.requester_name or op.requester} to confirm, or run the command yourself.",
                      "not the requester")
    return None


def may_cancel(policy: Policy, actor: Actor, op: Operation) -> Denial | None:
    """The requester, an approver or an admin may cancel."""
    if actor.id == op.requester or policy.is_approver(actor) or policy.role_of(actor) >= Role.ADMIN:
        return None
    return Denial("Only the requester, an approver or an admin may cancel this removal.",
                  "Nothing happens until it is confirmed; it expires by itself.", "may not cancel")


def parse_grants(raw: str) -> tuple[frozenset[str], list[str]]:
    """A comma-separated list of Slack IDs; (ids, problems)."""
    ids, problems = set(), []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        if not _looks_like_slack_id(item):
            problems.append(f"{item!r} is not a Slack user ID (U…/W…) or user-group ID (S…)")
            continue
        ids.add(item)
    return frozenset(ids), problems


def _looks_like_slack_id(text: str) -> bool:
    return len(text) >= 2 and text[0] in "UWS" and text[1:].isalnum() and text.upper() == text


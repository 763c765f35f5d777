"""Who is asking and what they may reach: the inputs of every use case."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping, Optional

from .ports import AuditSink, Engine, OperationStore, RegistryCatalog
from .records import record
from .replies import Reply

if TYPE_CHECKING:
    from .access import Policy
    from .fleet import Fleet
    from .pullhub import PullHub


def _pull_hub():
    from .pullhub import PullHub

    return PullHub()

DEFAULT_CONFIRM_TTL = 600.0  # seconds a confirmation stays valid


@record
class Actor:
    """The person behind a command, as the front end knows them."""

    id: str
    name: str = ""
    via: str = "shell"  # "shell" | "slack"
    channel: str = ""
    channel_name: str = ""  # as the payload names it ("prod-ops"): many hosts' channel defaults may use it
    # the configured user groups (Slack ``S…`` IDs) this person belongs to,
    # as the front end found them; roles are decided in handlers/access.py
    groups: frozenset[str] = frozenset()


@dataclass
class Services:
    """What the composition root (``bot/wiring.py``) hands to the handlers."""

    engine: Engine
    host_label: str = ""  # how people call the target host ("prod-web-1")
    search_index: str = ""  # registry index for `search` ("" = Docker Hub)
    catalog: RegistryCatalog | None = None  # v2 catalog and tag lists, for registries without search
    client_info: Mapping = field(default_factory=dict)  # Dockhand's side of `docker version`
    engine_version: str = ""  # learnt from the engine on first success, for context lines
    # what the engine says it is (handlers/engine_identity.py: version, the sample engine's label)
    engine_identity: dict = field(default_factory=dict)
    store: OperationStore | None = None  # pending confirmations, operations, deliveries seen
    audit: AuditSink | None = None  # the local audit log (hash-chained JSON Lines)
    policy: "Policy | None" = None  # roles, approvers, channels (None: the default policy)
    confirm_ttl: float = DEFAULT_CONFIRM_TTL
    clock: Callable[[], float] = time.time  # injectable, for expiry tests
    # who runs operations here ("host:pid:start"), and whether such a runner is
    # still alive: lets a restarted bot tell its own cut-short operations from
    # those of another process sharing the store (bot/wiring.py knows how)
    runner: str = ""
    runner_alive: Callable[[str], bool] = lambda runner: False
    pulls: "PullHub" = field(default_factory=lambda: _pull_hub())  # pulls in flight, shared by requests
    # many hosts (handlers/fleet.py): every named host's Services, shared by them all; None: one engine
    fleet: "Fleet | None" = None

    @property
    def label(self) -> str:
        return self.host_label or self.engine.host

    def access(self) -> "Policy":
        from .access import Policy

        return self.policy if self.policy is not None else Policy()


# A front end may pass an ``emit`` callback to receive interim replies (pull
# progress) before the final one; handlers call it at most about once a second.
Emit = Optional[Callable[[Reply], Awaitable[None]]]

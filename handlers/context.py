"""Who is asking and what they may reach: the inputs of every use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional

from .ports import Engine
from .replies import Reply


@dataclass(frozen=True)
class Actor:
    """The person behind a command, as the front end knows them."""

    id: str
    name: str = ""
    is_admin: bool = False
    via: str = "shell"  # "shell" | "slack"
    channel: str = ""


@dataclass
class Services:
    """What the composition root (``bot/wiring.py``) hands to the handlers."""

    engine: Engine
    host_label: str = ""  # how people call the target host ("prod-web-1")
    search_index: str = ""  # registry index for `search` ("" = Docker Hub)
    client_info: dict = field(default_factory=dict)  # Dockhand's side of `docker version`
    engine_version: str = ""  # learnt from the engine on first success, for context lines


# A front end may pass an ``emit`` callback to receive interim replies (pull
# progress) before the final one; handlers call it at most about once a second.
Emit = Optional[Callable[[Reply], Awaitable[None]]]

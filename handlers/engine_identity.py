"""Which engine answers: its version, and whether it is Dockhand's sample engine.

Dockhand's private stack (``scripts/run`` starts it when no engine answers)
labels its ``dockerd`` ``org.dockhand.engine=sample`` and names the images its
Docker Hub mirror serves in ``org.dockhand.mirror``. The engine itself says so
in ``docker info``: no setting of Dockhand's can claim a real host is the
sample engine, or hide that the sample engine is one. Every reply from it says
so in its context line, and a pull it cannot serve gets a hint that fits it
(it reaches no registry on the internet) rather than "check your network".
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from .context import Services
from .errors import EngineError, ManifestNotFound, RegistryUnreachable
from .replies import ErrorPart, Reply

SAMPLE_LABEL = "org.dockhand.engine=sample"
MIRROR_LABEL_KEY = "org.dockhand.mirror"
SAMPLE_NOTE = "Dockhand's sample engine: sample images built offline, not one of your hosts"
LEARN_TIMEOUT = 5.0  # seconds the context line may wait for the engine's answer
RETRY_AFTER = 30.0  # after a failed attempt, replies go without it for this long

log = logging.getLogger(__name__)
_IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]{0,127}(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?")


def is_sample(info: dict) -> bool:
    return SAMPLE_LABEL in (info.get("Labels") or [])


def mirror_images(info: dict) -> tuple[str, ...]:
    """The image names the label lists, as plain names only (engine text is data)."""
    for label in info.get("Labels") or []:
        key, _, value = str(label).partition("=")
        if key == MIRROR_LABEL_KEY:
            return tuple(n for n in value.split(",") if _IMAGE_NAME.fullmatch(n))[:20]
    return ()


def sample_pull_hint(images: tuple[str, ...]) -> str:
    has = f"Its Docker Hub mirror has {', '.join(images)}; " if images else ""
    return ("This is Dockhand's sample engine: it reaches no registry on the internet. " + has +
            "anything else fails at once. Point DOCKER_HOST at one of your engines to pull from your registries.")


async def learn(services: Services) -> None:
    """Ask the engine once for its version and labels (``docker info``; bounded; retried later
    on failure). Callers at the same time share one question: a front end may
    start it early (:func:`start_learning`) so it overlaps the command."""
    ident = services.engine_identity
    if ident.get("known") or time.monotonic() < ident.get("retry_at", 0.0):
        return
    loop = asyncio.get_running_loop()
    pending = ident.get("pending")
    if pending is None or pending.done() or pending.get_loop() is not loop:
        pending = ident["pending"] = loop.create_task(_ask(services))
    await asyncio.shield(pending)


def start_learning(services: Services) -> None:
    """Begin :func:`learn` in the background (a one-shot command asks while it works)."""
    asyncio.get_running_loop().create_task(learn(services))


async def _ask(services: Services) -> None:
    ident = services.engine_identity
    try:
        # `docker info` says both: its ServerVersion is /version's Version, and /version is the
        # dearer question (dockerd runs its runtimes' binaries to report their versions)
        info = await asyncio.wait_for(services.engine.info(), LEARN_TIMEOUT)
    except (EngineError, asyncio.TimeoutError):
        ident["retry_at"] = time.monotonic() + RETRY_AFTER
        return
    except Exception:  # a bug in an adapter must not cost the reply its answer
        log.exception("could not learn the engine's version and labels")
        ident["retry_at"] = time.monotonic() + RETRY_AFTER
        return
    services.engine_version = str(info.get("ServerVersion", ""))
    ident.update(known=True, sample=is_sample(info), mirror=mirror_images(info))


def engine_note(services: Services) -> str:
    return SAMPLE_NOTE if services.engine_identity.get("sample") else ""


def fit_hints(reply: Reply, services: Services) -> Reply:
    """On the sample engine, a pull it cannot serve says why (not "check your network")."""
    ident = services.engine_identity
    if not ident.get("sample") or reply.ok:
        return reply
    generic = (RegistryUnreachable.default_hint, ManifestNotFound.default_hint)
    parts = tuple(ErrorPart(p.message, sample_pull_hint(ident.get("mirror", ())))
                  if isinstance(p, ErrorPart) and p.hint in generic else p for p in reply.parts)
    if parts == reply.parts:
        return reply
    return Reply(reply.command, parts, reply.status, reply.summary, reply.actions, reply.host,
                 reply.engine_version, dict(reply.meta), reply.operation, reply.engine_note)

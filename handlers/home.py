"""The host at a glance: what a front end's home screen shows (Slack's Home tab).

:func:`summary` reads the engine once (``version``, ``list_images``,
``disk_usage``: three calls, at once, each bounded by :data:`CALL_TIMEOUT`),
the pulls in flight (``services.pulls``) and the tail of the audit log, and
returns a neutral :class:`HostSummary` per host. Nothing here is Slack: the
Home tab is drawn from it by ``bot/render/home.py``.

A section that could not be read (the engine is down, slow, the audit log is
unreadable) is left empty and says why in ``problems``; the rest is shown.
The numbers are the Docker CLI's: images as ``docker images`` lists them (one
image, several tags: one image, several rows), disk usage and reclaimable
bytes as ``docker system df`` counts them for images.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from .audit import COLUMNS as AUDIT_COLUMNS
from .audit import audit_rows
from .context import Services
from .errors import DockhandError
from .pullhub import PullInFlight

CALL_TIMEOUT = 5.0  # seconds one engine or audit read may take for the home screen
AUDIT_RECORDS = 5  # the last records shown
MAX_PULLS = 10  # pulls in flight listed at most

# The common commands a home screen offers, as command lines a person could type:
# every click runs through dispatch, which authorises it like the typed command.
COMMON_COMMANDS = (
    ("Images", "docker images"),
    ("Dangling images", "docker images -f dangling=true"),
    ("Info", "docker info"),
    ("Audit log", "docker audit 20"),
)
PULL_FORM = "docker pull"  # the command the pull form builds (front ends draw it as a form)


@dataclass(frozen=True)
class DiskSummary:
    total: int  # images the engine counts (docker system df's TOTAL)
    active: int  # of them, used by a container (ACTIVE)
    size: int  # bytes of every image layer (SIZE)
    reclaimable: int  # bytes freed by removing every unused image (RECLAIMABLE)

    @property
    def reclaimable_percent(self) -> int:
        """As the CLI prints it: whole percent, rounded down (0 when nothing is stored)."""
        return self.reclaimable * 100 // self.size if self.size > 0 else 0


@dataclass(frozen=True)
class HostSummary:
    host: str  # the host's label
    engine_version: str = ""
    api_version: str = ""
    os_arch: str = ""
    images: int | None = None  # distinct images `docker images` lists (None: unknown)
    rows: int | None = None  # rows `docker images` prints (a row per tag; dangling ones once)
    disk: DiskSummary | None = None
    pulls: tuple[PullInFlight, ...] = ()
    audit_columns: tuple[str, ...] = AUDIT_COLUMNS
    audit: tuple[tuple[str, ...], ...] = ()  # the last records, oldest first (None-free, clipped)
    audit_kept: bool = True  # False: this Dockhand keeps no audit log
    problems: tuple[str, ...] = ()  # what could not be read, in words a person can act on
    read_at: float = 0.0  # epoch seconds

    @property
    def reachable(self) -> bool:
        return bool(self.engine_version) or self.images is not None


@dataclass(frozen=True)
class Home:
    """What a person's home screen shows: each host Dockhand manages, and the
    commands offered (``(label, command line)``)."""

    hosts: tuple[HostSummary, ...]
    commands: tuple[tuple[str, str], ...] = COMMON_COMMANDS
    pull_form: str = PULL_FORM


async def _bounded(what: str, coro, problems: list[str], who: str = "the engine"):
    try:
        return await asyncio.wait_for(coro, CALL_TIMEOUT)
    except asyncio.TimeoutError:
        problems.append(f"{what}: {who} did not answer within {CALL_TIMEOUT:g}s.")
    except DockhandError as exc:
        first = (exc.message or "failed").splitlines()[0][:300]
        problems.append(f"{what}: {first}")
    return None


def _rows(images) -> int:
    """Rows `docker images` prints: one per repository:tag, an untagged image once."""
    return sum(max(1, len([t for t in i.repo_tags if t != "<none>:<none>"])) for i in images)


async def host_summary(services: Services, *, clock=time.time) -> HostSummary:
    """One host's summary (the engine's three reads run at once)."""
    engine = services.engine
    problems: list[str] = []
    version, images, disk = await asyncio.gather(
        _bounded("Engine version", engine.version(), problems),
        _bounded("Images", engine.list_images(), problems),
        _bounded("Disk usage", engine.disk_usage(), problems))
    records: list = []
    kept = services.audit is not None
    if kept:
        records = await _bounded("Audit log", services.audit.tail(AUDIT_RECORDS), problems, "the audit log") or []
    summary = HostSummary(host=services.label, read_at=clock(), audit_kept=kept,
                          pulls=tuple(services.pulls.active(services.label, limit=MAX_PULLS)),
                          audit=audit_rows(records, clip=80))
    fields: dict = {}
    if version:
        fields.update(engine_version=str(version.get("Version", "") or ""),
                      api_version=str(version.get("ApiVersion", "") or ""),
                      os_arch="/".join(x for x in (str(version.get("Os", "") or ""),
                                                    str(version.get("Arch", "") or "")) if x))
        if fields["engine_version"] and not services.engine_version:
            services.engine_version = fields["engine_version"]
    if images is not None:
        fields.update(images=len({i.id for i in images}), rows=_rows(images))
    if disk is not None:
        fields["disk"] = DiskSummary(total=len(disk.unique), active=disk.active, size=disk.layers_size,
                                     reclaimable=disk.reclaimable)
    return dataclasses.replace(summary, problems=tuple(problems), **fields)


async def summary(services: Services) -> Home:
    """The home screen: every host (one today; a map of engines later adds a
    summary per host, read at once). The same for everybody: what a person may
    see or run is decided by the front end's access check and by dispatch."""
    return Home(hosts=(await host_summary(services),))

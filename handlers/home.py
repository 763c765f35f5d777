"""The hosts at a glance: what a front end's home screen shows (Slack's Home tab).

:func:`summary` reads each host's engine (``version``, ``list_images``,
``disk_usage``: three calls, at once, each bounded), the pulls in flight
(``services.pulls``) and the tail of the (shared) audit log, and returns a
neutral :class:`Home` with a :class:`HostSummary` per host. Nothing here is
Slack: the Home tab is drawn from it by ``bot/render/home.py``.

One engine: its reads are bounded by :data:`CALL_TIMEOUT`. Many hosts
(``services.fleet``): every host is read at once, each bounded by its own
timeout (``Fleet.timeout``, the hosts file's ``timeout``), so a host that is
down or frozen costs at most its own timeout and is shown as unreachable,
named, with the reason; the others are shown as they are. Hosts come in the
settings' order.

A section that could not be read (the engine is down, slow, the audit log is
unreadable) is left empty and says why in ``problems``; the rest is shown.
The numbers are the Docker CLI's: images as ``docker images`` lists them (one
image, several tags: one image, several rows), disk usage and reclaimable
bytes as ``docker system df`` counts them for images.

The summary is the same for everybody; :func:`for_actor` makes one person's
Home from it with each host's own roles (roles can differ per host): a host
where they have no role is left out (named in ``hidden``), and so are the
audit records about it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time

from . import access
from .audit import COLUMNS as AUDIT_COLUMNS
from .audit import audit_rows
from .context import Actor, Services
from .errors import DockhandError
from .pullhub import PullInFlight
from .records import record

log = logging.getLogger("dockhand.home")

CALL_TIMEOUT = 5.0  # seconds one engine or audit read may take for the home screen (one engine)
AUDIT_RECORDS = 5  # the last records shown
AUDIT_READ = 50  # records read, so that the last AUDIT_RECORDS a person may see are among them
MAX_PULLS = 10  # pulls in flight listed at most, per host

# The common commands a home screen offers, as command lines a person could type:
# every click runs through dispatch, which authorises it like the typed command.
COMMON_COMMANDS = (
    ("Images", "docker images"),
    ("Dangling images", "docker images -f dangling=true"),
    ("Info", "docker info"),
    ("Audit log", "docker audit 20"),
)
PULL_FORM = "docker pull"  # the command the pull form builds (front ends draw it as a form)
HOST_COLUMN = AUDIT_COLUMNS.index("HOST")


@record
class DiskSummary:
    total: int  # images the engine counts (docker system df's TOTAL)
    active: int  # of them, used by a container (ACTIVE)
    size: int  # bytes of every image layer (SIZE)
    reclaimable: int  # bytes freed by removing every unused image (RECLAIMABLE)

    @property
    def reclaimable_percent(self) -> int:
        """As the CLI prints it: whole percent, rounded down (0 when nothing is stored)."""
        return self.reclaimable * 100 // self.size if self.size > 0 else 0


@record
class HostSummary:
    host: str  # the host's label (many hosts: its name in the settings)
    engine_version: str = ""
    api_version: str = ""
    os_arch: str = ""
    images: int | None = None  # distinct images `docker images` lists (None: unknown)
    rows: int | None = None  # rows `docker images` prints (a row per tag; dangling ones once)
    disk: DiskSummary | None = None
    pulls: tuple[PullInFlight, ...] = ()
    problems: tuple[str, ...] = ()  # what could not be read, in words a person can act on
    read_at: float = 0.0  # epoch seconds
    role: str = ""  # the person's role on this host (set by for_actor; "" before)

    @property
    def reachable(self) -> bool:
        return bool(self.engine_version) or self.images is not None


@record
class Home:
    """What a person's home screen shows: each host Dockhand manages, the
    audit log's tail, and the commands offered (``(label, command line)``)."""

    hosts: tuple[HostSummary, ...]
    commands: tuple[tuple[str, str], ...] = COMMON_COMMANDS
    pull_form: str = PULL_FORM
    audit_columns: tuple[str, ...] = AUDIT_COLUMNS
    audit: tuple[tuple[str, ...], ...] = ()  # the last records, oldest first (None-free, clipped)
    audit_hosts: tuple[tuple[str, ...], ...] = ()  # many hosts: the hosts each record of ``audit`` names
    audit_kept: bool = True  # False: this Dockhand keeps no audit log
    problems: tuple[str, ...] = ()  # what could not be read outside the hosts (the audit log)
    default: str = ""  # many hosts: the default host, where commands without @name go ("": one engine)
    hidden: tuple[str, ...] = ()  # hosts this person has no role on: not shown (set by for_actor)

    @property
    def many(self) -> bool:
        """Named hosts (a fleet), however many of them this person sees."""
        return bool(self.default) or len(self.hosts) > 1


async def _bounded(what: str, coro, problems: list[tuple[str, str]], timeout: float, who: str = "the engine"):
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        problems.append((what, f"{who} did not answer within {timeout:g} s."))
    except DockhandError as exc:
        first = (exc.message or "failed").splitlines()[0][:300]
        problems.append((what, first))
    return None


def _rows(images) -> int:
    """Rows `docker images` prints: one per repository:tag, an untagged image once."""
    return sum(max(1, len([t for t in i.repo_tags if t != "<none>:<none>"])) for i in images)


def _said(problems: list[tuple[str, str]], reads: int) -> tuple[str, ...]:
    """Problems as lines, one per reason: reads failing alike are said once
    (every read failing alike: the reason alone, as for a host that is down)."""
    by_reason: dict[str, list[str]] = {}
    for what, reason in problems:
        by_reason.setdefault(reason, []).append(what)
    if len(problems) == reads and len(by_reason) == 1:
        return (problems[0][1],)
    return tuple(f"{', '.join(whats)}: {reason}" for reason, whats in by_reason.items())


async def host_summary(services: Services, *, timeout: float | None = None, name: str = "",
                       clock=time.time) -> HostSummary:
    """One host's summary: the engine's three reads run at once, each within
    ``timeout`` seconds (default :data:`CALL_TIMEOUT`), so the whole takes
    at most that long. ``name``: the host's name, said in a timeout."""
    timeout = CALL_TIMEOUT if timeout is None else timeout
    engine = services.engine
    who = name or "the engine"
    problems: list[tuple[str, str]] = []
    version, images, disk = await asyncio.gather(
        _bounded("Engine version", engine.version(), problems, timeout, who),
        _bounded("Images", engine.list_images(), problems, timeout, who),
        _bounded("Disk usage", engine.disk_usage(), problems, timeout, who))
    summary = HostSummary(host=name or services.label, read_at=clock(),
                          pulls=tuple(services.pulls.active(services.label, limit=MAX_PULLS)))
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
    return dataclasses.replace(summary, problems=_said(problems, 3), **fields)


async def _guarded(name: str, services: Services, timeout: float, clock) -> HostSummary:
    """One host of many: never raises, never takes (much) more than ``timeout``."""
    try:
        # the reads are bounded by ``timeout`` each; the outer bound is a safety net
        return await asyncio.wait_for(host_summary(services, timeout=timeout, name=name, clock=clock), timeout + 1.0)
    except asyncio.TimeoutError:
        return HostSummary(host=name, read_at=clock(), problems=(f"{name} did not answer within {timeout:g} s.",))
    except Exception:  # noqa: BLE001 - one host's bug must not cost the others their section
        log.exception("reading %s for the home screen", name)
        return HostSummary(host=name, read_at=clock(), problems=("Internal error reading this host (logged).",))


def hosts_named(label: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The hosts an audit record's HOST names: a host, or several as a fan-out
    records them (``"pair (bravo, charlie)"``); () for none Dockhand knows."""
    if label in names:
        return (label,)
    m = re.fullmatch(r"[^()]* \(([^()]*)\)", label)
    if m:
        return tuple(n for n in (x.strip() for x in m.group(1).split(",")) if n in names)
    return ()


async def _audit(services: Services, names: tuple[str, ...], problems: list[str]) -> dict:
    if services.audit is None:
        return {"audit_kept": False}
    issues: list[tuple[str, str]] = []
    records = await _bounded("Audit log", services.audit.tail(AUDIT_READ if names else AUDIT_RECORDS), issues,
                             CALL_TIMEOUT, "the audit log") or []
    problems.extend(f"{what}: {reason}" for what, reason in issues)
    fields: dict = {"audit": audit_rows(records, clip=80)}
    if names:
        fields["audit_hosts"] = tuple(hosts_named(str(r.get("host", "")), names) if isinstance(r, dict) else ()
                                      for r in records)
    return fields


async def summary(services: Services, *, clock=time.time) -> Home:
    """The home screen: every host, read at once (each within its own
    timeout), and the audit log's tail. The same for everybody: what one
    person sees is :func:`for_actor`'s; what they may run is dispatch's."""
    problems: list[str] = []
    fleet = services.fleet
    if fleet is None:
        host, audit = await asyncio.gather(host_summary(services, clock=clock), _audit(services, (), problems))
        return Home(hosts=(host,), problems=tuple(problems), **audit)
    names = fleet.names
    *hosts, audit = await asyncio.gather(
        *(_guarded(n, fleet.services(n), fleet.timeout(n), clock) for n in names), _audit(services, names, problems))
    return Home(hosts=tuple(hosts), problems=tuple(problems), default=fleet.default, **audit)


def _policy(services: Services, name: str) -> access.Policy:
    fleet = services.fleet
    if fleet is not None and name in fleet.targets:
        return fleet.services(name).access()
    return services.access()


def roles_of(actor: Actor, services: Services) -> dict[str, access.Role]:
    """``actor``'s role on each host (one engine: its label), by that host's own policy."""
    if services.fleet is None:
        return {services.label: services.access().role_of(actor)}
    return {n: s.access().role_of(actor) for n, s in services.fleet.targets.items()}


def for_actor(home: Home, actor: Actor, services: Services) -> Home:
    """``home`` as ``actor`` may see it: only the hosts where they hold a role
    (each host's own roles), each with that role; the others named in
    ``hidden``; the audit records about hosts they may see (a record about
    several hosts: when they may see every one of them)."""
    if not home.many:
        role = services.access().role_of(actor)
        return dataclasses.replace(home, hosts=tuple(dataclasses.replace(h, role=role.label) for h in home.hosts))
    roles = {h.host: _policy(services, h.host).role_of(actor) for h in home.hosts}
    seen = {n for n, r in roles.items() if r >= access.Role.VIEWER}
    hosts = tuple(dataclasses.replace(h, role=roles[h.host].label) for h in home.hosts if h.host in seen)
    hidden = tuple(h.host for h in home.hosts if h.host not in seen)
    audit = list(zip(home.audit, home.audit_hosts or ((),) * len(home.audit)))
    kept = [(row, named) for row, named in audit if all(n in seen for n in named)]
    kept = kept[-AUDIT_RECORDS:]
    return dataclasses.replace(home, hosts=hosts, hidden=hidden, audit=tuple(r for r, _ in kept),
                               audit_hosts=tuple(n for _, n in kept))

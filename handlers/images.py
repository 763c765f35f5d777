"""``docker images`` / ``docker image ls`` and ``docker image prune``."""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from typing import TYPE_CHECKING

from . import refs
from .argv import DESTRUCTIVE, CommandSpec, Flag
from .base import Call, bool_filter, parse_filters
from .errors import UsageError
from .ports import ImageSummary
from .replies import Table
from .units import created_since, human_size, truncate_id

if TYPE_CHECKING:
    from . import plans

LIST_FILTERS = {
    "dangling": "true|false",
    "label": "key or key=value",
    "before": "image",
    "since": "image",
    "reference": "pattern",
}
PRUNE_FILTERS = {"until": "timestamp, date or duration", "label": "key or key=value", "label!": "key or key=value"}


def _split_ref(ref: str) -> tuple[str, str, str]:
    """``repo:tag`` or ``repo@digest`` as the CLI shows them: familiar repo, tag, digest."""
    name, at, digest = ref.partition("@")
    try:
        parsed = refs.parse_normalized(name)
    except UsageError:
        return "", "", ""
    return parsed.familiar_name, parsed.tag, digest if at else ""


def image_rows(images: list[ImageSummary], *, digests: bool, no_trunc: bool, now: float | None = None
               ) -> list[tuple[str, ...]]:
    """One row per repository:tag (and digest), exactly as docker/cli's image formatter."""
    return [row for row, _ in image_entries(images, digests=digests, no_trunc=no_trunc, now=now)]


def row_values(row: tuple[str, ...], img: ImageSummary) -> tuple[float | None, ...]:
    """The real values behind an image row's words: CREATED (epoch seconds)
    and SIZE (bytes) are the last two columns, with or without DIGEST."""
    return (None,) * (len(row) - 2) + (float(img.created), float(img.size))


def image_entries(images: list[ImageSummary], *, digests: bool, no_trunc: bool, now: float | None = None
                  ) -> list[tuple[tuple[str, ...], ImageSummary]]:
    """:func:`image_rows`, each row with the image it shows."""
    now = time.time() if now is None else now
    rows = []
    for img in images:
        ident = img.id if no_trunc else truncate_id(img.id)
        created = created_since(img.created, now)
        size = human_size(img.size)
        tags = [t for t in img.repo_tags if t != "<none>:<none>"]
        dgsts = [d for d in img.repo_digests if d != "<none>@<none>"]
        entries: list[tuple[str, str, str]] = []
        if not tags and not dgsts:
            entries.append(("<none>", "<none>", "<none>"))
        else:
            repo_tags: dict[str, list[str]] = {}
            repo_digests: dict[str, list[str]] = {}
            for t in tags:
                repo, tag, _ = _split_ref(t)
                if repo and tag:
                    repo_tags.setdefault(repo, []).append(tag)
            for d in dgsts:
                repo, _, dg = _split_ref(d)
                if repo and dg:
                    repo_digests.setdefault(repo, []).append(dg)
            for repo, tag_list in repo_tags.items():
                ds = repo_digests.pop(repo, [])  # a digest is never a row of its own here
                if not digests:
                    ds = []
                for tag in tag_list:
                    if not ds:
                        entries.append((repo, tag, "<none>"))
                    else:
                        entries.extend((repo, tag, dg) for dg in ds)
            for repo, ds in repo_digests.items():
                if digests:
                    entries.extend((repo, "<none>", dg) for dg in ds)
                else:
                    entries.append((repo, "<none>", ""))
        for repo, tag, dg in entries:
            if digests:
                rows.append(((repo, tag, dg, ident, created, size), img))
            else:
                rows.append(((repo, tag, ident, created, size), img))
    return rows


async def listed_rows(engine, parsed, *, values: list | None = None
                      ) -> tuple[list[ImageSummary], list[tuple[str, ...]], int]:
    """The images ``docker images`` with these options lists: (images, rows,
    index of the IMAGE ID column). Also what rmi's ``$(docker images -q)`` expands to.
    ``values``: a list that receives each row's real values (:func:`row_values`)."""
    o = parsed.opts
    filters = parse_filters(o["filter"], LIST_FILTERS, "docker images")
    bool_filter(filters, "dangling")
    for key in ("before", "since"):
        for value in filters.get(key, []):
            refs.parse_image_arg(value)  # refuse junk before it reaches the engine
    for pattern in filters.get("reference", []):
        _check_pattern(pattern)
    if parsed.args:
        _check_pattern(parsed.args[0])
        filters.setdefault("reference", []).append(parsed.args[0])
    images = await engine.list_images(all=o["all"], filters=filters)
    # -q shows full IDs only with --no-trunc; rmi gets exactly what the CLI would pass it
    entries = image_entries(images, digests=o["digests"], no_trunc=o["no_trunc"])
    if values is not None:
        values.extend(row_values(row, img) for row, img in entries)
    return images, [row for row, _ in entries], 3 if o["digests"] else 2


async def list_images(call: Call):
    o = call.opts
    values: list[tuple[float | None, ...]] = []
    images, rows, id_col = await listed_rows(call.engine, call.parsed, values=values)
    if o["quiet"]:
        # One ID per row, as docker/cli prints them: an image with several tags
        # shows its ID several times (checked against CLI 20.10 and 28.2).
        ids = tuple((row[id_col],) for row in rows)
        return call.reply(Table(("IMAGE ID",), ids, headerless=True), summary=f"{len(ids)} image ID(s)")
    columns = (("REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE") if o["digests"]
               else ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"))
    n = len(images)
    return call.reply(Table(columns, tuple(rows), values=tuple(values)),
                      summary=f"{n} image{'s' if n != 1 else ''}, {len(rows)} row{'s' if len(rows) != 1 else ''}")


_PATTERN_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@*?[]^!")


def _check_pattern(pattern: str) -> None:
    bad = sorted({c for c in pattern if c not in _PATTERN_OK})
    if not pattern or len(pattern) > 512 or bad:
        shown = "".join(bad)[:10]
        raise UsageError(f"invalid reference format: {pattern[:60]!r}" + (f" (unexpected {shown!r})" if bad else ""),
                         "Give a repository with an optional tag, e.g. `docker images ubuntu` or "
                         "`docker images 'ubuntu:1*'` (wildcards * and ? are allowed).")


def _prune_filters(parsed) -> dict[str, list[str]]:
    filters = parse_filters(parsed.opts["filter"], PRUNE_FILTERS, "docker image prune")
    for key in ("label", "label!"):
        for value in filters.get(key, []):
            if not value.partition("=")[0]:
                raise UsageError(f"invalid filter '{key}={value[:40]}'", "A label filter names a key: label=KEY or label=KEY=VALUE.")
    return filters


def validate_prune(parsed) -> None:
    """Refuse bad filters before the engine is asked anything (and before a
    front end announces the prune)."""
    from . import prunefilters  # loaded by the prune only: a one-shot command's start-up

    filters = _prune_filters(parsed)
    prunefilters.check_until(filters.get("until", []), time.time())


async def plan_prune(call: Call) -> plans.Plan:
    """What ``docker image prune`` would remove now, with the daemon's rules."""
    from . import plans, prunefilters

    filters = _prune_filters(call.parsed)
    until = None
    if filters.get("until"):
        # durations count back from the daemon's clock, dates without a zone
        # are in the daemon's zone: read both from the engine
        now, offset = daemon_clock(await call.engine.info())
        until = prunefilters.check_until(filters["until"], now, offset)
    model = await plans.read_model(call.engine)
    result = plans.plan_prune(model, all=call.opts["all"], until=until,
                              label_match=lambda labels: prunefilters.match_labels(filters, labels),
                              command=call.parsed.line)
    return dataclasses.replace(result, model=model)


def daemon_clock(info: dict) -> tuple[float, int]:
    """(now, UTC offset in seconds) of the engine, from ``docker info``'s
    SystemTime (RFC 3339 with nanoseconds); this host's clock if absent."""
    raw = str(info.get("SystemTime") or "")
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", raw)
    if not m:
        return time.time(), 0
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    moment = datetime.datetime.fromisoformat(m.group(1) + zone)
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    offset = int(moment.utcoffset().total_seconds())
    return moment.timestamp() + frac, offset


FILTER_FLAG = Flag("filter", "f", "list", "Filter output based on conditions provided", metavar="filter")

IMAGES_FLAGS = (
    Flag("all", "a", help="Show all images (default hides intermediate images)"),
    Flag("digests", help="Show digests"),
    FILTER_FLAG,
    Flag("format", kind="str", help="Format output using a custom template", metavar="string",
         unsupported="Dockhand prints the CLI's table; use -q for IDs only or --digests for digests."),
    Flag("no-trunc", help="Don't truncate output"),
    Flag("quiet", "q", help="Only show image IDs"),
)

_ALIASES = ("docker image ls", "docker image list", "docker images")
_EXAMPLES = ("docker images", "docker images -a", "docker images --digests",
             "docker images -f dangling=true", "docker images 'dockhand/*'")

SPECS = (
    CommandSpec(("images",), "images [OPTIONS] [REPOSITORY[:TAG]]", "List images", list_images,
                IMAGES_FLAGS, max_args=1, aliases=_ALIASES, examples=_EXAMPLES),
    CommandSpec(("image", "ls"), "ls [OPTIONS] [REPOSITORY[:TAG]]", "List images", list_images,
                IMAGES_FLAGS, max_args=1, aliases=_ALIASES, examples=_EXAMPLES),
    CommandSpec(("image", "list"), "list [OPTIONS] [REPOSITORY[:TAG]]", "List images", list_images,
                IMAGES_FLAGS, max_args=1, aliases=_ALIASES, examples=_EXAMPLES),
    CommandSpec(("image", "prune"), "prune [OPTIONS]", "Remove unused images", None,
                (Flag("all", "a", help="Remove all unused images, not just dangling ones"),
                 Flag("filter", kind="list", help="Provide filter values (e.g. \"until=<timestamp>\")", metavar="filter"),
                 Flag("force", "f", help="Do not prompt for confirmation (Dockhand always asks in chat; "
                                         "in the shell, use dockhand shell --yes)")),
                max_args=0, effect=DESTRUCTIVE, planner=plan_prune, validate=validate_prune,
                examples=("docker image prune", "docker image prune -a --filter until=24h",
                          "docker image prune --filter label!=keep")),
)

"""``docker images`` / ``docker image ls`` and ``docker image prune``."""

from __future__ import annotations

import time

from . import refs
from .argv import CommandSpec, Flag
from .base import Call, bool_filter, parse_filters
from .errors import UsageError
from .ports import ImageSummary
from .replies import Notice, Preformatted, Status, Table
from .units import created_since, human_size, truncate_id

LIST_FILTERS = {
    "dangling": "true|false",
    "label": "key or key=value",
    "before": "image",
    "since": "image",
    "reference": "pattern",
}
PRUNE_FILTERS = {"until": "timestamp", "label": "key or key=value"}


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
                rows.append((repo, tag, dg, ident, created, size))
            else:
                rows.append((repo, tag, ident, created, size))
    return rows


async def list_images(call: Call):
    o = call.opts
    filters = parse_filters(o["filter"], LIST_FILTERS, "docker images")
    bool_filter(filters, "dangling")
    for key in ("before", "since"):
        for value in filters.get(key, []):
            refs.parse_image_arg(value)  # refuse junk before it reaches the engine
    for pattern in filters.get("reference", []):
        _check_pattern(pattern)
    if call.args:
        _check_pattern(call.args[0])
        filters.setdefault("reference", []).append(call.args[0])
    images = await call.engine.list_images(all=o["all"], filters=filters)
    rows = image_rows(images, digests=o["digests"], no_trunc=o["no_trunc"])
    if o["quiet"]:
        # One ID per row, as docker/cli prints them: an image with several tags
        # shows its ID several times (checked against CLI 20.10 and 28.2).
        id_col = 3 if o["digests"] else 2
        ids = tuple((row[id_col],) for row in rows)
        return call.reply(Table(("IMAGE ID",), ids, headerless=True), summary=f"{len(ids)} image ID(s)")
    columns = (("REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE") if o["digests"]
               else ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"))
    n = len(images)
    return call.reply(Table(columns, tuple(rows)),
                      summary=f"{n} image{'s' if n != 1 else ''}, {len(rows)} row{'s' if len(rows) != 1 else ''}")


_PATTERN_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@*?[]^!")


def _check_pattern(pattern: str) -> None:
    bad = sorted({c for c in pattern if c not in _PATTERN_OK})
    if not pattern or len(pattern) > 512 or bad:
        shown = "".join(bad)[:10]
        raise UsageError(f"invalid reference format: {pattern[:60]!r}" + (f" (unexpected {shown!r})" if bad else ""),
                         "Give a repository with an optional tag, e.g. `docker images ubuntu` or "
                         "`docker images 'ubuntu:1*'` (wildcards * and ? are allowed).")


async def prune_images(call: Call):
    """Show what ``docker image prune`` would remove; removal comes with confirmations."""
    o = call.opts
    filters = parse_filters(o["filter"], PRUNE_FILTERS, "docker image prune")
    list_filters = {k: v for k, v in filters.items() if k == "label"}
    if o["all"]:
        images = await call.engine.list_images(all=False, filters=list_filters)
        in_use = await call.engine.images_in_use()
        candidates = [img for img in images if img.id not in in_use]
    else:
        candidates = await call.engine.list_images(all=False, filters={**list_filters, "dangling": ["true"]})
    if filters.get("until"):
        candidates = _until(candidates, filters["until"])
    rows = image_rows(candidates, digests=False, no_trunc=False)
    total = sum(img.size for img in candidates)
    what = "unused" if o["all"] else "dangling"
    parts = []
    if rows:
        parts.append(Table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"), tuple(rows)))
        parts.append(Notice(f"{len(candidates)} {what} image(s) would be removed, up to {human_size(total)} reclaimed."))
    else:
        parts.append(Preformatted("Total reclaimed space: 0B"))
        parts.append(Notice(f"No {what} images: there is nothing to prune."))
        return call.reply(*parts, summary=f"no {what} images")
    parts.append(Notice("Pruning is not enabled in Dockhand yet: nothing was removed. "
                        "It arrives with confirmations, roles and the audit trail."))
    return call.reply(*parts, status=Status.FAILED, summary=f"prune not enabled: {len(candidates)} {what} image(s) found")


def _until(images: list[ImageSummary], values: list[str]) -> list[ImageSummary]:
    import re

    cutoff = None
    for v in values:
        m = re.fullmatch(r"(\d+)(s|m|h)", v.strip())
        if m:
            secs = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
            cutoff = time.time() - secs
        elif v.isdigit():
            cutoff = int(v)
        else:
            raise UsageError(f"invalid filter 'until={v[:40]}'", "until takes a duration such as 24h or a Unix timestamp.")
    return [img for img in images if cutoff is None or img.created < cutoff]


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
    CommandSpec(("image", "prune"), "prune [OPTIONS]", "Remove unused images", prune_images,
                (Flag("all", "a", help="Remove all unused images, not just dangling ones"),
                 Flag("filter", kind="list", help="Provide filter values (e.g. \"until=<timestamp>\")", metavar="filter"),
                 Flag("force", "f", help="Do not prompt for confirmation")),
                max_args=0, read_only=False),
)

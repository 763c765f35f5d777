"""``docker search``: the registry index, in the CLI's columns."""

from __future__ import annotations

import asyncio

from . import refs
from .argv import CommandSpec, Flag
from .base import Call, bool_filter, parse_filters
from .errors import (DockhandError, EngineError, EngineTimeout, EngineUnreachable, InvalidArgument,
                     RegistryUnauthorized, RegistryUnreachable, UsageError)
from .replies import Action, Notice, Table
from .units import ellipsis

SEARCH_FILTERS = {"is-official": "true|false", "stars": "minimum stars", "is-automated": "true|false (deprecated)"}
MAX_TERM = 255
_TERM_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/: ")


def check_term(term: str) -> str:
    term = term.strip()
    bad = sorted({c for c in term if c not in _TERM_OK})
    if not term or len(term) > MAX_TERM or bad:
        why = "empty" if not term else (f"too long ({len(term)} characters, at most {MAX_TERM})"
                                         if len(term) > MAX_TERM else f"unexpected {''.join(bad)[:10]!r}")
        raise UsageError(f"invalid search term: {why}",
                         "Search for a name such as `docker search ubuntu` "
                         "(letters, digits, '.', '_', '-', '/' and a registry prefix like myregistry:5000/).")
    return term


async def search(call: Call):
    o = call.opts
    filters = parse_filters(o["filter"], SEARCH_FILTERS, "docker search")
    bool_filter(filters, "is-official")
    bool_filter(filters, "is-automated")
    for value in filters.get("stars", []):
        if not (value.isascii() and value.isdigit()):  # "²" is a digit to Python, not to the engine
            raise UsageError(f"invalid filter 'stars={value[:40]}'", "stars takes a whole number: --filter stars=3")
    limit = o["limit"]
    if not 1 <= limit <= 100:
        raise UsageError(f'invalid argument "{limit}" for "--limit" flag: the limit must be between 1 and 100',
                         "See 'docker search --help'.")
    term = check_term(call.args[0])
    index = call.services.search_index
    if index and not _names_registry(term):
        term = f"{index}/{term}"
    try:
        results = await call.engine.search(term, limit=limit, filters=filters, owner=call.actor.id)
    except EngineError as exc:
        if call.services.catalog is None or not _names_registry(term) or not _no_search_endpoint(exc):
            raise
        return await _from_catalog(call, term, limit=limit, filters=filters)
    results = sorted(results, key=lambda r: -r.star_count)
    rows, values = [], []
    pulls = []
    registry = term.split("/", 1)[0] if _names_registry(term) else ""  # the index the results come from
    for r in results:
        ref = _pull_reference(registry, r.name)
        if ref:
            pulls.append(Action(r.name, f"docker pull {ref}", group="Pull an image…"))
        desc = r.description.replace("\n", " ").replace("\r", " ")
        if not o["no_trunc"]:
            desc = ellipsis(desc, 45)
        rows.append((r.name, desc, str(r.star_count), "[OK]" if r.is_official else ""))
        values.append((None, None, float(r.star_count), None))
    return call.reply(Table(("NAME", "DESCRIPTION", "STARS", "OFFICIAL"), tuple(rows), values=tuple(values)),
                      summary=f"{len(rows)} result{'s' if len(rows) != 1 else ''} for {call.args[0]!r}",
                      actions=pulls)


# The fallback for a registry without a v1 search endpoint (distribution's
# registry): its v2 catalog, filtered by the term, with each match's tags.
CATALOG_LIMIT = 1000  # repositories listed at most
TAGS_SHOWN = 50  # tags asked for per repository
TAG_CALLS = 8  # tag lists asked for at once


def _no_search_endpoint(exc: EngineError) -> bool:
    """Did the engine fail because the registry has no ``/v1/search``? (It
    says "Unexpected status code 404".) Not for an engine or registry that
    could not be reached, a timeout, or a bad parameter."""
    if isinstance(exc, (EngineUnreachable, EngineTimeout, InvalidArgument, RegistryUnreachable)):
        return False
    text = exc.message.lower()
    return "404" in text or "not found" in text


async def _from_catalog(call: Call, term: str, *, limit: int, filters) -> object:
    o = call.opts
    registry, _, part = term.partition("/")
    registry = registry.lower()
    notice = Notice(f"{registry} has no search endpoint, so Dockhand listed its catalog instead "
                    f"(repositories whose name contains {part!r}, with their tags).")
    header = ("NAME", "DESCRIPTION", "STARS", "OFFICIAL")
    summary_none = f"0 results for {call.args[0]!r}"
    nothing = ""
    if any(v.lower() == "true" for v in filters.get("is-official", [])):
        nothing = "A registry's catalog has no official images: is-official=true matches none of its repositories."
    elif any(v.lower() == "true" for v in filters.get("is-automated", [])):
        nothing = "A registry's catalog has no automated builds: is-automated=true matches none of its repositories."
    elif any(int(v) > 0 for v in filters.get("stars", [])):
        nothing = "A registry's catalog has no stars (every repository has 0): stars>0 matches none of them."
    if nothing:
        return call.reply(Table(header, ()), notice, Notice(nothing), summary=summary_none)
    catalog = call.services.catalog
    try:
        names = await catalog.catalog(registry, limit=CATALOG_LIMIT, owner=call.actor.id)
    except (RegistryUnauthorized, RegistryUnreachable, EngineError) as exc:
        if type(exc) not in (RegistryUnauthorized, RegistryUnreachable, EngineError):
            raise
        raise type(exc)(f"{registry} has no search endpoint, and its catalog could not be listed: {exc.message}",
                        exc.hint or None) from None
    needle = part.lower()
    matches = [n for n in names if needle in n.lower()][:limit]
    gate = asyncio.Semaphore(TAG_CALLS)

    async def tags_of(name: str) -> str:
        async with gate:
            try:
                tags = await catalog.tags(registry, name, limit=TAGS_SHOWN, owner=call.actor.id)
            except DockhandError:
                return "tags: (could not be listed)"
        return "tags: " + (", ".join(sorted(tags)) if tags else "(none)")

    descriptions = await asyncio.gather(*(tags_of(n) for n in matches))
    rows, pulls = [], []
    for name, desc in zip(matches, descriptions):
        full = f"{registry}/{name}"
        ref = _pull_reference("", full)
        if ref:
            pulls.append(Action(full, f"docker pull {ref}", group="Pull an image…"))
        rows.append((full, desc if o["no_trunc"] else ellipsis(desc, 45), "0", ""))
    parts = [Table(header, tuple(rows)), notice]
    if len(names) >= CATALOG_LIMIT:
        parts.append(Notice(f"Only the first {CATALOG_LIMIT} repositories of the catalog were looked at."))
    return call.reply(*parts, summary=f"{len(rows)} result{'s' if len(rows) != 1 else ''} for {call.args[0]!r}",
                      actions=pulls)


def _names_registry(term: str) -> bool:
    first = term.split("/", 1)[0]
    return "/" in term and ("." in first or ":" in first or first == "localhost")


def _pull_reference(registry: str, name: str) -> str:
    """What pulling a search result means: the name on the registry the index
    belongs to (Docker Hub's when none is named); "" for a name that is no
    valid reference (an index's answer is data, never trusted)."""
    try:
        ref = refs.parse_normalized(f"{registry}/{name}" if registry else name)
    except DockhandError:
        return ""
    if ref.tag or ref.digest:
        return ""
    return ref.familiar()


SPECS = (
    CommandSpec(("search",), "search [OPTIONS] TERM", "Search Docker Hub for images", search,
                (Flag("filter", "f", "list", "Filter output based on conditions provided", metavar="filter"),
                 Flag("format", kind="str", help="Pretty-print search using a Go template", metavar="string",
                      unsupported="Dockhand prints the CLI's table; use --no-trunc for full descriptions."),
                 Flag("limit", kind="int", help="Max number of search results", default=25),
                 Flag("no-trunc", help="Don't truncate output")),
                min_args=1, max_args=1,
                examples=("docker search ubuntu", 'docker search --filter "is-official=true" ubuntu',
                          "docker search --filter stars=3 --limit 10 busybox")),
)

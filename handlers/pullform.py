"""The pull form: suggestions while a person fills it, and the command line it stands for.

A front end may offer ``docker pull`` as a form (Slack: ``/pull`` alone opens
a modal) with four fields: registry, repository, tag and platform. This
module is the neutral part of it:

* suggestions for each field as the person types (:func:`registries`,
  :func:`repositories`, :func:`tags`): from the registry index's search (the
  engine's ``docker search``), or the registry's own v2 catalog and tag lists
  when it has no search endpoint (as ``docker search`` falls back in
  ``handlers/search.py``). Each lookup is bounded (``timeout``, at most
  :data:`MAX_CHOICES` choices) and what an index or registry sends is data:
  only names and tags that follow the distribution grammar are offered;
* :func:`pull_line`: the ``docker pull [@HOST] [--platform P] REF`` line a
  typed ``/pull`` would be, built from the fields after checking each against
  the grammar, so that no field can add a flag or an argument; errors come per
  field, in the words the typed command would get. The line is then run
  like a typed one (dispatch: parse, authorise, pull, audit).

Many hosts (``handlers/fleet.py``): the form gets a fifth field, the host.
:func:`host_choices` lists the hosts and groups this person may pull on (each
host's own roles decide; a group or ``all`` only when every host of it
allows) and which one starts chosen (the conversation's default host, else
the fleet's default); :func:`suggestions_from` is the host whose engine the
suggestions come from (its images, its registry security, its lane); the
submitted line names the host as a typed one would (``@name``).
"""

from __future__ import annotations

import asyncio
import re

from . import refs
from .argv import quote_line
from .context import Actor, Services
from .errors import DockhandError, EngineError, UsageError
from .fleet import ALL
from .records import record

MAX_CHOICES = 50  # suggestions offered at most (Slack takes 100)
SEARCH_LIMIT = 25  # results asked of an index
CATALOG_LIMIT = 1000  # repositories read from a registry's catalog
TAG_LIMIT = 200  # tags read from a registry's tag list
DEFAULT_TIMEOUT = 2.0  # seconds a lookup may take (Slack waits 3 s for suggestions)
HUB = "docker.io"

FIELDS = ("registry", "repository", "tag", "platform")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?")
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a fleet's host or group name (bot/hosts_config.py)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


@record
class Choice:
    label: str  # what the person sees
    value: str  # what the form sends back (checked again on submission)
    description: str = ""  # data from an index (a description), shown as plain text


@record
class Choices:
    choices: tuple[Choice, ...]
    note: str = ""  # why the list may be short (a slow or failing registry)


def clean(text: str, limit: int = 200) -> str:
    """Outside text as one plain line: no control or direction characters, bounded."""
    return _CONTROL.sub(" ", str(text or "")).replace("\n", " ").strip()[:limit]


def is_registry(text: str) -> bool:
    """``host[:port]`` the way a reference names a registry (a dot, a port or localhost)."""
    if not _HOST.fullmatch(text or ""):
        return False
    return refs._looks_like_domain(text.split("/", 1)[0]) and text == text.strip()


def default_registry(services: Services) -> str:
    """The registry the form starts with: the configured index's, or Docker Hub."""
    return services.search_index or HUB


def _reference(registry: str, repository: str) -> refs.Reference | None:
    try:
        ref = refs.parse_normalized(repository if registry == HUB else f"{registry}/{repository}")
    except DockhandError:
        return None
    return ref if ref.is_name_only else None


def _rank(values: list[str], query: str) -> list[str]:
    """Those containing ``query`` (all when empty): exact, then prefix, then the rest; once each."""
    q = query.lower()
    seen, out = set(), []
    for v in values:
        if v not in seen and q in v.lower():
            seen.add(v)
            out.append(v)
    return sorted(out, key=lambda v: (v.lower() != q, not v.lower().startswith(q)))


async def _timed(coro, timeout: float):
    return await asyncio.wait_for(coro, timeout)


async def registries(services: Services, query: str, *, known: tuple[str, ...] = (),
                     timeout: float = DEFAULT_TIMEOUT) -> Choices:
    """Registries to pull from: the index's, the ones with settings, the ones
    this host already pulled from; the typed text when it names a registry."""
    query = clean(query, 255)
    pool = [default_registry(services), HUB, *known]
    note = ""
    try:
        images = await _timed(services.engine.list_images(), timeout)
        for image in images:
            for tag in image.repo_tags:
                try:
                    pool.append(refs.parse_normalized(tag).domain)
                except DockhandError:
                    continue
    except asyncio.TimeoutError:
        note = "The engine was slow: only the configured registries are listed."
    except DockhandError:
        note = "The engine did not answer: only the configured registries are listed."
    found = [r for r in _rank([p for p in pool if is_registry(p)], query)]
    if query and is_registry(query) and query not in found:
        found.insert(0, query)
    return Choices(tuple(Choice(r, r, "Docker Hub" if r == HUB else "") for r in found[:MAX_CHOICES]), note)


async def repositories(services: Services, actor: Actor, registry: str, query: str, *,
                       no_search: set[str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Choices:
    """Repositories on ``registry`` whose name contains ``query``: its index's
    search, else its catalog. ``no_search`` remembers registries seen without
    a search endpoint (the caller keeps it), so they go to the catalog at once."""
    from .search import _no_search_endpoint, check_term

    query = clean(query, 255)
    if not is_registry(registry):
        return Choices((), "Choose a registry first.")
    names: list[tuple[str, str]] = []  # (name, description)
    note = ""
    try:
        term = check_term(query) if query else ""
    except UsageError:
        return Choices((), "Not a repository name: letters, digits, '.', '_', '-' and '/'.")
    try:
        if term and registry not in (no_search or set()):
            try:
                results = await _timed(services.engine.search(term if registry == HUB else f"{registry}/{term}",
                                                              limit=SEARCH_LIMIT, owner=actor.id), timeout)
                names = [(r.name, r.description) for r in sorted(results, key=lambda r: -r.star_count)]
            except EngineError as exc:
                if services.catalog is None or registry == HUB or not _no_search_endpoint(exc):
                    raise
                if no_search is not None:
                    no_search.add(registry)
        if not names and registry != HUB and services.catalog is not None \
                and (registry in (no_search or set()) or not term):
            listed = await _timed(services.catalog.catalog(registry, limit=CATALOG_LIMIT), timeout)
            names = [(n, "") for n in _rank(list(listed), query)]
    except asyncio.TimeoutError:
        note = f"{registry} did not answer within {timeout:.0f}s: type the repository's full name."
    except DockhandError as exc:
        note = f"{registry}: {clean((exc.message or 'failed').splitlines()[0], 150)}"
    out: list[Choice] = []
    for name, description in names:
        name = clean(name, 300)
        if name.startswith(registry + "/"):
            name = name[len(registry) + 1:]
        if _reference(registry, name) is None or any(c.value == name for c in out):
            continue  # an index's answer is data: only valid names are offered
        out.append(Choice(name, name, clean(description, 200)))
        if len(out) >= MAX_CHOICES:
            break
    if query and _reference(registry, query) is not None and not any(c.value == query for c in out):
        out.insert(0, Choice(query, query, "as typed"))
    return Choices(tuple(out[:MAX_CHOICES]), note)


async def tags(services: Services, registry: str, repository: str, query: str, *,
               timeout: float = DEFAULT_TIMEOUT) -> Choices:
    """Tags of ``registry/repository`` containing ``query``, from the registry's tag list."""
    query = clean(query, 128)
    found: list[str] = []
    listed: set[str] = set()
    note = ""
    ref = _reference(registry, repository) if is_registry(registry) else None
    if ref is None:
        note = "Choose a repository first."
    elif services.catalog is None:
        note = "Tags cannot be listed here: type one."
    else:
        try:
            tag_list = await _timed(services.catalog.tags(ref.domain, ref.path, limit=TAG_LIMIT), timeout)
            found = [t for t in _rank([str(t) for t in tag_list], query) if refs._tag_problem(t) is None]
            listed = set(found)
        except asyncio.TimeoutError:
            note = f"{registry} did not answer within {timeout:.0f}s: type the tag."
        except DockhandError as exc:
            note = f"{registry}: {clean((exc.message or 'failed').splitlines()[0], 150)}"
    if "latest" in found:
        found.remove("latest")
        found.insert(0, "latest")
    if query and refs._tag_problem(query) is None and query not in found:
        found.insert(0, query)
    return Choices(tuple(Choice(t, t, "" if t in listed else "as typed") for t in found[:MAX_CHOICES]), note)


def may_pull(services: Services, actor: Actor, *, any_channel: bool = False):
    """The access policy's refusal of a pull on this host for ``actor`` (None:
    allowed), as dispatch decides it for a typed ``docker pull``.
    ``any_channel``: the role alone (a suggestion, which names no channel)."""
    import dataclasses

    from . import access
    from .dispatch import parse_command

    command = parse_command("docker pull busybox")
    policy = services.access()
    if any_channel:
        policy = dataclasses.replace(policy, channels=frozenset())
    return access.authorise(policy, actor, command.effect, command.path, command.role)


@record
class HostChoices:
    choices: tuple[Choice, ...]  # hosts, then groups, then "all": those the person may pull on
    initial: str = ""  # the one chosen when the form opens ("" when there is none)


def host_choices(services: Services, actor: Actor, channel: str = "", channel_name: str = "", *,
                 any_channel: bool = False) -> HostChoices:
    """The hosts and groups ``actor`` may pull on, in the settings' order, and
    the one the form starts on: the conversation's default host (or group),
    else the fleet's default, else the first allowed. Empty with one engine.
    ``any_channel``: by the roles alone (see :func:`may_pull`)."""
    hosts = services.fleet
    if hosts is None:
        return HostChoices(())
    allowed = {n for n in hosts.names if may_pull(hosts.services(n), actor, any_channel=any_channel) is None}
    default = hosts.default
    here = hosts.channel_default(channel, channel_name)
    out: list[Choice] = []
    for name in hosts.names:
        if name in allowed:
            what = "this conversation's host" if name == here else ("the default host" if name == default else "")
            out.append(Choice(name, name, what))
    for group, members in hosts.groups.items():
        if members and all(m in allowed for m in members):
            out.append(Choice(group, group, clean("group: " + ", ".join(members), 200)))
    if len(hosts.names) > 1 and all(n in allowed for n in hosts.names):
        out.append(Choice(ALL, ALL, "every host"))
    values = [c.value for c in out]
    initial = next((v for v in (here, default) if v and v in values), values[0] if values else "")
    return HostChoices(tuple(out), initial)


def suggestions_from(services: Services, target: str) -> Services | None:
    """The host whose engine suggests registries, repositories and tags for
    ``target``: the host itself; for a group, its first host; for ``all``,
    the default. None for a name the fleet does not know."""
    hosts = services.fleet
    if hosts is None:
        return services if not target or target == services.label else None
    if target in hosts.targets:
        return hosts.services(target)
    if target in hosts.groups and hosts.groups[target]:
        return hosts.services(hosts.groups[target][0])
    if target == ALL:
        return hosts.services(hosts.default)
    return None


def pull_line(registry: str, repository: str, tag: str = "", platform: str = "",
              host: str = "") -> tuple[str, dict[str, str]]:
    """The command line the form stands for, or the errors per field.

    Each field is checked on its own (so the error lands on the right one, in
    the typed command's words); then the whole line is parsed back by the one
    public parse and must be exactly ``pull [--platform P] REF``.
    """
    from .dispatch import parse_command

    registry, repository, tag, platform, host = (str(x or "").strip()
                                                 for x in (registry, repository, tag, platform, host))
    errors: dict[str, str] = {}

    def words_of(exc: DockhandError) -> str:
        return f"{exc.message} {exc.hint}".strip() if exc.hint else exc.message

    if platform:
        try:
            parse_command(quote_line(["docker", "pull", "--platform", platform, "busybox"]))
        except DockhandError as exc:
            errors["platform"] = words_of(exc)
    if tag:
        try:
            refs.validate_tag(tag)
        except DockhandError as exc:
            errors["tag"] = words_of(exc)
    if not registry:
        errors["registry"] = "Choose a registry (docker.io for Docker Hub)."
    elif not is_registry(registry):
        errors["registry"] = (f"{refs.quote_input(registry, 80)} is not a registry address: "
                              "use HOST[:PORT], e.g. registry.example.com:5000, or docker.io.")
    if not repository:
        errors["repository"] = "Choose or type a repository, e.g. library/ubuntu or team/app."
    if host and not _HOST_NAME.fullmatch(host):
        errors["host"] = f"{refs.quote_input(host, 80)} is not a host name: choose one of the list."
    if errors:
        return "", errors
    name = repository if registry == HUB else f"{registry}/{repository}"
    reference = f"{name}:{tag}" if tag else name
    try:
        ref = refs.parse_normalized(reference)
    except DockhandError as exc:
        return "", {"tag" if tag and "tag" in exc.message else "repository": words_of(exc)}
    if ref.domain != (HUB if registry == HUB else registry) or reference.startswith("-"):
        # "docker.io" + "other.registry:5000/x" would pull from another registry than the one chosen
        return "", {"repository": f"{refs.quote_input(repository, 80)} names another registry than "
                                  f"{refs.quote_input(registry, 80)}: give the repository's path on the chosen one."}
    words = ["docker", "pull"] + (["@" + host] if host else []) + (["--platform", platform] if platform else []) \
        + [reference]
    line = quote_line(words)
    try:
        command = parse_command(line)
    except DockhandError as exc:
        field = "registry" if "port" in exc.message and "registry" in exc.message else "repository"
        return "", {field: words_of(exc)}
    parsed = command.parsed
    if parsed is None or parsed.spec.path not in (("pull",), ("image", "pull")) or parsed.args != [reference] \
            or (parsed.opts.get("platform") or "") != platform or parsed.opts.get("all_tags") \
            or parsed.opts.get("quiet") or parsed.help:
        return "", {"repository": "This is not one image reference: check the repository and tag."}
    if (command.target or "") != host:
        return "", {"host": f"{refs.quote_input(host, 80)} is not a host name: choose one of the list."}
    return line, {}

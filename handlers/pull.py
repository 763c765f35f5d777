"""``docker pull``: fetch an image, report progress, end with the CLI's lines."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time


from . import refs
from .argv import WRITE, CommandSpec, Flag
from .base import Call
from .errors import EngineError, InvalidArgument, InvalidReference, UsageError
from .records import record
from .replies import LAYER_DOWNLOADED, ErrorPart, LayerProgress, Preformatted, Progress, Status

EMIT_INTERVAL = 1.0  # seconds between interim progress replies (Slack: ~1 chat.update/s)


MAX_TAGS = 100  # `pull -a` pulls at most this many tags in one confirmation


@record
class TagsPlan:
    """What ``docker pull -a NAME`` will pull: every tag the registry lists.

    A pull of all tags can be huge, so it is planned and confirmed like a
    removal (handlers/operations.py); confirming lists the tags again and
    pulls only when they are the ones shown."""

    command: str
    repository: str  # full name, e.g. 127.0.0.1:5000/team/app
    shown: str  # familiar name
    tags: tuple[str, ...]
    kind: str = "pull-all"

    def fingerprint(self) -> str:
        body = json.dumps([self.repository, sorted(self.tags)])
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def to_json(self) -> dict:
        return {"kind": self.kind, "repository": self.repository, "tags": list(self.tags)}

    def headline(self) -> str:
        n = len(self.tags)
        return f"This will pull {n} tag{'s' if n != 1 else ''} of {self.shown}."


async def plan_all_tags(call: Call) -> TagsPlan:
    """The tags of the repository, from the registry's own tag list (with its credentials)."""
    ref = refs.parse_normalized(call.args[0])
    catalog = call.services.catalog
    if catalog is None:
        raise EngineError("Dockhand cannot list a registry's tags here.", "Pull tags one at a time: `docker pull NAME:TAG`.")
    tags = await catalog.tags(ref.domain, ref.path, limit=MAX_TAGS + 1, owner=call.actor.id)
    if len(tags) > MAX_TAGS:
        raise UsageError(f"{ref.familiar_name} has more than {MAX_TAGS} tags: too many to pull at once",
                         "Pull the tags you need one at a time: `docker pull NAME:TAG`.")
    if not tags:
        raise EngineError(f"{ref.familiar_name} has no tags on its registry", "Check the name with `docker search`.")
    return TagsPlan(call.parsed.line, ref.name, ref.familiar_name, tuple(tags))


async def pull_tags(call: Call, plan: TagsPlan) -> tuple[list[str], list[tuple[str, str]]]:
    """Pull every tag of the plan, one after another (each through the shared
    pulls, so a tag someone else is pulling is not fetched twice).
    (lines for the reply, [(tag, error)])."""
    lines: list[str] = []
    errors: list[tuple[str, str]] = []
    for n, tag in enumerate(plan.tags, 1):
        ref = refs.parse_normalized(f"{plan.repository}:{tag}")
        if call.emit is not None:
            await call.emit(call.reply(Progress(f"Pulling {plan.shown}: tag {n} of {len(plan.tags)}", (),
                                                f"{tag}")))
        try:
            outcome = await _stream(dataclasses.replace(call, emit=None), ref, tag, [])
        except EngineError as exc:
            errors.append((tag, exc.message))
            lines.append(f"{tag}: {exc.message.splitlines()[0] if exc.message else 'failed'}")
            continue
        lines.append(f"{tag}: {outcome.summary}")
    return lines, errors


async def pull(call: Call):
    if call.opts.get("all_tags"):  # planned and confirmed: handlers/operations.py, through dispatch
        raise UsageError("docker pull --all-tags needs a confirmation", "Run it through Dockhand's dispatch.")
    ref = refs.parse_normalized(call.args[0])
    lines: list[str] = []
    if not ref.tag and not ref.digest:
        ref = ref.with_default_tag()
        lines.append("Using default tag: latest")
    tag = ref.digest or ref.tag
    try:
        return await _stream(call, ref, tag, lines)
    except EngineError as exc:
        # as the CLI: what it understood first ("Using default tag: latest"), then the error
        parts = ((Preformatted("\n".join(lines)),) if lines else ()) + (ErrorPart(exc.message, exc.hint),)
        return call.reply(*parts, status=Status.FAILED, summary=exc.message.splitlines()[0] if exc.message else "failed")


def _layer(before: LayerProgress | None, ev) -> LayerProgress:
    """A layer's new state from an engine event, keeping what the transfer
    has done: its download size (the ``Downloading`` total) and the bytes
    received, all of them once the download is over."""
    size = before.size if before else 0
    downloaded = before.downloaded if before else 0
    if ev.status == "Downloading" and ev.total:
        size = max(size, ev.total)
        downloaded = max(downloaded, min(ev.current, ev.total))
    elif ev.status in LAYER_DOWNLOADED and ev.status != "Already exists":
        downloaded = size
    return LayerProgress(ev.id, ev.status, ev.current, ev.total, size=size, downloaded=downloaded)


async def _stream(call: Call, ref: refs.Reference, tag: str, lines: list[str]):
    layers: dict[str, LayerProgress] = {}
    statuses: list[str] = []
    title = f"Pulling {ref.familiar()}"
    last_emit = 0.0
    started = time.monotonic()
    stream_error = ""
    # one engine pull per image per host: a request for a pull already running joins it
    platform = call.opts.get("platform") or ""
    async for ev in call.services.pulls.stream(call.engine, call.services.label, ref.name, tag,
                                               owner=call.actor.id, platform=platform):
        if ev.error:
            # Keep reading: the adapter raises its typed error (with a hint) on
            # the next step. Breaking here would close the stream and lose it.
            stream_error = ev.error
            continue
        if ev.id and not ev.status.startswith("Pulling from "):
            layers[ev.id] = _layer(layers.get(ev.id), ev)
        elif ev.status:
            statuses.append(f"{ev.id}: {ev.status}" if ev.id else ev.status)
        if call.emit and time.monotonic() - last_emit >= EMIT_INTERVAL:
            last_emit = time.monotonic()
            await call.emit(call.reply(Progress(title, tuple(layers.values()), statuses[-1] if statuses else "",
                                                elapsed=time.monotonic() - started)))
    if stream_error:  # an engine that reported the error but raised nothing
        raise EngineError(stream_error)
    final = str(ref)
    if call.opts["quiet"]:
        text = final
    else:
        header = [s for s in statuses if ": Pulling from " in s]
        rest = [s for s in statuses if ": Pulling from " not in s]
        text = "\n".join(lines + header + [f"{lp.id}: {lp.status}" for lp in layers.values()] + rest + [final])
    outcome = next((s for s in reversed(statuses) if s.startswith("Status: ")), "Status: pulled")
    reply = call.reply(Preformatted(text), summary=outcome.removeprefix("Status: "))
    # for the audit record: what exactly arrived
    reply.meta["reference"] = final
    reply.meta["digest"] = next((s.removeprefix("Digest: ") for s in statuses if s.startswith("Digest: ")), "")
    try:
        reply.meta["image_id"] = (await call.engine.inspect_image(final)).get("Id", "")
    except EngineError:
        reply.meta["image_id"] = ""
    return reply


_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9_-]+(/[a-z0-9_.-]+)?)?")  # no leading dash: not a flag


def validate(parsed) -> None:
    ref = refs.parse_normalized(parsed.args[0])
    host, colon, port = ref.domain.rpartition(":")
    if colon and port.isdigit() and not 0 < int(port) < 65536:
        # the grammar takes any digits; the engine cannot dial them ("invalid port")
        raise UsageError(f"invalid registry port {port[:12]} in {ref.domain[:80]}: a port is 1 to 65535",
                         "Check the registry address: `docker pull HOST:PORT/NAME[:TAG]`.")
    if parsed.opts.get("all_tags") and (ref.tag or ref.digest):
        raise UsageError("tag can't be used with --all-tags/-a", "Give the repository alone: `docker pull -a NAME`.")
    platform = parsed.opts.get("platform")
    if platform is not None and not _PLATFORM.fullmatch(platform):
        raise UsageError(f'"{platform[:40]}": invalid platform: use os[/arch[/variant]]',
                         "For example `docker pull --platform linux/arm64 alpine`.")


_REFUSAL = "invalid reference format"


async def engine_check(parsed, engine) -> None:
    """Refuse, in the engine's words, a reference this engine's parser refuses.

    Engines disagree on one thing the grammar allows: an uppercase first
    component (``UPPER/x``). Current distribution/reference reads it as a
    registry host; older engines (20.10) answer "repository name must be
    lowercase". Only the engine knows, so it is asked with a read that
    parses the reference the way a pull does and changes nothing
    (``GET /images/{name}/json``: 400 when the name does not parse)."""
    ref = refs.parse_normalized(parsed.args[0])
    if ref.domain == ref.domain.lower():
        return  # every engine version parses these alike
    name = parsed.args[0] if (ref.tag or ref.digest) else parsed.args[0] + ":latest"
    try:
        await engine.inspect_image(name)
    except InvalidArgument as exc:
        at = exc.message.find(_REFUSAL)
        if at < 0:
            return  # some other 400: not a parse refusal, so the pull decides
        raise InvalidReference(f"Error response from daemon: {exc.message[at:][:200]}",
                         "Registry hosts and repository names are lowercase: `docker pull registry.example:5000/team/app`.") from None
    except EngineError:
        return  # parsed (not found, or the engine is away): the pull answers for itself


SPECS = (
    CommandSpec(("pull",), "pull [OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", pull,
                (Flag("all-tags", "a", help="Download all tagged images in the repository"),
                 Flag("disable-content-trust", help="Skip image verification (default true)",
                      unsupported="Content trust is not configurable from chat."),
                 Flag("platform", kind="str", help="Set platform if server is multi-platform capable",
                      metavar="string"),
                 Flag("quiet", "q", help="Suppress verbose output")),
                min_args=1, max_args=1, aliases=("docker image pull", "docker pull"), effect=WRITE,
                examples=("docker pull ubuntu", "docker pull ubuntu:16.04",
                          "docker pull myregistry.local:5000/testing/test-image"),
                validate=validate, engine_check=engine_check, planner=plan_all_tags, confirm_if=lambda parsed: bool(parsed.opts.get("all_tags"))),
)
SPECS = SPECS + (dataclasses.replace(SPECS[0], path=("image", "pull")),)

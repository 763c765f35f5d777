"""``docker pull``: fetch an image, report progress, end with the CLI's lines."""

from __future__ import annotations

import dataclasses
import re
import time

from . import refs
from .argv import WRITE, CommandSpec, Flag
from .base import Call
from .errors import EngineError, UsageError
from .replies import ErrorPart, LayerProgress, Preformatted, Progress, Status

EMIT_INTERVAL = 1.0  # seconds between interim progress replies (Slack: ~1 chat.update/s)


async def pull(call: Call):
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


async def _stream(call: Call, ref: refs.Reference, tag: str, lines: list[str]):
    layers: dict[str, LayerProgress] = {}
    statuses: list[str] = []
    title = f"Pulling {ref.familiar()}"
    last_emit = 0.0
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
            layers[ev.id] = LayerProgress(ev.id, ev.status, ev.current, ev.total)
        elif ev.status:
            statuses.append(f"{ev.id}: {ev.status}" if ev.id else ev.status)
        if call.emit and time.monotonic() - last_emit >= EMIT_INTERVAL:
            last_emit = time.monotonic()
            await call.emit(call.reply(Progress(title, tuple(layers.values()), statuses[-1] if statuses else "")))
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


_PLATFORM = re.compile(r"[a-z0-9_-]+(/[a-z0-9_-]+(/[a-z0-9_.-]+)?)?")


def validate(parsed) -> None:
    refs.parse_normalized(parsed.args[0])
    platform = parsed.opts.get("platform")
    if platform is not None and not _PLATFORM.fullmatch(platform):
        raise UsageError(f'"{platform[:40]}": invalid platform: use os[/arch[/variant]]',
                         "For example `docker pull --platform linux/arm64 alpine`.")


SPECS = (
    CommandSpec(("pull",), "pull [OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", pull,
                (Flag("all-tags", "a", help="Download all tagged images in the repository",
                      unsupported="Pull tags one at a time: `docker pull NAME:TAG`."),
                 Flag("disable-content-trust", help="Skip image verification (default true)",
                      unsupported="Content trust is not configurable from chat."),
                 Flag("platform", kind="str", help="Set platform if server is multi-platform capable",
                      metavar="string"),
                 Flag("quiet", "q", help="Suppress verbose output")),
                min_args=1, max_args=1, aliases=("docker image pull", "docker pull"), effect=WRITE,
                examples=("docker pull ubuntu", "docker pull ubuntu:16.04",
                          "docker pull myregistry.local:5000/testing/test-image"),
                validate=validate),
)
SPECS = SPECS + (dataclasses.replace(SPECS[0], path=("image", "pull")),)

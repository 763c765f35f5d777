"""Drift: is one tag the same image on every host?

``docker images NAME[:TAG] @all`` (or a group) adds, before the hosts'
sections, one row per host: the image ID and registry digest that tag names
there, and whether the host differs from the majority, so the stale
``latest`` shows before anyone pulls or removes on the wrong host. The ID
decides (a digest is only known for pulled images); a host without the tag
differs too, and a host that did not answer is said to be unknown.
"""

from __future__ import annotations

from collections import Counter

from .errors import EngineError, ImageNotFound
from .refs import parse_normalized
from .replies import Notice, Reply, Table
from .units import truncate_id

LIST_PATHS = {("images",), ("image", "ls"), ("image", "list")}
COLUMNS = ("HOST", "IMAGE ID", "DIGEST", "DRIFT")
MISSING = "missing"


def reference_of(command) -> str | None:
    """The one image reference a listing names (NAME[:TAG], ``latest`` when
    no tag), or None when the command is no such listing (no argument, a
    pattern, a digest, another command)."""
    spec = command.spec
    if spec is None or command.parsed.help or spec.path not in LIST_PATHS or len(command.parsed.args) != 1:
        return None
    arg = command.parsed.args[0]
    if any(c in arg for c in "*?[") or "@" in arg:
        return None
    try:
        ref = parse_normalized(arg).with_default_tag()
    except Exception:  # noqa: BLE001 - not a reference: the listing answers it in the CLI's words
        return None
    return str(ref)


async def read(engine, reference: str) -> dict:
    """What ``reference`` is on one host: {"id", "digest"}, or {"missing": True}."""
    try:
        info = await engine.inspect_image(reference)
    except ImageNotFound:
        return {"missing": True}
    name = parse_normalized(reference).name
    digest = ""
    for entry in info.get("RepoDigests") or ():
        try:
            parsed = parse_normalized(str(entry))
        except Exception:  # noqa: BLE001 - engine text is data
            continue
        if parsed.name == name and parsed.digest:
            digest = parsed.digest
            break
    return {"id": str(info.get("Id", "")), "digest": digest}


async def attach(reply: Reply, engine, reference: str) -> Reply:
    """``reply`` with this host's reading of ``reference`` in ``meta["drift"]``."""
    import dataclasses

    try:
        seen = await read(engine, reference)
    except EngineError:
        return reply
    return dataclasses.replace(reply, meta={**reply.meta, "drift": seen})


def report(reference: str, names: tuple[str, ...], replies: list[Reply]) -> tuple:
    """The drift table and one sentence, for the hosts in ``names``' order."""
    seen = {n: r.meta.get("drift") for n, r in zip(names, replies)}
    values = {n: (MISSING if s.get("missing") else s["id"]) for n, s in seen.items() if s}
    counts = Counter(values.values()).most_common()
    majority = counts[0][0] if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]) else None
    rows, differ = [], []
    for name in names:
        s = seen[name]
        if not s:
            rows.append((name, "?", "?", "no answer"))
            continue
        if s.get("missing"):
            image_id, digest = "-", "-"
        else:
            image_id, digest = truncate_id(s["id"]), (s["digest"][:19] if s["digest"] else "-")
        if majority is None:
            flag = "no majority"
        elif values[name] == majority:
            flag = "same"
        else:
            flag = "DIFFERS" if values[name] != MISSING else "DIFFERS (missing)"
            differ.append(name)
        rows.append((name, image_id, digest, flag))
    shown = parse_normalized(reference).familiar()
    answered = len(values)
    if not answered:
        text = f"No host answered: drift of {shown} is unknown."
    elif majority is None:
        text = f"{shown} differs between the hosts with no majority: check each host before acting."
    elif not differ:
        what = "none has it" if majority == MISSING else f"all are {truncate_id(majority)}"
        text = f"{shown}: {answered} host(s) agree ({what})."
    else:
        what = "do not have it" if majority == MISSING else f"have {truncate_id(majority)}"
        text = (f"{shown}: {', '.join(differ)} differ{'s' if len(differ) == 1 else ''} from the majority "
                f"({counts[0][1]} of {answered} hosts {what}).")
    if answered < len(names):
        text += f" No answer from {', '.join(n for n in names if not seen[n])}."
    return (Notice(text), Table(COLUMNS, tuple(rows))), {"majority": majority, "differ": differ}

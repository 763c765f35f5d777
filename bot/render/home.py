"""handlers.home.Home -> Slack's Home tab view (``views.publish``), within its limits.

Pure functions, no I/O. A Home tab view is ``{"type": "home", "blocks": [...]}``
with at most 100 blocks (Slack's view limits); sections keep to 3,000
characters, section fields to 10 of 2,000, button labels to 75, values to
2,000. Text from the engine, the audit log or a registry is data: escaped and
shown in code spans or a code block, never as formatting, links or mentions.
"""

from __future__ import annotations

import datetime

from handlers.home import Home, HostSummary
from handlers.replies import Table
from handlers.textfmt import table_lines
from handlers.units import human_duration, human_size

from .blockkit import FENCE, _clean, clip, clip_escaped, code, escape, run_value

MAX_VIEW_BLOCKS = 100
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_SECTION = 3000
MAX_HEADER_TEXT = 150
MAX_BUTTON_LABEL = 75

HOME_CALLBACK = "dockhand.home"
ACTION_HOME_RUN_PREFIX = "dockhand.home.run."
ACTION_HOME_PULL = "dockhand.home.pull"
ACTION_HOME_REFRESH = "dockhand.home.refresh"


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION) or " "}}


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION) or " "}]}


def _button(label: str, action_id: str, value: str = "", style: str = "") -> dict:
    b = {"type": "button", "action_id": action_id,
         "text": {"type": "plain_text", "text": clip(label, MAX_BUTTON_LABEL), "emoji": True}}
    if value:
        b["value"] = value
    if style:
        b["style"] = style
    return b


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime("%H:%M:%S UTC")


def disk_text(host: HostSummary) -> tuple[str, str]:
    """(disk used, reclaimable) as ``docker system df`` prints them for images."""
    d = host.disk
    if d is None:
        return "unknown", "unknown"
    # the CLI prints these with go-units HumanSize (4 significant digits), not the 3 of `docker images`
    return human_size(d.size, 4), f"{human_size(d.reclaimable, 4)} ({d.reclaimable_percent}%)"


def _host_line(host: HostSummary) -> str:
    engine = (f"Docker Engine {escape(host.engine_version)}" if host.engine_version else "engine version unknown")
    extra = ", ".join(x for x in (f"API {escape(host.api_version)}" if host.api_version else "",
                                  escape(host.os_arch)) if x)
    return engine + (f" ({extra})" if extra else "")


def _status(host: HostSummary) -> str:
    """Many hosts: a host's heading, its state first (an unreachable host is named as such)."""
    you = f" · you: {escape(host.role)}" if host.role else ""
    if not host.reachable:
        return f":red_circle: *Host* {code(host.host, 60)} · *unreachable*{you}"
    mark = ":large_yellow_circle:" if host.problems else ":large_green_circle:"
    return f"{mark} *Host* {code(host.host, 60)} · {_host_line(host)}{you}"


def _host_button(host: HostSummary, index: int) -> dict:
    """Many hosts: this host's images, as `docker images -H NAME` (a read, run as the clicker)."""
    return _button(f"Images on {host.host}", f"{ACTION_HOME_RUN_PREFIX}host{index}",
                   run_value(f"docker images -H {host.host}"))


def _problems(host: HostSummary) -> dict:
    return _context(":warning: " + " ".join(clip_escaped(p, 400) for p in host.problems))


def _host_blocks(host: HostSummary, index: int = -1) -> list[dict]:
    """One host in full. ``index`` >= 0: one of many hosts (its state in the
    heading, its own Images button; an unreachable host is its heading and why)."""
    blocks: list[dict] = []
    if index >= 0:
        heading = _section(_status(host))
        heading["accessory"] = _host_button(host, index)
        blocks.append(heading)
        if not host.reachable:
            return blocks + ([_problems(host)] if host.problems else [])
    else:
        blocks.append(_section(f":whale: *Host* {code(host.host, 200)} · {_host_line(host)}"))
    used, reclaimable = disk_text(host)
    images = "unknown" if host.images is None else (
        f"{host.images:,} image{'s' if host.images != 1 else ''} ({host.rows:,} row{'s' if host.rows != 1 else ''} "
        "in `docker images`)")
    in_use = "unknown" if host.disk is None else f"{host.disk.active:,} of {host.disk.total:,} images"
    fields = [("Images", images), ("Disk used by images", used), ("Reclaimable", reclaimable),
              ("Used by containers", in_use), ("Pulls in flight", f"{len(host.pulls):,}")]
    blocks.append({"type": "section", "fields": [
        {"type": "mrkdwn", "text": clip(f"*{name}*\n{value}", MAX_FIELD_TEXT)} for name, value in fields[:MAX_FIELDS]]})
    if host.pulls:
        lines = []
        for p in host.pulls:
            ref = f"{p.repository}{'@' if p.tag.startswith('sha256:') else ':'}{p.tag}"
            progress = (f"{p.done * 100 // p.total}% of {human_size(p.total)}" if p.total else "starting")
            line = f"• {code(ref, 150)}" + (f" for {code(p.platform, 40)}" if p.platform else "")
            line += f" · {progress} · {human_duration(p.seconds)}"
            if p.requests > 1:
                line += f" · {p.requests} requests share it"
            lines.append(line)
        blocks.append(_section("*Pulls in flight*\n" + "\n".join(lines)))
    if host.problems:
        blocks.append(_problems(host))
    return blocks


def _compact(host: HostSummary, index: int) -> dict:
    """Many hosts, more than fit in full: one section per host."""
    text = _status(host)
    if host.reachable:
        used, reclaimable = disk_text(host)
        images = "? images" if host.images is None else f"{host.images:,} image{'s' if host.images != 1 else ''}"
        text += f"\n{images} · {used} used · {reclaimable} reclaimable · {len(host.pulls):,} pulls in flight"
    if host.problems:
        text += "\n:warning: " + " ".join(clip_escaped(p, 300) for p in host.problems[:3])
    block = _section(text)
    block["accessory"] = _host_button(host, index)
    return block


def _audit_blocks(home: Home) -> list[dict]:
    blocks: list[dict] = []
    if home.problems:
        blocks.append(_context(":warning: " + " ".join(clip_escaped(p, 400) for p in home.problems)))
    if not home.audit_kept:
        blocks.append(_context("This Dockhand keeps no audit log."))
    elif home.audit:
        table = Table(home.audit_columns, home.audit)
        lines = [escape(_clean(line))[:400] for line in table_lines(table)]
        body = "\n".join(lines)
        while len(body) > MAX_SECTION - 60 and len(lines) > 2:
            lines.pop(1)  # the oldest record first
            body = "\n".join(lines)
        blocks.append(_section(f"*Last audit records* (`/docker audit 20` for more)\n{FENCE}\n{body}\n{FENCE}"))
    elif not home.problems:
        blocks.append(_context("The audit log is empty: nothing has been pulled or removed yet."))
    return blocks


def _names(names, limit: int = 1500) -> str:
    return clip_escaped(", ".join(names), limit)


def _hosts_blocks(home: Home, room: int) -> list[dict]:
    """Every host's section within ``room`` blocks: in full when they fit, else
    one section per host, else the first ones and a note naming the rest."""
    many = home.many
    full = [[{"type": "divider"}] + _host_blocks(h, i if many else -1) for i, h in enumerate(home.hosts)]
    if sum(map(len, full)) <= room:
        return [b for blocks in full for b in blocks]
    if not many:  # (one engine is never this big; kept for safety)
        return [b for blocks in full for b in blocks][:room]
    compact = [{"type": "divider"}] + [_compact(h, i) for i, h in enumerate(home.hosts)]
    if len(compact) <= room:
        return compact
    shown = max(0, room - 2)  # the divider and the note
    rest = [h.host for h in home.hosts[shown:]]
    unreachable = [h.host for h in home.hosts[shown:] if not h.reachable]
    note = (f":information_source: {len(home.hosts)} hosts: the first {shown} (in the settings' order) fit on "
            f"this tab; not shown: {_names(rest)}.")
    if unreachable:
        note += f" Of those, unreachable: {_names(unreachable, 800)}."
    note += " Ask for one with `/images @name` or `/docker info @name`."
    return compact[:1 + shown] + [_context(note)]


def home_view(home: Home, *, no_role: str = "") -> dict:
    """The Home tab for one person. ``no_role``: why they may see nothing
    (they have no role here), shown instead of the hosts."""
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": "Dockhand", "emoji": True}}]
    read_at = max((h.read_at for h in home.hosts), default=0.0)
    if no_role:
        blocks.append(_section(f":no_entry: {clip_escaped(no_role, 2000)}"))
        return {"type": "home", "callback_id": HOME_CALLBACK, "blocks": blocks}
    if home.many:
        down = [h.host for h in home.hosts if not h.reachable]
        state = f"{len(home.hosts) - len(down)} of {len(home.hosts)} answering" + (
            f"; unreachable: {_names(down, 800)}" if down else "")
        blocks.append(_context(f"The Docker Engines Dockhand manages ({state}), read at {_when(read_at)} · "
                               "refreshed each time you open this tab"))
    else:
        blocks.append(_context(f"The Docker Engine{'s' if len(home.hosts) > 1 else ''} Dockhand manages, read at "
                               f"{_when(read_at)} · refreshed each time you open this tab"))
    buttons = [_button(label, f"{ACTION_HOME_RUN_PREFIX}{i}", run_value(line))
               for i, (label, line) in enumerate(home.commands)]
    buttons.append(_button("Pull an image…", ACTION_HOME_PULL, "pull", style="primary"))
    buttons.append(_button("Refresh", ACTION_HOME_REFRESH, "refresh"))
    where = (f" These buttons run on the default host {code(home.default, 60)}; a host's own button, on that "
             "host; typed, `@name` picks one (`/images @name`)." if home.default else "")
    tail = [{"type": "actions", "elements": buttons[:25]},
            _context("Each button runs its command as you, through the same checks as typing it "
                     f"(`/images`, `/docker info`, `/docker audit 20`, `/pull`).{where}")]
    after = ([{"type": "divider"}] if home.many else []) + _audit_blocks(home)  # the log is no host's part
    if home.hidden:
        after.append(_context(f"You have no role on {_names(home.hidden)}: "
                              f"{'it is' if len(home.hidden) == 1 else 'they are'} not shown."))
    room = MAX_VIEW_BLOCKS - len(blocks) - len(after) - len(tail)
    return {"type": "home", "callback_id": HOME_CALLBACK, "blocks": blocks + _hosts_blocks(home, room) + after + tail}

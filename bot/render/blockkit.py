"""Reply -> Slack Block Kit message, always within Slack's limits.

Pure functions: no Slack SDK, no I/O. :func:`render` returns
``{"text": ..., "blocks": [...]}`` ready for ``chat.postMessage``,
``chat.update`` or a ``response_url``.

Limits honoured (Block Kit reference, and what the Web API is seen to
enforce):

* at most 50 blocks; a section's text at most 3,000 characters; a context
  element's text kept under 2,000; a button label at most 75, its value at
  most 2,000; at most 25 elements in an actions block, 10 in a context block;
* ``chat.postMessage`` also refuses (``msg_blocks_too_long``) a message whose
  blocks carry more than roughly 12,000 characters in total, a limit Slack
  does not document: every message stays under :data:`MESSAGE_BUDGET`;
* lengths are counted in UTF-16 code units (an emoji counts two), after
  escaping ``&``, ``<`` and ``>`` (``&amp;`` counts five).

A :class:`~handlers.replies.Table` longer than one page is paginated: the
rows per page depend only on the table (its widest row), never on the other
parts, so "page 3" means the same rows each time the same list is rendered.
Previous/Next buttons carry ``{"c": command, "p": page, "f": fingerprint}``
(see :func:`page_value`); the Slack front end re-runs ``c`` on a click.

**Native tables** (``render(..., native=True)``): the first table of a reply
goes out as a ``data_table`` block (Slack sorts, filters and paginates it),
built to the block's reference: a required ``caption``; ``page_size`` 1-100;
2-101 rows, the header first; 1-20 columns, every row the same length;
cells ``raw_text`` (``text``, at least one character) or ``raw_number``
(``value``, a number, and ``text``, what is shown); header cells never
``rich_text``; at most 10,000 characters across all cells of the table (and
of all tables of a message). Outside text only ever goes in ``raw_text``
(plain text: no formatting, links or mentions), never in ``rich_text``.
Columns with real values (:attr:`Table.values`: bytes, epoch seconds,
counts) are ``raw_number`` cells showing the CLI's words, so they sort by
value. A table one block can hold is one page; a longer one keeps the code
layout's pages (so a page number means the same rows in both shapes) and
the page buttons around the block. Such a message carries ``"fallback"``:
the same reply in the code-block shape, which ``bot.slack.posting`` sends
when Slack refuses the blocks; its ``text`` (notifications) is the CLI's
text of the page, and an **As the CLI prints it** button shows that text.
"""

from __future__ import annotations

import json
import math
import re
import time

from handlers.replies import Confirmation, ErrorPart, HostHeading, Notice, Preformatted, Progress, Reply, Table
from handlers.textfmt import MIN_WIDTH, PADDING, column_widths, format_row
from handlers.units import human_size

# --- Slack's limits ---------------------------------------------------------
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_CONTEXT_TEXT = 2000
MAX_BUTTON_LABEL = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_OPTIONS = 100  # a static_select's options
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_PLACEHOLDER = 150
MAX_MENUS = 5
# Total characters of all text (and button values) in one message's blocks.
# Slack rejects somewhere above ~12,000 (undocumented, msg_blocks_too_long).
MESSAGE_BUDGET = 10_000
# The plain ``text`` fallback (notifications, clients without blocks).
MAX_FALLBACK = 3000

# data_table (Block Kit reference, "Data table block"): header + 1..100 rows,
# 1..20 columns, page_size 1..100, 10,000 characters across all cells of a
# table and of a message.
DATA_TABLE_MAX_ROWS = 100  # rows under the header
DATA_TABLE_MAX_COLUMNS = 20
DATA_TABLE_MAX_CHARS = 10_000
DATA_TABLE_MAX_PAGE_SIZE = 100

# --- Dockhand's layout choices ----------------------------------------------
# Shares of MESSAGE_BUDGET, so that whatever the reply the parts keep room:
MAX_HEADER = 1000  # the caller's header line
MAX_NOTE = 500  # the warning note
MAX_PAGE_VALUE = 1000  # a Previous/Next/Share value (a longer command line: no buttons)
RUN_BUTTONS_BUDGET = 2000  # labels and values of all command buttons together
PAGE_ROWS = 50  # at most this many rows on one page of a table
TABLE_BUDGET = 6000  # characters one page of a table may use
LINE_TARGET = 180  # cells of the widest columns are cut until a row fits this
MIN_CELL = 16  # ... but no column is cut below this many characters
MAX_LINE = 1000  # hard cap of any line inside a code block (escaped)
FENCE = "```"
NATIVE_CELL_BUDGET = 7000  # characters of cells one data_table may use (< 10,000, and room for the rest)
NATIVE_PAGE_SIZE = 10  # rows Slack shows per page of a data_table (a phone screen)
MAX_CAPTION = 200  # a data_table's caption (no limit documented: kept short)
MAX_NATIVE_TEXT = 12_000  # the notification text of a native table message (the CLI's text of the page)
EMPTY_CELL = "-"  # raw_text needs a character: an empty cell (not official, no tag) shows this

ACTION_PREV = "dockhand.page.prev"
ACTION_NEXT = "dockhand.page.next"
ACTION_SHARE = "dockhand.share"
ACTION_RUN_PREFIX = "dockhand.run."
ACTION_MENU_PREFIX = "dockhand.menu."
ACTION_CLI = "dockhand.cli"  # "As the CLI prints it"
ACTION_CONFIRM = "dockhand.confirm"
ACTION_CANCEL = "dockhand.cancel"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")


# --- small helpers ----------------------------------------------------------

def slen(text: str) -> int:
    """Length as Slack counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only ``&``, ``<`` and ``>`` are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int, marker: str = "…") -> str:
    """``text`` cut to at most ``limit`` UTF-16 units, ``marker`` ending a cut."""
    if len(text) <= limit // 2 or slen(text) <= limit:
        return text
    out, used, room = [], 0, limit - slen(marker)
    for ch in text[:max(room, 0)]:
        n = slen(ch)
        if used + n > room:
            break
        out.append(ch)
        used += n
    return "".join(out) + marker


def clip_escaped(text: str, limit: int) -> str:
    """Escape ``text`` and cut it to ``limit`` units without splitting an entity."""
    escaped = escape(text)
    if slen(escaped) <= limit:
        return escaped
    out, used, room = [], 0, limit - 1
    for ch in text[:max(room, 0)]:
        piece = escape(ch)
        n = slen(piece)
        if used + n > room:
            break
        out.append(piece)
        used += n
    return "".join(out) + "…"


def mention(user_id: str) -> str:
    """``<@U123>`` for a well-formed Slack user ID, the escaped text otherwise."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id or "") else escape(user_id or "someone")


def code(text: str, limit: int = 200) -> str:
    """Inline code span of untrusted text (backticks cannot close it early)."""
    return "`" + clip_escaped(_CONTROL.sub(" ", text).replace("\n", " ").replace("`", "'"), limit) + "`"


def untrusted(text: str, limit: int) -> str:
    """Text from outside as Slack shows it literally: an inline code span for
    one line, a code block for several (no formatting, links or mentions)."""
    text = text.strip("\n")
    if "\n" not in text:
        return code(text, limit)
    lines = [clip_escaped(_clean(ln), MAX_LINE) for ln in text.split("\n")]
    block = "\n".join(lines)
    if slen(block) > limit - 10:
        block = clip(block, limit - 10)
    return f"\n{FENCE}\n{block}\n{FENCE}"


def shown_command(line: str) -> str:
    """A command line as the CLI would be typed: ``images -a`` -> ``docker images -a``."""
    return line if line.startswith(("docker", "/")) else f"docker {line}"


def _clean(text: str) -> str:
    """Text safe inside a ``` block: no control characters, no closing fence."""
    return _CONTROL.sub(" ", text).replace("\t", "    ").replace(FENCE, "`\u200b`\u200b`")


def page_value(command: str, page: int, fingerprint: str = "", *, cli: bool = False) -> str:
    """A page/share/CLI button's value; ``cli``: the page as the CLI prints it."""
    value = {"c": command, "p": page}
    if fingerprint:
        value["f"] = fingerprint
    if cli:
        value["v"] = "cli"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def run_value(command: str) -> str:
    return json.dumps({"c": command}, separators=(",", ":"), ensure_ascii=False)


def parse_value(value: str) -> dict:
    """A button value made by this module; ``ValueError`` if it is not one."""
    data = json.loads(value)
    if not isinstance(data, dict) or not isinstance(data.get("c"), str):
        raise ValueError("not a Dockhand button value")
    page = data.get("p", 0)
    if not isinstance(page, int) or isinstance(page, bool) or page < 0:
        raise ValueError("bad page")
    fp = data.get("f", "")
    if not isinstance(fp, str):
        raise ValueError("bad fingerprint")
    view = data.get("v", "")
    if view not in ("", "cli"):
        raise ValueError("bad view")
    return {"c": data["c"], "p": page, "f": fp, **({"v": view} if view else {})}


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*texts: str) -> dict:
    return {"type": "context",
            "elements": [{"type": "mrkdwn", "text": t} for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def _button(label: str, action_id: str, value: str, style: str = "") -> dict:
    b = {"type": "button", "action_id": action_id,
         "text": {"type": "plain_text", "text": clip(label, MAX_BUTTON_LABEL) or "?", "emoji": True},
         "value": value}
    if style:
        b["style"] = style
    return b


def block_chars(block: dict) -> int:
    """Characters a block contributes to the message budget."""
    total = 0
    stack = [block]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, val in node.items():
                if key in ("text", "value") and isinstance(val, str):
                    total += slen(val)
                elif isinstance(val, (dict, list)):
                    stack.append(val)
        elif isinstance(node, list):
            stack.extend(node)
    return total


def _code_chunks(lines: list[str], budget: int, max_blocks: int, more_label: str = "lines") -> list[str]:
    """Pack already-escaped ``lines`` into ``` sections within the limits.

    Each section stays under 3,000 characters, all of them under ``budget``
    and ``max_blocks``; lines that do not fit are counted in a last
    ``… N more`` line instead.
    """
    overhead = 2 * len(FENCE) + 2  # "```\n" + ... + "\n```"
    reserve = 40  # room for the "… N more" line
    chunk_cap = MAX_SECTION - overhead - reserve
    chunks: list[list[str]] = []
    cur: list[str] = []
    cur_size = used = 0
    for i, line in enumerate(lines):
        if slen(line) > MAX_LINE:
            line = clip(line, MAX_LINE)
        n = slen(line) + 1
        if cur and cur_size + n <= chunk_cap and used + cur_size + n + overhead + reserve <= budget:
            cur.append(line)
            cur_size += n
            continue
        if cur:
            chunks.append(cur)
            used += cur_size + overhead
            cur = []
        if len(chunks) >= max_blocks or used + n + overhead + reserve > budget:
            more = f"… {len(lines) - i:,} more {more_label}"
            if chunks:
                chunks[-1].append(more)
            elif max_blocks > 0 and budget >= overhead + len(more) + 1:
                chunks.append([more])
            break
        cur, cur_size = [line], n
    if cur:
        chunks.append(cur)
    return [f"{FENCE}\n" + "\n".join(c) + f"\n{FENCE}" for c in chunks]


# --- tables -----------------------------------------------------------------

def _cell_caps(rows: tuple[tuple[str, ...], ...], n: int) -> list[int]:
    """How many characters each of the ``n`` columns may show.

    The same cap applies to every column (so only the widest are cut),
    the largest one that keeps a row within :data:`LINE_TARGET`.
    """
    natural = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(n)]

    def width(cap: int) -> int:
        caps = [min(c, cap) for c in natural]
        return sum(max(c + PADDING, MIN_WIDTH) for c in caps[:-1]) + caps[-1]

    lo, hi = MIN_CELL, max(natural + [MIN_CELL])
    if width(hi) <= LINE_TARGET:
        return natural
    while lo < hi:  # the largest cap in [MIN_CELL, hi] whose width fits
        mid = (lo + hi + 1) // 2
        if width(mid) <= LINE_TARGET:
            lo = mid
        else:
            hi = mid - 1
    return [min(c, lo) for c in natural]


def _normal_rows(table: Table) -> tuple[tuple[str, ...], ...]:
    """Rows of exactly one cell per column, cleaned; no cell is ever shown
    wider than LINE_TARGET, so longer ones are shortened first (cheaply)."""
    n = max(len(table.columns), 1)
    keep = LINE_TARGET + 1
    return tuple(tuple(_clean(c[:keep]) for c in row[:n]) + ("",) * (n - len(row)) for row in table.rows)


class TableLayout:
    """A table laid out once: escaped lines, and how many rows fit a page."""

    def __init__(self, table: Table):
        self.table = table
        rows = _normal_rows(table)
        cols = tuple(_clean(c) for c in table.columns) or ("",)
        caps = _cell_caps(rows if table.headerless else (cols, *rows), len(cols))
        cut = Table(tuple(clip(c, caps[i]) for i, c in enumerate(cols)),
                    tuple(tuple(clip(c, caps[i]) for i, c in enumerate(r)) for r in rows),
                    table.headerless)
        self.cells = cut  # the words shown, cut like the code block's (a native table shows the same)
        if table.headerless and len(cols) == 1:
            self.header = None
            self.lines = [clip_escaped(r[0], MAX_LINE) for r in cut.rows]
        else:
            widths = column_widths(cut)
            self.header = None if table.headerless else clip_escaped(format_row(cut.columns, widths), MAX_LINE)
            self.lines = [clip_escaped(format_row(r, widths), MAX_LINE) for r in cut.rows]
        widest = max((slen(ln) for ln in self.lines), default=0)
        header = slen(self.header) + 1 if self.header else 0
        # A page (header, rows, fences, a "more" line) within TABLE_BUDGET,
        # counting every row as wide as the widest: the same rows per page
        # whatever the page, so a page number always means the same rows.
        per_budget = (TABLE_BUDGET - header - 200) // (widest + 1) if widest else PAGE_ROWS
        self.rows_per_page = max(1, min(PAGE_ROWS, per_budget))

    @property
    def total(self) -> int:
        return len(self.lines)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.rows_per_page))

    def page_blocks(self, page: int, budget: int, max_blocks: int) -> list[str]:
        start = page * self.rows_per_page
        body = self.lines[start:start + self.rows_per_page]
        lines = ([self.header] if self.header else []) + body
        if not body:
            lines.append("(no rows)" if self.total == 0 else "(no rows on this page)")
        return _code_chunks(lines, budget, max_blocks, more_label="rows")


def _first_table(reply: Reply) -> Table | None:
    return next((p for p in reply.parts if isinstance(p, Table)), None)


def table_fingerprint(reply: Reply) -> str:
    """Fingerprint of the table pages are taken from ("" when there is none)."""
    table = _first_table(reply)
    return table.fingerprint() if table is not None else ""


def page_count(reply: Reply) -> int:
    table = _first_table(reply)
    return TableLayout(table).pages if table is not None else 1


# --- native tables (data_table) ----------------------------------------------

def _native_ok(table: Table) -> bool:
    """Can this table be a data_table at all? (A header, 1-20 columns, a row.)"""
    return (not table.headerless and 1 <= len(table.columns) <= DATA_TABLE_MAX_COLUMNS
            and len(table.rows) >= 1)


# Bidi overrides and isolates reorder what is shown ("exe.txt" shown as "txt.exe"):
# in a table's plain-text cell, where text from outside is shown as is, they go.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _raw_text(text: str) -> dict:
    return {"type": "raw_text", "text": _BIDI.sub(" ", text) or EMPTY_CELL}


def _number(value) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value


class NativeTable:
    """A table's rows as data_table cells, and how it pages.

    One block when every row fits it (at most 100 rows, cells within
    :data:`NATIVE_CELL_BUDGET`); otherwise the code layout's pages, so a page
    number (buttons, the code-block fallback) means the same rows."""

    def __init__(self, layout: TableLayout):
        self.layout = layout
        table, cells = layout.table, layout.cells
        self.numeric = table.numeric_columns()
        self.header = [_raw_text(c) for c in cells.columns]
        self.rows: list[list[dict]] = []
        chars = sum(slen(c["text"]) for c in self.header)
        for r, row in enumerate(cells.rows):
            out = []
            for i, shown in enumerate(row):
                if i in self.numeric:
                    # every cell of a numeric column is raw_number (Slack sorts a column
                    # by value only when all its cells are); no value: 0
                    value = _number(table.value(r, i))
                    out.append({"type": "raw_number", "value": 0 if value is None else value,
                                "text": _BIDI.sub(" ", shown) or EMPTY_CELL})
                else:
                    out.append(_raw_text(shown))
                chars += slen(out[-1]["text"])
            self.rows.append(out)
        self.one_block = len(self.rows) <= DATA_TABLE_MAX_ROWS and chars <= NATIVE_CELL_BUDGET

    @property
    def rows_per_page(self) -> int:
        return max(1, len(self.rows)) if self.one_block else self.layout.rows_per_page

    @property
    def pages(self) -> int:
        return 1 if self.one_block else self.layout.pages

    def span(self, page: int) -> tuple[int, int]:
        start = page * self.rows_per_page
        return start, min(len(self.rows), start + self.rows_per_page)

    def block(self, page: int, caption: str) -> dict:
        start, end = self.span(page)
        body = self.rows[start:end]
        return {"type": "data_table", "caption": clip(caption, MAX_CAPTION) or "Dockhand",
                "page_size": max(1, min(NATIVE_PAGE_SIZE, len(body), DATA_TABLE_MAX_PAGE_SIZE)),
                "rows": [self.header] + body}

    def cli_text(self, page: int, budget: int) -> str:
        """The page as the CLI prints it (escaped), in a code fence, within ``budget``."""
        start, end = self.span(page)
        lines = ([self.layout.header] if self.layout.header else []) + self.layout.lines[start:end]
        out, used = [], 2 * len(FENCE) + 2 + 40
        for n, line in enumerate(lines):
            if used + slen(line) + 1 > budget:
                out.append(f"… {len(lines) - n:,} more rows")
                break
            out.append(line)
            used += slen(line) + 1
        return f"{FENCE}\n" + "\n".join(out) + f"\n{FENCE}"


def _caption(reply: Reply, command: str, native: NativeTable, page: int) -> str:
    """What the table is, for the caption (screen readers, the table's title)."""
    what = shown_command(command) if command else "Dockhand"
    where = f" on {reply.host}" if reply.host else ""
    total = len(native.rows)
    if native.pages > 1:
        start, end = native.span(page)
        return _clean(f"{what}{where}: rows {start + 1:,}-{end:,} of {total:,}").replace("\n", " ")
    return _clean(f"{what}{where}: {total:,} row{'s' if total != 1 else ''}").replace("\n", " ")


# --- other parts ------------------------------------------------------------

def _bar(current: int, total: int, width: int = 20) -> str:
    if total <= 0:
        return ""
    done = min(width, int(width * current / total))
    return "[" + "=" * max(0, done - 1) + (">" if done else "") + " " * (width - done) + "]"


BAR_WIDTH = 20


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def progress_bar(p: Progress) -> str:
    """One line a person reads at a glance: a bar, percent, layers, bytes,
    elapsed (``""`` when there is nothing to measure yet). Percent and a
    byte total show once every layer's size is known: before that the
    total still grows, and the bar counts finished layers."""
    if not p.layers:  # a pull before the registry named its layers (a run has no elapsed)
        return f"`{'░' * BAR_WIDTH}`  _waiting for the registry…_ · {_elapsed(p.elapsed)} elapsed" \
            if p.elapsed else ""
    fraction = p.fraction()
    known = fraction is not None
    filled = round(BAR_WIDTH * (fraction if known else p.layers_done / len(p.layers)))
    bar = "`" + "█" * filled + "░" * (BAR_WIDTH - filled) + "`"
    bits = [f"*{int(fraction * 100)}%*" if known else "_sizing layers…_",
            f"layers {p.layers_done}/{len(p.layers)}"]
    if p.bytes_total:
        total = human_size(p.bytes_total)
        bits.append(f"{human_size(p.bytes_done)} / {total}" if known else f"{human_size(p.bytes_done)} so far")
    bits.append(f"{_elapsed(p.elapsed)} elapsed")
    return bar + "  " + " · ".join(bits)


def _progress_lines(p: Progress) -> list[str]:
    lines = []
    for layer in p.layers:
        detail = ""
        if layer.total:
            detail = f" {_bar(layer.current, layer.total)} {human_size(layer.current)}/{human_size(layer.total)}"
        lines.append(clip_escaped(_clean(f"{layer.id}: {layer.status}{detail}"), MAX_LINE))
    if p.status:
        lines.append(clip_escaped(_clean(p.status), MAX_LINE))
    return lines


def _part_blocks(part, budget: int, max_blocks: int, layout: TableLayout | None, page: int) -> list[dict] | None:
    """The blocks of one part within ``budget``/``max_blocks`` ([] if it cannot
    fit, None if there is nothing to show)."""
    if max_blocks <= 0 or budget <= 0:
        return []
    if isinstance(part, Table):
        assert layout is not None
        return [_section(t) for t in layout.page_blocks(page, budget, max_blocks)]
    if isinstance(part, Preformatted):
        lines = [clip_escaped(_clean(ln), MAX_LINE) for ln in part.text.rstrip("\n").split("\n")]
        return [_section(t) for t in _code_chunks(lines, budget, max_blocks)]
    if isinstance(part, Notice):
        return [_section(clip_escaped(part.text.strip(), min(MAX_SECTION, budget)))] if part.text.strip() else None
    if isinstance(part, ErrorPart):
        # An error's words often come from outside (a registry, the engine, what
        # was typed): data, never formatting. In a code span or block Slack
        # applies no bold, no links and no mentions.
        text = ":x: " + untrusted(part.message or "error", 1500)
        if part.hint:
            text += "\n:bulb: " + clip_escaped(part.hint, 1400)
        return [_section(text)]
    if isinstance(part, Progress):
        icon = ":white_check_mark:" if part.done else ":hourglass_flowing_sand:"
        title = f"{icon} *{clip_escaped(part.title, 500)}*"
        bar = progress_bar(part)
        blocks = [_section(title + (f"\n{bar}" if bar else ""))]
        lines = _progress_lines(part)
        if lines and max_blocks > 1:
            blocks += [_section(t) for t in
                       _code_chunks(lines, budget - block_chars(blocks[0]), max_blocks - 1)]
        return blocks
    if isinstance(part, HostHeading):
        # one host's section of a command run on several hosts: which host, and whether it answered
        if part.pending:
            text = f":hourglass_flowing_sand: *{clip_escaped(part.host, 60)}* · waiting ({clip_escaped(part.detail, 60)})"
        elif part.ok:
            text = f":large_green_circle: *{clip_escaped(part.host, 60)}*"
            if part.engine_version:
                text += " · Docker Engine " + clip_escaped(part.engine_version, 60)
        else:
            text = f":red_circle: *{clip_escaped(part.host, 60)}* · failed"
        if part.note:
            text += " · :warning: " + clip_escaped(part.note, 200)
        return [_section(text)]
    if isinstance(part, Confirmation):
        until = time.strftime("%H:%M UTC", time.gmtime(part.expires_at))
        return [_section(f":warning: *{clip_escaped(part.question, 300)}* Nothing is removed until "
                         f"{clip_escaped(part.who, 200)} confirms, before {until}.")]
    # An unknown part type: say so rather than fail the whole message.
    return [_section(clip_escaped(f"({type(part).__name__} cannot be shown in Slack)", 200))]


# --- the message ------------------------------------------------------------

def _fallback_text(reply: Reply, layout, page: int) -> str:
    """The message's plain ``text``: what notifications show. ``layout``: the
    table's paging (a :class:`TableLayout` or :class:`NativeTable`)."""
    text = reply.summary
    if not text:
        for part in reply.parts:
            if isinstance(part, ErrorPart):
                text = part.message
            elif isinstance(part, (Notice, Preformatted)):
                text = part.text
            elif isinstance(part, Progress):
                text = part.title
            else:
                continue
            break
    text = (text or "").strip().split("\n")[0].strip() or reply.command.strip() or "Dockhand"
    if not reply.ok:
        text = "Error: " + text
    if layout is not None and layout.pages > 1:
        first = page * layout.rows_per_page + 1
        last = min(len(layout.rows) if isinstance(layout, NativeTable) else layout.total,
                   first + layout.rows_per_page - 1)
        total = len(layout.rows) if isinstance(layout, NativeTable) else layout.total
        text += f" (rows {first:,}-{last:,} of {total:,})"
    return clip_escaped(text, MAX_FALLBACK)


def render(reply: Reply, *, page: int = 0, command: str | None = None, header: str = "",
           note: str = "", share: bool = False, interactive: bool = True, native: bool = False,
           cli: bool = False) -> dict:
    """The Slack message for ``reply``: ``{"text": fallback, "blocks": [...]}``.

    ``page``: which page of the (first) table to show, clamped to the last.
    ``command``: the command line buttons re-run (default ``reply.command``).
    ``header``: trusted mrkdwn shown first (build it with :func:`mention`,
    :func:`code`); ``note``: plain text shown as a warning under it.
    ``share``: add "Share in channel"; ``interactive=False``: no buttons at
    all (messages posted in a channel for the record).
    ``native``: the first table as a ``data_table`` block when it can be one;
    the message then also carries ``"fallback"``, the same reply in the
    code-block shape (for when Slack refuses the block) and an "As the CLI
    prints it" button. ``cli``: this message is the CLI's view a person asked
    for: its page and share buttons keep that view.
    """
    command = reply.command if command is None else command
    table = _first_table(reply)
    layout = TableLayout(table) if table is not None else None
    # a reply with a section per host keeps every host's table in the same (code) shape
    sections = any(isinstance(p, HostHeading) for p in reply.parts)
    nat = (NativeTable(layout) if native and not cli and not sections and layout is not None and _native_ok(table)
           else None)
    if nat is not None:
        fallback = render(reply, page=page, command=command, header=header, note=note, share=share,
                          interactive=interactive)
    paging = nat if nat is not None else layout
    page = max(0, min(page, paging.pages - 1)) if paging is not None else 0

    head: list[dict] = []
    if header.strip():
        head.append(_section(clip(header, MAX_HEADER)))
    if note.strip():
        head.append(_context(":warning: " + clip_escaped(note, MAX_NOTE)))

    # Footer first: it must always fit; the parts get what is left.
    foot: list[dict] = []
    if paging is not None and paging.pages > 1:
        first = page * paging.rows_per_page + 1
        total = len(nat.rows) if nat is not None else layout.total
        last = min(total, first + paging.rows_per_page - 1)
        foot.append(_context(f"Rows {first:,}–{last:,} of {total:,} · page {page + 1:,} of {paging.pages:,}"))
    buttons: list[dict] = []
    if interactive:
        fp = table.fingerprint() if table is not None else ""
        if paging is not None and paging.pages > 1:
            prev_v, next_v = (page_value(command, page - 1, fp, cli=cli),
                              page_value(command, page + 1, fp, cli=cli))
            if slen(next_v) <= MAX_PAGE_VALUE:
                if page > 0:
                    buttons.append(_button("◀ Previous", ACTION_PREV, prev_v))
                if page < paging.pages - 1:
                    buttons.append(_button("Next ▶", ACTION_NEXT, next_v))
        if nat is not None:
            # the CLI's text of this page: a plan's is in the message itself
            # (its command is not re-run); a list's is read again
            v = (json.dumps({"op": reply.confirmation.op}) if reply.confirmation is not None
                 else page_value(command, page, fp, cli=True))
            if slen(v) <= MAX_PAGE_VALUE:
                buttons.append(_button("As the CLI prints it", ACTION_CLI, v))
        if share and reply.ok:
            v = page_value(command, page, cli=cli)
            if slen(v) <= MAX_PAGE_VALUE:
                buttons.append(_button("Share in channel", ACTION_SHARE, v))
    if buttons:
        foot.append({"type": "actions", "elements": buttons})
    question = reply.confirmation
    if interactive and question is not None:
        foot.append({"type": "actions", "elements": confirm_buttons(question, reply)})
    menus = [a for a in reply.actions if a.group] if interactive else []
    if menus:
        foot.append({"type": "actions", "elements": _menus(menus)})
    buttons_only = tuple(a for a in reply.actions if not a.group)
    if interactive and buttons_only:
        run, room = [], RUN_BUTTONS_BUDGET
        for i, action in enumerate(buttons_only[:MAX_ACTION_ELEMENTS]):
            button = _button(action.label, f"{ACTION_RUN_PREFIX}{i}", run_value(action.command))
            room -= block_chars(button)
            if room < 0:
                break
            run.append(button)
        if run:
            foot.append({"type": "actions", "elements": run})
    where = []
    if command:
        where.append(code(shown_command(command), 300))
    if reply.host:
        where.append("on " + code(reply.host, 300))
    if reply.engine_version:
        where.append("Docker Engine " + clip_escaped(reply.engine_version, 60))
    if reply.engine_note:
        where.append(":warning: " + clip_escaped(reply.engine_note, 200))
    if where:
        foot.append(_context(" · ".join(where)))

    budget = MESSAGE_BUDGET - sum(block_chars(b) for b in head + foot) - 100  # 100: the "omitted" note
    free_blocks = MAX_BLOCKS - len(head) - len(foot) - 1  # one spare for an "omitted" note
    # Parts in order of importance get their share first: errors and notices,
    # then the table page, then progress and verbatim output.
    rank = {HostHeading: 0, ErrorPart: 0, Notice: 1, Table: 2, Progress: 3, Preformatted: 4}
    order = sorted(range(len(reply.parts)), key=lambda i: (rank.get(type(reply.parts[i]), 5), i))
    rendered: dict[int, list[dict]] = {}
    omitted = 0
    for i in order:
        part = reply.parts[i]
        if part is table and nat is not None:
            blocks = [nat.block(page, _caption(reply, command, nat, page))]
        else:
            part_layout = layout if part is table else (TableLayout(part) if isinstance(part, Table) else None)
            part_page = page if part is table else 0
            blocks = _part_blocks(part, budget, free_blocks, part_layout, part_page)
        if blocks is None:
            continue
        size = sum(block_chars(b) for b in blocks)
        if part is table and nat is not None and (size > budget or len(blocks) > free_blocks):
            # what else the message holds (a long menu) leaves the table too little room:
            # the code-block shape, whose page shortens itself to fit
            return fallback
        if not blocks or size > budget or len(blocks) > free_blocks:
            omitted += 1
            continue
        rendered[i] = blocks
        budget -= size
        free_blocks -= len(blocks)
    body = [b for i in range(len(reply.parts)) for b in rendered.get(i, [])]
    if omitted:
        body.append(_context(f"_{omitted} more part{'s' if omitted > 1 else ''} of this reply "
                             "did not fit in a Slack message._"))
    blocks = head + body + foot
    if not blocks:
        blocks = [_section(clip_escaped(reply.summary.strip() or "Done.", MAX_SECTION))]
    if nat is None:
        return {"text": _fallback_text(reply, layout, page), "blocks": blocks}
    # The notification text: the summary, then the page as the CLI prints it.
    summary = _fallback_text(reply, nat, page)
    text = summary + "\n" + nat.cli_text(page, MAX_NATIVE_TEXT - slen(summary) - 1)
    return {"text": text, "blocks": blocks, "fallback": fallback}


def cli_message(text: str) -> dict:
    """A message showing the ``text`` of a native table message this module
    made (its summary line, then the CLI's text in a fence, escaped) as a
    section and code blocks."""
    before, fence, rest = text.partition(FENCE)
    lines = rest.rsplit(FENCE, 1)[0].strip("\n").split("\n") if fence else []
    # It comes back in a click's payload: escaped again from scratch, whatever Slack did to it.
    summary = clip_escaped(_CONTROL.sub(" ", _unescape(before)).strip(), MAX_HEADER)
    blocks = [_section(summary)] if summary else []
    budget = MESSAGE_BUDGET - sum(block_chars(b) for b in blocks)
    blocks += [_section(c) for c in _code_chunks([clip_escaped(_clean(_unescape(ln)), MAX_LINE) for ln in lines],
                                                   budget, MAX_BLOCKS - 1)]
    return {"text": clip(summary or "Dockhand", MAX_FALLBACK), "blocks": blocks or [_section("(empty)")]}


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _menus(actions: list) -> list[dict]:
    """One select menu per action group; an entry whose value would pass
    Slack's 150-character option limit is left out (the command still works typed)."""
    groups: dict[str, list] = {}
    for action in actions:
        groups.setdefault(action.group, []).append(action)
    menus = []
    for n, (group, members) in enumerate(list(groups.items())[:MAX_MENUS]):
        options = []
        for action in members:
            value = run_value(action.command)
            if slen(value) <= MAX_OPTION_VALUE and len(options) < MAX_OPTIONS:
                options.append({"text": {"type": "plain_text", "text": clip(action.label, MAX_OPTION_TEXT) or "?",
                                         "emoji": False}, "value": value})
        if options:
            menus.append({"type": "static_select", "action_id": f"{ACTION_MENU_PREFIX}{n}",
                          "placeholder": {"type": "plain_text", "text": clip(group, MAX_PLACEHOLDER)},
                          "options": options})
    return menus


def confirm_buttons(question: Confirmation, reply: Reply) -> list[dict]:
    """Confirm (danger, with Slack's own confirmation dialog) and Cancel.

    The buttons carry only the operation's opaque id: what will be removed is
    the stored plan, checked again on the server when the click arrives (the
    dialog only guards the click in the Slack client)."""
    confirm = _button("Confirm", ACTION_CONFIRM, question.op, style="danger")
    confirm["confirm"] = {
        "title": {"type": "plain_text", "text": clip(question.question, 100)},
        "text": {"type": "plain_text", "text": clip(
            f"{reply.summary or 'The planned operation.'} On {reply.host or 'the host'}."
            + (" This cannot be undone." if question.verb == "Remove" else ""), 300)},
        "confirm": {"type": "plain_text", "text": clip(question.verb, 30)},
        "deny": {"type": "plain_text", "text": "Keep them" if question.verb == "Remove" else "Not now"},
        "style": "danger",
    }
    return [confirm, _button("Cancel", ACTION_CANCEL, question.op)]


def plain(text: str) -> dict:
    """A one-section message of plain (escaped) text."""
    t = clip_escaped(text, MAX_SECTION)
    return {"text": clip_escaped(text, MAX_FALLBACK), "blocks": [_section(t or " ")]}


__all__ = [
    "render", "plain", "escape", "mention", "code", "clip", "clip_escaped", "slen", "shown_command",
    "page_value", "run_value", "parse_value", "table_fingerprint", "page_count", "block_chars",
    "ACTION_PREV", "ACTION_NEXT", "ACTION_SHARE", "ACTION_RUN_PREFIX", "ACTION_CLI", "TableLayout",
    "NativeTable", "cli_message",
]

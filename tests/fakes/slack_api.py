"""A fake Slack for tests and benchmarks: Web API, response_urls, Socket Mode.

Runs an aiohttp server on 127.0.0.1 (a free port), either in the caller's
event loop (``await fake.start()``) or in a thread of its own
(``fake.start_in_thread()``), and records every call it receives.

* ``POST /api/<method>``: ``auth.test``, ``chat.postMessage``,
  ``chat.update``, ``chat.postEphemeral``, ``apps.connections.open``,
  ``usergroups.users.list`` (members from ``fake.usergroups``); any
  other method answers ``unknown_method``. Tokens are checked (bot token for
  the Web API, app token for ``apps.connections.open``).
* ``POST /response/<id>``: response_urls (``fake.response_url()`` makes one);
  at most five messages each, like Slack.
* ``GET /socket``: the Socket Mode WebSocket that ``apps.connections.open``
  points at; ``await fake.send_envelope(...)`` pushes an envelope and the
  app's acks are recorded as ``Call("socket", "ack", ...)``.

Messages are checked against Slack's limits (:func:`message_problems`): a
message Slack would refuse gets the error Slack would give
(``invalid_blocks``, ``msg_blocks_too_long``) so tests catch it. That
includes the ``data_table`` and ``table`` blocks, to their references
(:func:`table_problems`). ``fake.refuse_block_types = {"data_table"}``
answers ``invalid_blocks`` to any message holding such a block (a workspace
that does not know it yet), so the fallback can be tested.

Rate limits, when asked (``FakeSlack(enforce_rate_limits=True)`` or
``fake.enforce_rate_limits = True``; off by default): calls are counted per
method (and per channel for ``chat.postMessage``) in token buckets
(:data:`SLACK_RATE_LIMITS`, ``fake.rate_limits``), and a call over its budget
is answered as Slack does: HTTP 429, a ``Retry-After`` header (whole
seconds) and ``{"ok": false, "error": "ratelimited"}``. Such a call is
recorded like any other, with ``status`` 429 and ``retry_after``, and also
in ``fake.ratelimited``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from aiohttp import WSMsgType, web

SIGNING_SECRET = "dockhand-test-signing-secret-0123456789"  # what tests configure the app with
BLOCK_TEXT_LIMIT = 12_000  # what chat.postMessage is seen to refuse above (msg_blocks_too_long)


@dataclass
class Call:
    kind: str  # "api" | "response" | "socket"
    name: str  # Web API method, response_url id, or "ack"
    body: dict
    headers: dict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    response: dict = field(default_factory=dict)  # what the fake answered (Web API calls)
    status: int = 200  # the HTTP status of that answer (429: rate limited)
    retry_after: int = 0  # the Retry-After it sent with a 429

    @property
    def text(self) -> str:
        """Every visible text of the message, blocks included, for assertions."""
        return message_text(self.body)


def _texts(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        for key, val in node.items():
            if key == "text" and isinstance(val, str):
                out.append(val)
            elif isinstance(val, (dict, list)):
                out.extend(_texts(val))
    elif isinstance(node, list):
        for item in node:
            out.extend(_texts(item))
    return out


def message_text(body: dict) -> str:
    blocks = body.get("blocks") or []
    return "\n".join([body.get("text") or ""] + _texts(blocks))


def buttons(body: dict) -> list[dict]:
    return [el for b in body.get("blocks") or [] if b.get("type") == "actions" for el in b.get("elements", [])]


def _ulen(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _select_problems(i: int, el: dict) -> list[str]:
    """A static_select as Block Kit documents it: placeholder <= 150, 1-100 options,
    option text <= 75 and value <= 150."""
    problems = []
    placeholder = (el.get("placeholder") or {}).get("text", "")
    if not placeholder or _ulen(placeholder) > 150:
        problems.append(f"invalid_blocks: /blocks/{i} select placeholder length {_ulen(placeholder)}")
    options = el.get("options") or []
    if not 1 <= len(options) <= 100:
        problems.append(f"invalid_blocks: /blocks/{i} select has {len(options)} options (1-100)")
    for opt in options:
        text = (opt.get("text") or {}).get("text", "")
        if not text or _ulen(text) > 75 or _ulen(opt.get("value", "")) > 150 or not opt.get("value"):
            problems.append(f"invalid_blocks: /blocks/{i} select option {text[:20]!r}")
    return problems


# data_table (Block Kit reference, "Data table block"): caption required; page_size 1-100;
# 2-101 rows, the header first; 1-20 columns; every row the same length; header cells not
# rich_text; cells raw_text {text >= 1 char}, raw_number {value: number, text >= 1 char} or
# rich_text; at most 10,000 characters across all cells (of a table, and of a message).
# table ("Table block"): 1-100 rows of at most 20 cells (raw_text or rich_text; raw_number
# too since @slack/types 3.2.0), column_settings at most 20 of {align, is_wrapped} or null.
TABLE_CELL_CHARS = 10_000
_DATA_TABLE_KEYS = {"type", "rows", "block_id", "page_size", "caption", "row_header_column_index"}
_TABLE_KEYS = {"type", "rows", "block_id", "column_settings"}


def _cell_problems(where: str, cell, *, header: bool, kinds: tuple[str, ...]) -> tuple[list[str], int]:
    """(problems, characters) of one table cell."""
    if not isinstance(cell, dict):
        return [f"invalid_blocks: {where} is not an object"], 0
    kind = cell.get("type")
    if kind not in kinds:
        return [f"invalid_blocks: {where} has type {kind!r} (one of {', '.join(kinds)})"], 0
    if kind == "rich_text":
        if header:
            return [f"invalid_blocks: {where} is rich_text in the header row"], 0
        if not isinstance(cell.get("elements"), list) or not cell["elements"]:
            return [f"invalid_blocks: {where} rich_text without elements"], 0
        return [], sum(_ulen(t) for t in _texts(cell["elements"]))
    problems = []
    text = cell.get("text")
    if not isinstance(text, str) or len(text) < 1:
        problems.append(f"invalid_blocks: {where} {kind} needs a text of at least 1 character")
        text = ""
    if kind == "raw_number":
        value = cell.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value in (float("inf"), float("-inf")):
            problems.append(f"invalid_blocks: {where} raw_number needs a numeric value")
    extra = set(cell) - {"type", "text", "value"} if kind == "raw_number" else set(cell) - {"type", "text"}
    if extra:
        problems.append(f"invalid_blocks: {where} has unknown fields {sorted(extra)}")
    return problems, _ulen(text)


def table_problems(i: int, b: dict) -> tuple[list[str], int]:
    """(problems, characters across all cells) of a data_table or table block."""
    kind = b.get("type")
    data = kind == "data_table"
    problems = []
    extra = set(b) - (_DATA_TABLE_KEYS if data else _TABLE_KEYS)
    if extra:
        problems.append(f"invalid_blocks: /blocks/{i} {kind} has unknown fields {sorted(extra)}")
    if len(str(b.get("block_id", ""))) > 255:
        problems.append(f"invalid_blocks: /blocks/{i} block_id too long")
    rows = b.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        return problems + [f"invalid_blocks: /blocks/{i} {kind} rows must be an array of arrays"], 0
    low, high = (2, 101) if data else (1, 100)
    if not low <= len(rows) <= high:
        problems.append(f"invalid_blocks: /blocks/{i} {kind} has {len(rows)} rows ({low}-{high})")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        problems.append(f"invalid_blocks: /blocks/{i} {kind} rows of unequal length {sorted(widths)}")
    if any(not 1 <= w <= 20 for w in widths):
        problems.append(f"invalid_blocks: /blocks/{i} {kind} has rows of {sorted(widths)} cells (1-20)")
    kinds = ("raw_text", "raw_number", "rich_text")
    chars = 0
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            found, n = _cell_problems(f"/blocks/{i}/rows/{r}/{c}", cell, header=data and r == 0, kinds=kinds)
            problems += found
            chars += n
    if chars > TABLE_CELL_CHARS:
        problems.append(f"invalid_blocks: /blocks/{i} {kind} has {chars} characters in its cells (max 10000)")
    if data:
        caption = b.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            problems.append(f"invalid_blocks: /blocks/{i} data_table needs a caption")
        size = b.get("page_size", 5)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 100:
            problems.append(f"invalid_blocks: /blocks/{i} data_table page_size {size!r} (1-100)")
        index = b.get("row_header_column_index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0 or (widths and index >= max(widths)):
            problems.append(f"invalid_blocks: /blocks/{i} data_table row_header_column_index {index!r}")
    else:
        settings = b.get("column_settings", [])
        if not isinstance(settings, list) or len(settings) > 20:
            problems.append(f"invalid_blocks: /blocks/{i} table column_settings (at most 20)")
        else:
            for s in settings:
                if s is None:
                    continue
                if not isinstance(s, dict) or set(s) - {"align", "is_wrapped"} \
                        or s.get("align", "left") not in ("left", "center", "right") \
                        or not isinstance(s.get("is_wrapped", False), bool):
                    problems.append(f"invalid_blocks: /blocks/{i} table column_settings entry")
    return problems, chars


def message_problems(body: dict) -> list[str]:
    """What Slack would refuse in this message (documented Block Kit limits,
    plus the cumulative block text limit chat.postMessage enforces)."""
    problems = []
    blocks = body.get("blocks") or []
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return ["invalid_blocks_format"]
    if not (body.get("text") or blocks):
        problems.append("no_text")
    if _ulen(body.get("text") or "") > 40_000:
        problems.append("msg_too_long")
    if len(blocks) > 50:
        problems.append(f"invalid_blocks: {len(blocks)} blocks (max 50)")
    total = 0
    table_chars = 0
    for i, b in enumerate(blocks):
        kind = b.get("type")
        if kind in ("data_table", "table"):
            found, chars = table_problems(i, b)
            problems += found
            table_chars += chars
        elif kind == "section":
            t = (b.get("text") or {}).get("text", "")
            if not t or _ulen(t) > 3000:
                problems.append(f"invalid_blocks: /blocks/{i}/text is {_ulen(t)} long (1-3000)")
        elif kind == "context":
            els = b.get("elements", [])
            if not els or len(els) > 10:
                problems.append(f"invalid_blocks: /blocks/{i} has {len(els)} context elements")
            for el in els:
                if _ulen(el.get("text", "")) > 3000 or not el.get("text"):
                    problems.append(f"invalid_blocks: /blocks/{i} context text length")
        elif kind == "actions":
            els = b.get("elements", [])
            if not els or len(els) > 25:
                problems.append(f"invalid_blocks: /blocks/{i} has {len(els)} action elements")
            ids = [el.get("action_id") for el in els]
            if len(set(ids)) != len(ids):
                problems.append(f"invalid_blocks: /blocks/{i} repeats an action_id")
            for el in els:
                if el.get("type") == "static_select":
                    problems += _select_problems(i, el)
                    continue
                label = (el.get("text") or {}).get("text", "")
                if not label or _ulen(label) > 75:
                    problems.append(f"invalid_blocks: button label {label[:20]!r} length {_ulen(label)}")
                if _ulen(el.get("value", "")) > 2000:
                    problems.append(f"invalid_blocks: button value length {_ulen(el.get('value', ''))}")
                if len(el.get("action_id", "")) > 255:
                    problems.append("invalid_blocks: action_id too long")
                dialog = el.get("confirm")
                if dialog is not None:
                    for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                        t = (dialog.get(key) or {}).get("text", "")
                        if not t or _ulen(t) > limit:
                            problems.append(f"invalid_blocks: confirm dialog {key} length {_ulen(t)} (1-{limit})")
                    if dialog.get("style") not in (None, "primary", "danger"):
                        problems.append("invalid_blocks: confirm dialog style")
        elif kind not in ("divider", "header", "image", "rich_text"):
            problems.append(f"invalid_blocks: unknown block type {kind!r}")
        total += sum(_ulen(t) for t in _texts(b))
    all_ids = [el.get("action_id") for el in buttons({"blocks": blocks})]
    if len(set(all_ids)) != len(all_ids):
        problems.append("invalid_blocks: action_id repeated in the message")
    if table_chars > TABLE_CELL_CHARS:
        problems.append(f"invalid_blocks: {table_chars} characters across the tables' cells (max 10000 a message)")
    if total > BLOCK_TEXT_LIMIT:
        problems.append(f"msg_blocks_too_long: {total} characters of block text")
    return problems


@dataclass(frozen=True)
class RateRule:
    """One method's limit: ``rate`` calls a second, up to ``burst`` saved up;
    ``per_channel``: counted per channel."""

    rate: float
    burst: float
    per_channel: bool = False


# Slack's documented limits (https://api.slack.com/docs/rate-limits), per app per workspace:
# chat.update is Tier 3, "50+ per minute" with "sporadic bursts"; chat.postMessage "one message
# per second per channel" with "short bursts". Slack does not publish burst sizes: these are
# modest guesses.
SLACK_RATE_LIMITS = {
    "chat.update": RateRule(50 / 60, 10),
    "chat.postMessage": RateRule(1.0, 4, per_channel=True),
    "views.publish": RateRule(100 / 60, 10),  # Tier 4, "100+ per minute"
}


class FakeSlack:
    def __init__(self, *, bot_token: str = "xoxb-test", app_token: str = "xapp-1-test",
                 team_id: str = "T0DOCKHAND", bot_user_id: str = "UDOCKHAND", enforce_rate_limits: bool = False):
        self.bot_token, self.app_token = bot_token, app_token
        self.team_id, self.bot_user_id = team_id, bot_user_id
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) -> latest body
        self.fail_post: dict[str, str] = {}  # channel -> error chat.postMessage answers
        self.api_delay = 0.0  # seconds every Web API call waits (a slow Slack)
        # block types answered invalid_blocks (a workspace that does not know them), on demand
        self.refuse_block_types: set[str] = set()
        self.usergroups: dict[str, list[str]] = {}  # usergroups.users.list: group ID -> user IDs
        self.enforce_rate_limits = enforce_rate_limits  # answer 429 over the limits below
        self.rate_limits: dict[str, RateRule] = dict(SLACK_RATE_LIMITS)  # method -> its limit
        self.ratelimited: list[Call] = []  # every call answered 429
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (method, channel) -> (tokens, at)
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._responses: dict[str, int] = {}
        self._ws: Optional[web.WebSocketResponse] = None
        self._ws_connected: Optional[asyncio.Event] = None
        self._runner: Optional[web.AppRunner] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0

    # --- lifecycle -------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # Slack takes GET too (slack_sdk uses it for some methods)
        app.router.add_post("/response/{rid}", self._response)
        app.router.add_get("/socket", self._socket)
        return app

    async def start(self) -> "FakeSlack":
        self._loop = asyncio.get_running_loop()
        self._ws_connected = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> "FakeSlack":
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def main():
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-slack", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Slack did not start")
        return self

    def stop_thread(self) -> None:
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    # --- addresses -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, rid: str | None = None) -> str:
        return f"{self.url}/response/{rid or uuid.uuid4().hex[:12]}"

    # --- recording -------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def find(self, kind: str | None = None, name: str | None = None,
             where: Callable[[Call], bool] | None = None) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if (kind is None or c.kind == kind) and (name is None or c.name == name)
                and (where is None or where(c))]

    def api_calls(self, method: str | None = None) -> list[Call]:
        return self.find("api", method)

    def responses(self, rid: str | None = None) -> list[Call]:
        return self.find("response", rid)

    def activity(self) -> list[Call]:
        """Everything but auth.test (Bolt calls that once by itself)."""
        return [c for c in self.find() if not (c.kind == "api" and c.name == "auth.test")]

    async def wait_for(self, kind: str | None = None, name: str | None = None,
                       where: Callable[[Call], bool] | None = None, *, count: int = 1,
                       timeout: float = 15.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(kind, name, where)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(c.kind, c.name, c.text[:120]) for c in self.find()]
                raise AssertionError(f"timed out waiting for {count} {kind or ''} {name or ''} call(s); "
                                     f"got {len(found)}; all calls: {seen}")
            await asyncio.sleep(0.01)

    # --- handlers ----------------------------------------------------------------

    @staticmethod
    async def _read_body(request: web.Request) -> dict:
        if request.method == "GET":
            return dict(request.query)
        raw = await request.read()
        ctype = request.headers.get("Content-Type", "")
        if "json" in ctype:
            return json.loads(raw or b"{}")
        body = dict(urllib.parse.parse_qsl(raw.decode()))
        for key in ("blocks", "attachments", "metadata", "view"):
            if isinstance(body.get(key), str):
                with contextlib.suppress(ValueError):
                    body[key] = json.loads(body[key])
        return body

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await self._read_body(request)
        headers = dict(request.headers)
        token = headers.get("Authorization", "").removeprefix("Bearer ").strip() or body.get("token", "")
        call = Call("api", method, body, headers)
        self._record(call)
        wait = self._over_limit(method, body) if self.enforce_rate_limits else None
        if wait is not None:
            call.status, call.retry_after = 429, max(1, math.ceil(wait))
            call.response = {"ok": False, "error": "ratelimited"}
            with self._lock:
                self.ratelimited.append(call)
            return web.json_response(call.response, status=429, headers={"Retry-After": str(call.retry_after)})
        if self.api_delay:
            await asyncio.sleep(self.api_delay)
        call.response = self._answer(method, body, token)
        return web.json_response(call.response)

    def _over_limit(self, method: str, body: dict) -> Optional[float]:
        """None when the call is within its method's budget (and spends it),
        else the seconds until it would be."""
        rule = self.rate_limits.get(method)
        if rule is None:
            return None
        key = (method, str(body.get("channel", "")) if rule.per_channel else "")
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (rule.burst, now))
            tokens = min(rule.burst, tokens + (now - at) * rule.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rule.rate

    def _answer(self, method: str, body: dict, token: str) -> dict:
        if method == "apps.connections.open":
            if token != self.app_token:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        if token != self.bot_token:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {"ok": True, "url": "https://dockhand-test.slack.com/", "team": "Dockhand Test",
                    "user": "dockhand", "team_id": self.team_id, "user_id": self.bot_user_id,
                    "bot_id": "BDOCKHAND", "is_enterprise_install": False}
        if method in ("views.publish", "views.open", "views.update"):
            from tests.fakes.slack_views import answer as views_answer  # views, their limits, trigger_ids

            return views_answer(self, method, body)
        if method == "usergroups.users.list":
            group = body.get("usergroup", "")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.usergroups[group])}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            channel = body.get("channel", "")
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            problems = self._refused(body) + message_problems(body)
            if problems:
                return {"ok": False, "error": problems[0].split(":")[0], "detail": problems}
            if method == "chat.postMessage":
                if channel in self.fail_post:
                    return {"ok": False, "error": self.fail_post[channel]}
                ts = f"{int(time.time())}.{next(self._ts):06d}"
                with self._lock:
                    self.messages[(channel, ts)] = body
                return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text", "")}}
            if method == "chat.update":
                key = (channel, body.get("ts", ""))
                with self._lock:
                    if key not in self.messages:
                        return {"ok": False, "error": "message_not_found"}
                    self.messages[key] = body
                return {"ok": True, "channel": channel, "ts": key[1], "text": body.get("text", "")}
            return {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}
        return {"ok": False, "error": "unknown_method"}

    def _refused(self, body: dict) -> list[str]:
        """invalid_blocks for a block type this fake was told to refuse."""
        blocks = body.get("blocks") or []
        if not self.refuse_block_types or not isinstance(blocks, list):
            return []
        kinds = sorted({b.get("type") for b in blocks if isinstance(b, dict)} & self.refuse_block_types)
        return [f"invalid_blocks: this workspace does not know {k} blocks" for k in kinds]

    async def _response(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        body = await self._read_body(request)
        self._record(Call("response", rid, body, dict(request.headers)))
        with self._lock:
            self._responses[rid] = self._responses.get(rid, 0) + 1
            used = self._responses[rid]
        if used > 5:
            return web.Response(status=404, text="used_url")
        problems = (self._refused(body) + message_problems(body)
                    if (body.get("blocks") or not body.get("delete_original")) else [])
        if problems:
            return web.Response(status=400, text=problems[0].split(":")[0])
        return web.Response(text="ok")

    # --- Socket Mode ---------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        self._record(Call("socket", "connect", {}, dict(request.headers)))
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "debug_info": {"host": "fake-slack"}, "connection_info": {"app_id": "ADOCKHAND"}})
        self._ws_connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                with contextlib.suppress(ValueError):
                    self._record(Call("socket", "ack", json.loads(msg.data)))
        return ws

    async def wait_socket(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self._ws_connected.wait(), timeout)

    async def send_envelope(self, type_: str, payload: dict, *, retry_attempt: int | None = None) -> str:
        """Push an envelope to the connected app; returns its envelope_id."""
        if self._ws is None or self._ws.closed:
            raise AssertionError("no Socket Mode connection")
        envelope_id = uuid.uuid4().hex
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": type_, "payload": payload,
                                    "accepts_response_payload": type_ != "events_api"}
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = "timeout"
        await self._ws.send_json(envelope)
        return envelope_id


# --- requests as Slack sends them ------------------------------------------------------

def sign(secret: str, body: bytes, timestamp: int | str) -> str:
    """Slack's request signature: v0= HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


_ids = itertools.count(1)


def command_payload(command: str, text: str = "", *, response_url: str, user_id: str = "UALICE",
                    user_name: str = "alice", channel_id: str = "CDOCKHAND", team_id: str = "T0DOCKHAND",
                    trigger_id: str | None = None, channel_name: str = "ops") -> dict:
    return {
        "token": "legacy-verification-token", "team_id": team_id, "team_domain": "dockhand-test",
        "channel_id": channel_id, "channel_name": channel_name, "user_id": user_id, "user_name": user_name,
        "command": command, "text": text, "api_app_id": "ADOCKHAND", "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{next(_ids)}.{int(time.time())}.{uuid.uuid4().hex[:16]}",
    }


def action_payload(action: dict, *, response_url: str, user_id: str = "UALICE", user_name: str = "alice",
                   channel_id: str = "CDOCKHAND", team_id: str = "T0DOCKHAND", is_ephemeral: bool = True,
                   message_ts: str = "1700000000.000100") -> dict:
    """A ``block_actions`` payload for a click on ``action`` (a button dict as rendered)."""
    clicked = {"action_id": action["action_id"], "block_id": action.get("block_id", "b1"),
               "text": action.get("text", {"type": "plain_text", "text": "button"}),
               "value": action.get("value", ""), "type": "button",
               "action_ts": f"{time.time():.6f}{next(_ids)}"}
    if "selected_option" in action:  # a choice in a select menu
        clicked.update(type="static_select", selected_option=action["selected_option"])
        clicked.pop("value")
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": "ADOCKHAND", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id,
                      "is_ephemeral": is_ephemeral},
        "trigger_id": f"{next(_ids)}.{int(time.time())}.{uuid.uuid4().hex[:16]}",
        "team": {"id": team_id, "domain": "dockhand-test"},
        "channel": {"id": channel_id, "name": "ops"},
        "response_url": response_url,
        "actions": [clicked],
    }


def form_body(payload: dict) -> bytes:
    return urllib.parse.urlencode(payload).encode()


def action_body(payload: dict) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None,
                   signature: str | None = None) -> dict:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature if signature is not None else sign(secret, body, ts)}

"""The fake Slack's views: ``views.publish``, ``views.open``, ``views.update``,
and the signed requests of views (``app_home_opened``, ``view_submission``,
``block_suggestion``, clicks in a view) as Slack sends them.

Views are checked against Slack's documented limits (:func:`view_problems`):
a view Slack would refuse gets the error Slack gives (``invalid_arguments``
with the reasons in ``response_metadata.messages``), so tests catch it:

* a view: ``type`` home or modal; at most 100 blocks; a modal's ``title``
  (required), ``submit`` and ``close`` plain text of at most 24 characters,
  ``submit`` required with an input block; ``callback_id`` at most 255,
  ``private_metadata`` at most 3,000, ``external_id`` at most 255; a home
  view has no title, submit or close; the whole view at most 250 kB;
* blocks: ``block_id`` at most 255 and unique in the view; a section's text
  1–3,000 or 1–10 fields of 1–2,000; a header's plain text at most 150;
  context 1–10 elements; actions 1–25 elements; an input's plain-text label
  1–2,000, hint at most 2,000, one element of an input type; ``action_id``
  at most 255 and unique within its block;
* elements: a button's label 1–75 plain text, value at most 2,000; a select's
  placeholder at most 150; options 1–100 with text 1–75, value 1–150,
  description at most 75; ``min_query_length`` >= 0; a plain-text input's
  ``max_length`` 1–3,000; ``response_url_enabled`` only in a modal's input
  block.

``views.open`` also needs a fresh ``trigger_id``: one the fake issued
(:meth:`Triggers.issue`) less than 3 seconds before, used once
(``expired_trigger_id``, ``exchanged_trigger_id``, ``invalid_trigger_id``).
A ``trigger_id`` in Slack's format that the fake did not issue (the slash
command payloads of ``slack_api.command_payload``) is dated by the seconds
it carries.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack_api import action_body, signed_headers

TRIGGER_TTL = 3.0  # seconds a trigger_id may be exchanged (Slack's documented 3 s)
MAX_VIEW_BYTES = 250_000
_TRIGGER = re.compile(r"(\d+)\.(\d+)\.([0-9a-f]+)")


def _ulen(s: Any) -> int:
    return len(str(s).encode("utf-16-le")) // 2


def _text(obj, where: str, limit: int, problems: list[str], *, plain_only: bool = False, required: bool = True):
    if obj is None:
        if required:
            problems.append(f"{where}: required")
        return
    if not isinstance(obj, dict) or obj.get("type") not in (("plain_text",) if plain_only else ("plain_text", "mrkdwn")):
        problems.append(f"{where}: must be a {'plain_text' if plain_only else 'text'} object")
        return
    t = obj.get("text")
    if not isinstance(t, str) or not t or _ulen(t) > limit:
        problems.append(f"{where}: text length {_ulen(t or '')} (1-{limit})")


def _option_problems(opt, where: str, problems: list[str]) -> None:
    if not isinstance(opt, dict):
        problems.append(f"{where}: not an option")
        return
    _text(opt.get("text"), f"{where}/text", 75, problems, plain_only=True)
    value = opt.get("value")
    if not isinstance(value, str) or not value or _ulen(value) > 150:
        problems.append(f"{where}/value length {_ulen(value or '')} (1-150)")
    if "description" in opt:
        _text(opt["description"], f"{where}/description", 75, problems, plain_only=True)


def options_problems(answer: dict) -> list[str]:
    """What Slack would refuse in a ``block_suggestion`` answer."""
    problems: list[str] = []
    if "options" in answer:
        opts = answer["options"]
        if not isinstance(opts, list) or len(opts) > 100:
            problems.append("options: at most 100")
            return problems
        for i, opt in enumerate(opts):
            _option_problems(opt, f"/options/{i}", problems)
    elif "option_groups" in answer:
        groups = answer["option_groups"]
        if not isinstance(groups, list) or len(groups) > 100:
            problems.append("option_groups: at most 100")
        for g, group in enumerate(groups or []):
            _text(group.get("label"), f"/option_groups/{g}/label", 75, problems, plain_only=True)
            for i, opt in enumerate(group.get("options") or []):
                _option_problems(opt, f"/option_groups/{g}/options/{i}", problems)
    else:
        problems.append("neither options nor option_groups")
    return problems


_INPUT_ELEMENTS = {"plain_text_input", "external_select", "static_select", "conversations_select",
                   "channels_select", "users_select", "multi_static_select", "multi_external_select",
                   "checkboxes", "radio_buttons", "datepicker", "timepicker", "number_input", "email_text_input",
                   "url_text_input"}
_ACTION_ELEMENTS = {"button", "static_select", "external_select", "conversations_select", "channels_select",
                    "users_select", "overflow", "datepicker", "checkboxes", "radio_buttons"}


def _element_problems(el, where: str, problems: list[str], *, in_input: bool, modal: bool) -> None:
    if not isinstance(el, dict):
        problems.append(f"{where}: not an element")
        return
    kind = el.get("type")
    if _ulen(el.get("action_id", "")) > 255:
        problems.append(f"{where}/action_id too long")
    if kind == "button":
        _text(el.get("text"), f"{where}/text", 75, problems, plain_only=True)
        if _ulen(el.get("value", "")) > 2000:
            problems.append(f"{where}/value longer than 2000")
        if el.get("style") not in (None, "primary", "danger"):
            problems.append(f"{where}/style")
    elif kind in ("static_select", "external_select", "conversations_select", "channels_select", "users_select"):
        _text(el.get("placeholder"), f"{where}/placeholder", 150, problems, plain_only=True, required=False)
        if kind == "static_select":
            opts = el.get("options") or []
            if not 1 <= len(opts) <= 100:
                problems.append(f"{where}: {len(opts)} options (1-100)")
            for i, opt in enumerate(opts):
                _option_problems(opt, f"{where}/options/{i}", problems)
            if "initial_option" in el and el["initial_option"] not in opts:
                problems.append(f"{where}/initial_option: must be one of the options")  # Slack refuses it
        if kind == "external_select":
            mql = el.get("min_query_length", 3)
            if not isinstance(mql, int) or isinstance(mql, bool) or mql < 0:
                problems.append(f"{where}/min_query_length")
            if "initial_option" in el:
                _option_problems(el["initial_option"], f"{where}/initial_option", problems)
        if el.get("response_url_enabled") and not (in_input and modal and kind in ("conversations_select",
                                                                                    "channels_select")):
            problems.append(f"{where}/response_url_enabled: only in a modal's input block")
    elif kind == "plain_text_input":
        if not in_input:
            problems.append(f"{where}: plain_text_input only in an input block")
        _text(el.get("placeholder"), f"{where}/placeholder", 150, problems, plain_only=True, required=False)
        ml = el.get("max_length")
        if ml is not None and not (isinstance(ml, int) and 1 <= ml <= 3000):
            problems.append(f"{where}/max_length (1-3000)")
    else:
        allowed = _INPUT_ELEMENTS if in_input else _ACTION_ELEMENTS | {"image"}
        if kind not in allowed:
            problems.append(f"{where}: element type {kind!r}")


def view_problems(view: Any) -> list[str]:
    """What Slack would refuse in this view (documented limits)."""
    if isinstance(view, str):
        try:
            view = json.loads(view)
        except ValueError:
            return ["view: not JSON"]
    if not isinstance(view, dict):
        return ["view: not an object"]
    problems: list[str] = []
    kind = view.get("type")
    if kind not in ("home", "modal"):
        return [f"view/type {kind!r}"]
    modal = kind == "modal"
    if len(json.dumps(view)) > MAX_VIEW_BYTES:
        problems.append("view_too_large")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return problems + ["view/blocks: required"]
    if len(blocks) > 100:
        problems.append(f"view/blocks: {len(blocks)} blocks (max 100)")
    has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if modal:
        _text(view.get("title"), "view/title", 24, problems, plain_only=True)
        _text(view.get("close"), "view/close", 24, problems, plain_only=True, required=False)
        _text(view.get("submit"), "view/submit", 24, problems, plain_only=True, required=has_input)
    else:
        for key in ("title", "submit", "close"):
            if key in view:
                problems.append(f"view/{key}: not allowed in a home view")
    for key, limit in (("callback_id", 255), ("private_metadata", 3000), ("external_id", 255)):
        if _ulen(view.get(key, "")) > limit:
            problems.append(f"view/{key}: longer than {limit}")
    block_ids: list[str] = []
    for i, b in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(b, dict):
            problems.append(f"{where}: not a block")
            continue
        if "block_id" in b:
            if not isinstance(b["block_id"], str) or not b["block_id"] or _ulen(b["block_id"]) > 255:
                problems.append(f"{where}/block_id")
            block_ids.append(b["block_id"])
        t = b.get("type")
        if t == "section":
            if "text" in b:
                _text(b["text"], f"{where}/text", 3000, problems)
            elif "fields" in b:
                fields = b["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    problems.append(f"{where}/fields: 1-10")
                for j, f in enumerate(fields or []):
                    _text(f, f"{where}/fields/{j}", 2000, problems)
            else:
                problems.append(f"{where}: a section needs text or fields")
            if "accessory" in b:
                _element_problems(b["accessory"], f"{where}/accessory", problems, in_input=False, modal=modal)
        elif t == "header":
            _text(b.get("text"), f"{where}/text", 150, problems, plain_only=True)
        elif t == "context":
            els = b.get("elements") or []
            if not 1 <= len(els) <= 10:
                problems.append(f"{where}: {len(els)} context elements (1-10)")
            for j, el in enumerate(els):
                if el.get("type") in ("mrkdwn", "plain_text"):
                    _text(el, f"{where}/elements/{j}", 3000, problems)
        elif t == "actions":
            els = b.get("elements") or []
            if not 1 <= len(els) <= 25:
                problems.append(f"{where}: {len(els)} action elements (1-25)")
            ids = [el.get("action_id") for el in els if isinstance(el, dict) and el.get("action_id")]
            if len(set(ids)) != len(ids):
                problems.append(f"{where}: repeats an action_id")
            for j, el in enumerate(els):
                _element_problems(el, f"{where}/elements/{j}", problems, in_input=False, modal=modal)
        elif t == "input":
            _text(b.get("label"), f"{where}/label", 2000, problems, plain_only=True)
            _text(b.get("hint"), f"{where}/hint", 2000, problems, plain_only=True, required=False)
            el = b.get("element")
            if not isinstance(el, dict) or el.get("type") not in _INPUT_ELEMENTS:
                problems.append(f"{where}/element: an input element is required")
            else:
                _element_problems(el, f"{where}/element", problems, in_input=True, modal=modal)
        elif t not in ("divider", "image", "rich_text"):
            problems.append(f"{where}: block type {t!r} is not allowed in a view")
    if len(set(block_ids)) != len(block_ids):
        problems.append("view: a block_id is repeated")
    return problems


def view_text(view: dict) -> str:
    """Every visible text of a view, for assertions."""
    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, val in node.items():
                if key == "text" and isinstance(val, str):
                    out.append(val)
                elif isinstance(val, (dict, list)):
                    walk(val)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(view.get("blocks") or [])
    return "\n".join(out)


def elements(view: dict) -> list[dict]:
    """The interactive elements of a view (buttons, selects, inputs), with their block_id."""
    found = []
    for b in view.get("blocks") or []:
        for el in (b.get("elements") or []) if b.get("type") == "actions" else \
                ([b["element"]] if b.get("type") == "input" else []):
            found.append(dict(el, block_id=b.get("block_id", "")))
    return found


@dataclass
class Views:
    """What the fake Slack holds for views."""

    home: dict[str, dict] = field(default_factory=dict)  # user -> published home view (as returned)
    open: dict[str, dict] = field(default_factory=dict)  # view id -> opened/updated modal (as returned)
    triggers: dict[str, float] = field(default_factory=dict)  # issued trigger_id -> monotonic time
    used: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def issue(self) -> str:
        trigger = f"{next(self.ids)}.{int(time.time())}.{uuid.uuid4().hex[:16]}"
        with self.lock:
            self.triggers[trigger] = time.monotonic()
        return trigger

    def exchange(self, trigger: str) -> str:
        """"" when ``trigger`` may open a view now (and is used), else Slack's error."""
        with self.lock:
            m = _TRIGGER.fullmatch(trigger or "")
            if not m:
                return "invalid_trigger_id"
            if trigger in self.used:
                return "exchanged_trigger_id"
            issued = self.triggers.get(trigger)
            age = time.monotonic() - issued if issued is not None else time.time() - int(m.group(2)) - 1
            if age > TRIGGER_TTL:
                return "expired_trigger_id"
            self.used.add(trigger)
            return ""

    def stored(self, view: dict, **extra) -> dict:
        out = dict(view)
        out.setdefault("callback_id", "")
        out.setdefault("private_metadata", "")
        out.update(id=extra.pop("id", None) or f"V{uuid.uuid4().hex[:10].upper()}", team_id="T0DOCKHAND",
                   hash=f"{int(time.time())}.{uuid.uuid4().hex[:8]}", state={"values": {}}, app_id="ADOCKHAND",
                   bot_id="BDOCKHAND", **extra)
        out["root_view_id"] = out["id"]
        return out


def views_of(fake) -> Views:
    views = getattr(fake, "views", None)
    if views is None:
        views = fake.views = Views()
    return views


def answer(fake, method: str, body: dict) -> dict:
    """The fake's answer to a views.* call (slack_api.FakeSlack delegates here)."""
    views = views_of(fake)
    view = body.get("view")
    if isinstance(view, str):
        try:
            view = json.loads(view)
        except ValueError:
            view = None
    problems = view_problems(view) if view is not None else ["view: required"]
    if method == "views.publish":
        if not body.get("user_id"):
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": ["user_id"]}}
        if not problems and view.get("type") != "home":
            problems = ["views.publish takes a home view"]
    elif method == "views.open":
        if not problems and view.get("type") != "modal":
            problems = ["views.open takes a modal view"]
    if problems:
        return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
    if method == "views.publish":
        stored = views.stored(view, id=(views.home.get(body["user_id"]) or {}).get("id"))
        with views.lock:
            views.home[body["user_id"]] = stored
        return {"ok": True, "view": stored}
    if method == "views.open":
        error = views.exchange(str(body.get("trigger_id") or ""))
        if error:
            return {"ok": False, "error": error}
        stored = views.stored(view)
        with views.lock:
            views.open[stored["id"]] = stored
        return {"ok": True, "view": stored}
    if method == "views.update":
        view_id = body.get("view_id") or ""
        with views.lock:
            if view_id not in views.open:
                return {"ok": False, "error": "not_found"}
            stored = views.stored(view, id=view_id)
            views.open[view_id] = stored
        return {"ok": True, "view": stored}
    return {"ok": False, "error": "unknown_method"}


# --- requests as Slack sends them ------------------------------------------------------

def _user(user_id: str, user_name: str) -> dict:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": "T0DOCKHAND"}


def event_callback(event: dict) -> dict:
    return {"token": "legacy-verification-token", "team_id": "T0DOCKHAND", "api_app_id": "ADOCKHAND",
            "event": event, "type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": "T0DOCKHAND", "user_id": "UDOCKHAND",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False}


def home_opened(user_id: str, *, tab: str = "home", view: dict | None = None) -> dict:
    event = {"type": "app_home_opened", "user": user_id, "channel": "D0DOCKHAND", "tab": tab,
             "event_ts": f"{time.time():.6f}"}
    if view is not None:
        event["view"] = view
    return event_callback(event)


def state_value(element: dict, value: Any) -> dict:
    """One element's entry in ``view.state.values`` as Slack sends it."""
    kind = element["type"]
    if kind in ("external_select", "static_select"):
        return {"type": kind, "selected_option": value}
    if kind == "conversations_select":
        return {"type": kind, "selected_conversation": value}
    return {"type": kind, "value": value}


def with_state(view: dict, values: dict[str, Any]) -> dict:
    """``view`` (as Slack returned it) with ``values`` (block_id -> value) in its state."""
    state: dict[str, dict] = {}
    for el in elements(view):
        if el["block_id"] in values:
            state[el["block_id"]] = {el["action_id"]: state_value(el, values[el["block_id"]])}
    return dict(view, state={"values": state})


def submission(view: dict, values: dict[str, Any], *, user_id: str, user_name: str, response_url: str) -> dict:
    """A ``view_submission`` payload for ``view`` filled with ``values``; a
    conversations_select with ``response_url_enabled`` gets a response URL."""
    filled = with_state(view, values)
    urls = []
    for el in elements(view):
        if el.get("response_url_enabled") and values.get(el["block_id"]):
            urls.append({"block_id": el["block_id"], "action_id": el["action_id"],
                         "channel_id": values[el["block_id"]], "response_url": response_url})
    return {"type": "view_submission", "team": {"id": "T0DOCKHAND", "domain": "dockhand-test"},
            "user": _user(user_id, user_name), "api_app_id": "ADOCKHAND", "token": "legacy-verification-token",
            "trigger_id": f"{int(time.time())}.{int(time.time())}.{uuid.uuid4().hex[:16]}", "view": filled,
            "response_urls": urls, "is_enterprise_install": False, "enterprise": None}


def suggestion(view: dict, action_id: str, value: str, *, user_id: str, user_name: str,
               values: dict[str, Any] | None = None) -> dict:
    el = next(e for e in elements(view) if e.get("action_id") == action_id)
    return {"type": "block_suggestion", "user": _user(user_id, user_name),
            "container": {"type": "view", "view_id": view.get("id", "")}, "api_app_id": "ADOCKHAND",
            "token": "legacy-verification-token", "action_id": action_id, "block_id": el["block_id"],
            "value": value, "team": {"id": "T0DOCKHAND", "domain": "dockhand-test"},
            "view": with_state(view, values or {}), "is_enterprise_install": False, "enterprise": None}


def shortcut(callback_id: str, *, user_id: str, user_name: str, trigger_id: str, channel_id: str = "",
             channel_name: str = "", response_url: str = "") -> dict:
    """A global shortcut (``shortcut``, from the shortcut menu: no conversation) or,
    with ``channel_id``, a message shortcut (``message_action``) as Slack sends them."""
    base = {"team": {"id": "T0DOCKHAND", "domain": "dockhand-test"}, "user": _user(user_id, user_name),
            "api_app_id": "ADOCKHAND", "token": "legacy-verification-token", "callback_id": callback_id,
            "trigger_id": trigger_id, "action_ts": f"{time.time():.6f}", "is_enterprise_install": False,
            "enterprise": None}
    if not channel_id:
        return dict(base, type="shortcut")
    ts = f"{time.time():.6f}"
    return dict(base, type="message_action", channel={"id": channel_id, "name": channel_name},
                message={"type": "message", "user": "U0SOMEONE", "ts": ts, "text": "deploying app:1.2"},
                message_ts=ts, response_url=response_url)


def view_click(view: dict, element: dict, *, user_id: str, user_name: str, trigger_id: str,
               selected_option: dict | None = None) -> dict:
    """A ``block_actions`` payload for a click in a view (Home tab or modal)."""
    action = {"action_id": element["action_id"], "block_id": element.get("block_id", "b1"),
              "type": element["type"], "action_ts": f"{time.time():.6f}"}
    if element["type"] == "button":
        action.update(text=element["text"], value=element.get("value", ""))
    if selected_option is not None:
        action["selected_option"] = selected_option
    return {"type": "block_actions", "user": _user(user_id, user_name), "api_app_id": "ADOCKHAND",
            "token": "legacy-verification-token",
            "container": {"type": "view", "view_id": view.get("id", "")}, "trigger_id": trigger_id,
            "team": {"id": "T0DOCKHAND", "domain": "dockhand-test"}, "view": view, "actions": [action],
            "is_enterprise_install": False, "enterprise": None}


# --- sending them, signed, through a SlackHarness ---------------------------------------

async def send_event(h, payload: dict, *, secret: str | None = None):
    from tests.fakes.slack_harness import SECRET

    body = json.dumps(payload).encode()
    headers = signed_headers(secret or SECRET, body)
    headers["Content-Type"] = "application/json"
    return await h.post(body, headers)


async def send_interactive(h, payload: dict, *, secret: str | None = None):
    """(status, body text, seconds) of a signed interactive payload (form-encoded ``payload=``)."""
    from tests.fakes.slack_harness import SECRET

    body = action_body(payload)
    return await h.post(body, signed_headers(secret or SECRET, body))


async def open_home(h, user_id: str, *, tab: str = "home"):
    return await send_event(h, home_opened(user_id, tab=tab))

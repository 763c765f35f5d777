"""Slack modals: the pull form, a command's answer, suggestions. Pure functions.

Modal limits (Slack's view reference): ``title``, ``submit`` and ``close``
are plain text of at most 24 characters, ``callback_id`` at most 255,
``private_metadata`` at most 3,000, at most 100 blocks; an input block's
label and hint at most 2,000; a select's placeholder at most 150; an option's
text and description at most 75, its value at most 150; at most 100 options
in a ``block_suggestion`` answer.
"""

from __future__ import annotations

import json

from handlers.pullform import Choices, HostChoices

from .blockkit import clip, clip_escaped, code, slen

MAX_TITLE = 24
MAX_VIEW_BLOCKS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100
MAX_PLACEHOLDER = 150
MAX_LABEL = 2000

PULL_CALLBACK = "dockhand.pull.form"
RESULT_CALLBACK = "dockhand.result"
ACTION_REGISTRY = "dockhand.pull.registry"
ACTION_REPOSITORY = "dockhand.pull.repository"
ACTION_TAG = "dockhand.pull.tag"
ACTION_PLATFORM = "dockhand.pull.platform"
ACTION_CHANNEL = "dockhand.pull.channel"
ACTION_HOST = "dockhand.pull.host"
# the shortcuts that open the pull form (manifest.yml): from the shortcut menu, and on a message
# (which names its conversation: the form then starts on that conversation's default host)
SHORTCUT_PULL = "dockhand.pull.open"
SHORTCUT_PULL_HERE = "dockhand.pull.here"
# block_id of each field (response_action "errors" names these)
BLOCKS = {"host": "host", "registry": "registry", "repository": "repository", "tag": "tag", "platform": "platform",
          "channel": "channel"}
# blocks a modal may hold (a message's blocks outside these are shown as text)
MODAL_BLOCK_TYPES = {"section", "context", "divider", "header", "actions", "input", "image", "rich_text"}


def _plain(text: str, limit: int) -> dict:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def _option(label: str, value: str, description: str = "") -> dict:
    option = {"text": {"type": "plain_text", "text": clip(label, MAX_OPTION_TEXT) or "?", "emoji": False},
              "value": value}
    if description:
        option["description"] = {"type": "plain_text", "text": clip(description, MAX_OPTION_TEXT), "emoji": False}
    return option


def pull_form(*, host: str, registry: str, from_conversation: bool = False, hosts: HostChoices | None = None) -> dict:
    """``/pull`` with no argument: a form for ``docker pull [--platform P] REGISTRY/REPOSITORY[:TAG]``.
    ``from_conversation``: opened from a conversation, which the channel menu then starts on.
    ``hosts`` (many hosts): a host menu first, starting on ``hosts.initial``;
    the view's ``private_metadata`` remembers that host for the suggestions."""
    if hosts is not None and hosts.choices:
        intro = ("Pulls an image on the host you choose, as `docker pull @host` does, with the same checks "
                 "as a typed `/pull`. Progress and the result are posted in the conversation you choose.")
    else:
        intro = (f"Pulls an image on {code(host, 200)}, as `docker pull` does, with the same checks as a "
                 "typed `/pull`. Progress and the result are posted in the conversation you choose.")
    conversation = {"type": "conversations_select", "action_id": ACTION_CHANNEL, "response_url_enabled": True,
                    "placeholder": _plain("Where to post the progress", MAX_PLACEHOLDER),
                    "filter": {"include": ["public", "private"], "exclude_bot_users": True}}
    if from_conversation:
        conversation["default_to_current_conversation"] = True
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": intro}}]
    metadata = ""
    if hosts is not None and hosts.choices:
        menu = [_option(c.label, c.value, c.description) for c in hosts.choices[:MAX_OPTIONS]
                if c.value and slen(c.value) <= MAX_OPTION_VALUE]
        element = {"type": "static_select", "action_id": ACTION_HOST, "options": menu,
                   "placeholder": _plain("Choose a host", MAX_PLACEHOLDER)}
        chosen = next((o for o in menu if o["value"] == hosts.initial), None)
        if chosen is not None:
            element["initial_option"] = chosen
            metadata = json.dumps({"host": hosts.initial})
        blocks.append({"type": "input", "block_id": BLOCKS["host"], "dispatch_action": True,
                       "label": _plain("Host", MAX_LABEL),
                       "hint": _plain("Suggestions below come from this host's engine; a group's from its "
                                      "first host. The pull runs on every host of a group.", MAX_LABEL),
                       "element": element})
    blocks += [
        {"type": "input", "block_id": BLOCKS["registry"], "dispatch_action": True,
         "label": _plain("Registry", MAX_LABEL),
         "hint": _plain("Type a HOST[:PORT] to use another registry; docker.io is Docker Hub.", MAX_LABEL),
         "element": {"type": "external_select", "action_id": ACTION_REGISTRY, "min_query_length": 0,
                     "placeholder": _plain("Choose or type a registry", MAX_PLACEHOLDER),
                     "initial_option": _option(registry, registry)}},
        {"type": "input", "block_id": BLOCKS["repository"], "dispatch_action": True,
         "label": _plain("Repository", MAX_LABEL),
         "hint": _plain("Suggestions come from the registry's index or its catalog.", MAX_LABEL),
         "element": {"type": "external_select", "action_id": ACTION_REPOSITORY, "min_query_length": 1,
                     "placeholder": _plain("Type to search, e.g. ubuntu", MAX_PLACEHOLDER)}},
        {"type": "input", "block_id": BLOCKS["tag"], "optional": True, "label": _plain("Tag", MAX_LABEL),
         "hint": _plain("Empty: latest. Suggestions come from the registry's tag list.", MAX_LABEL),
         "element": {"type": "external_select", "action_id": ACTION_TAG, "min_query_length": 0,
                     "placeholder": _plain("latest", MAX_PLACEHOLDER)}},
        {"type": "input", "block_id": BLOCKS["platform"], "optional": True, "label": _plain("Platform", MAX_LABEL),
         "hint": _plain("os[/arch[/variant]], e.g. linux/arm64. Empty: the host's own.", MAX_LABEL),
         "element": {"type": "plain_text_input", "action_id": ACTION_PLATFORM, "max_length": 64,
                     "placeholder": _plain("linux/arm64", MAX_PLACEHOLDER)}},
        {"type": "input", "block_id": BLOCKS["channel"], "label": _plain("Post progress in", MAX_LABEL),
         "element": conversation},
    ]
    view = {"type": "modal", "callback_id": PULL_CALLBACK, "title": _plain("Pull an image", MAX_TITLE),
            "submit": _plain("Pull", MAX_TITLE), "close": _plain("Cancel", MAX_TITLE),
            "blocks": blocks}
    if metadata:
        view["private_metadata"] = metadata
    return view


def form_host(view: dict) -> str:
    """The host the form started on (its ``private_metadata``), "" for none."""
    try:
        meta = json.loads((view or {}).get("private_metadata") or "{}")
    except ValueError:
        return ""
    host = meta.get("host") if isinstance(meta, dict) else ""
    return host if isinstance(host, str) else ""


def options(found: Choices) -> dict:
    """A ``block_suggestion`` answer: at most 100 options within Slack's limits;
    a value longer than 150 characters cannot be offered and is left out."""
    out = []
    for c in found.choices:
        if not c.value or slen(c.value) > MAX_OPTION_VALUE:
            continue
        out.append(_option(c.label, c.value, c.description))
        if len(out) >= MAX_OPTIONS:
            break
    return {"options": out}


MAX_TEXT_BLOCKS = 20  # code blocks of a plain-text answer at most
TEXT_CHUNK = 2900  # characters of one (escaped) code block


def text_blocks(text: str) -> list[dict]:
    """Plain text as escaped code blocks, line by line, within a section's 3,000
    characters each (a longer answer is cut, and says so)."""
    from .blockkit import FENCE, _clean, escape

    blocks, chunk = [], []
    size = 0
    lines = [escape(_clean(line))[:TEXT_CHUNK] for line in (text or "").splitlines()] or [" "]
    for line in lines:
        if chunk and size + len(line) + 1 > TEXT_CHUNK:
            blocks.append(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    blocks.append(chunk)
    out = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{FENCE}\n" + "\n".join(c) + f"\n{FENCE}"}}
           for c in blocks[:MAX_TEXT_BLOCKS]]
    if len(blocks) > MAX_TEXT_BLOCKS:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "_The rest did not fit: type the "
                                                      "command for all of it._"}]})
    return out


def message_view(title: str, message: dict, *, text: str = "", callback_id: str = RESULT_CALLBACK) -> dict:
    """A command's answer (a rendered message) in a modal with a Close button.
    A message with blocks a modal cannot hold is shown as ``text`` instead
    (the answer as the shell prints it), or its plain-text fallback."""
    blocks = list(message.get("blocks") or [])
    if not blocks or any(b.get("type") not in MODAL_BLOCK_TYPES for b in blocks) or len(blocks) > MAX_VIEW_BLOCKS:
        blocks = text_blocks(text) if text else \
            [{"type": "section", "text": {"type": "mrkdwn", "text": clip(message.get("text") or "Done.", 3000)}}]
    return {"type": "modal", "callback_id": callback_id, "title": _plain(title, MAX_TITLE),
            "close": _plain("Close", MAX_TITLE), "blocks": blocks}


def loading_view(title: str, command: str) -> dict:
    return {"type": "modal", "callback_id": RESULT_CALLBACK, "title": _plain(title, MAX_TITLE),
            "close": _plain("Close", MAX_TITLE),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                    "text": f":hourglass_flowing_sand: Running {code(command, 300)}…"}}]}


def text_view(title: str, text: str) -> dict:
    """A modal with one escaped paragraph (a refusal, a notice)."""
    return {"type": "modal", "callback_id": RESULT_CALLBACK, "title": _plain(title, MAX_TITLE),
            "close": _plain("Close", MAX_TITLE),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip_escaped(text, 3000) or " "}}]}

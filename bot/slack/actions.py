"""Button clicks: run a command (help buttons), share in channel, turn a page,
show a table as the CLI prints it.

Button values are made by ``bot.render.blockkit`` (JSON: ``c`` the command
line, ``p`` the page, ``f`` the table's fingerprint); every click re-runs the
command as the person who clicked, so what they see is the engine's state
now and what they may do is checked for them.
"""

from __future__ import annotations

import re

from bot.config import Settings
from bot.render.blockkit import (
    ACTION_CANCEL,
    ACTION_CLI,
    ACTION_CONFIRM,
    ACTION_MENU_PREFIX,
    ACTION_NEXT,
    ACTION_PREV,
    ACTION_RUN_PREFIX,
    ACTION_SHARE,
)
from handlers.context import Services

from . import operations as slack_operations
from .runtime import SlackRuntime, body_key

RUN_ACTIONS = re.compile("^" + re.escape(ACTION_RUN_PREFIX) + r"\d+$")
MENU_ACTIONS = re.compile("^" + re.escape(ACTION_MENU_PREFIX) + r"\d+$")
PAGE_ACTIONS = re.compile("^(" + re.escape(ACTION_PREV) + "|" + re.escape(ACTION_NEXT) + ")$")


async def _who(body: dict, runtime: SlackRuntime):
    user = body.get("user") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    actor = await runtime.actor(user.get("id", ""), user.get("username") or user.get("name", ""), channel,
                                str((body.get("channel") or {}).get("name") or ""))
    return actor, channel


def _key(body: dict, action: dict) -> str:
    user = (body.get("user") or {}).get("id", "")
    ts = action.get("action_ts")
    return f"act:{user}:{action.get('action_id')}:{ts}" if ts else "act:" + body_key(body)


def _click(runtime: SlackRuntime, handle, *, durable: bool = False):
    """A Bolt listener for one kind of button: ack at once, then (once per
    delivery, remembered in the store when ``durable``)
    ``handle(body, action, client, respond)`` inside a runtime job."""

    async def listener(ack, body: dict, action: dict, client, request) -> None:
        await ack()
        respond = runtime.responder(body.get("response_url"))
        async with runtime.job(respond):
            if await runtime.first_delivery(_key(body, action), request.headers, durable=durable):
                await handle(body, action, client, respond)

    return listener


def register(app, services: Services, settings: Settings, *, runtime: SlackRuntime | None = None,
             dispatch=None) -> SlackRuntime:
    runtime = runtime or SlackRuntime(settings, services, dispatch)

    async def run_button(body: dict, action: dict, client, respond) -> None:
        actor, channel = await _who(body, runtime)
        # a button carries its value; a menu (search's "Pull an image…") the chosen option's
        chosen = (action.get("selected_option") or {}).get("value")
        value = await runtime.button_value(chosen or action.get("value", ""), respond)
        if value is not None:
            await runtime.run(value["c"], actor, channel=channel, respond=respond, client=client,
                              from_button=True)

    async def share_button(body: dict, action: dict, client, respond) -> None:
        actor, channel = await _who(body, runtime)
        await runtime.share(action.get("value", ""), actor, channel=channel, respond=respond, client=client)

    async def page_button(body: dict, action: dict, client, respond) -> None:
        actor, _ = await _who(body, runtime)
        ephemeral = bool((body.get("container") or {}).get("is_ephemeral"))
        share = ephemeral and runtime.visibility == "ephemeral"
        await runtime.turn_page(action.get("value", ""), actor, respond=respond, share=share)

    async def cli_button(body: dict, action: dict, client, respond) -> None:
        actor, _ = await _who(body, runtime)
        ephemeral = bool((body.get("container") or {}).get("is_ephemeral"))
        message_text = (body.get("message") or {}).get("text", "")  # a channel message's own text
        await runtime.cli_view(action.get("value", ""), actor, message_text=message_text, respond=respond,
                               share=ephemeral and runtime.visibility == "ephemeral")

    async def confirm_button(body: dict, action: dict, client, respond) -> None:
        await slack_operations.click(runtime, "confirm", body, action, client, respond)

    async def cancel_button(body: dict, action: dict, client, respond) -> None:
        await slack_operations.click(runtime, "cancel", body, action, client, respond)

    # run buttons may carry any command: the clicker's role is checked by dispatch
    app.action(RUN_ACTIONS)(_click(runtime, run_button, durable=True))
    app.action(MENU_ACTIONS)(_click(runtime, run_button, durable=True))
    app.action(ACTION_CONFIRM)(_click(runtime, confirm_button, durable=True))
    app.action(ACTION_CANCEL)(_click(runtime, cancel_button, durable=True))
    app.action(ACTION_SHARE)(_click(runtime, share_button))
    app.action(PAGE_ACTIONS)(_click(runtime, page_button))
    app.action(ACTION_CLI)(_click(runtime, cli_button))
    return runtime

"""Slack's side of operations that change a host: the audit message.

Every mutating operation has ONE message in the channel, updated in place as
it moves on (requested -> confirmed -> running -> done / failed, or
cancelled, expired, superseded, denied, interrupted), and its final record
as a thread reply; an optional audit channel gets a copy of that record.

* A destructive command (rmi, prune) is planned by the handlers; the plan
  goes to the channel with **Confirm** (danger style, with Slack's own
  dialog) and **Cancel**. The buttons carry only the operation's id.
* A click is answered by ``handlers.operations.confirm``/``cancel``, which
  check who clicked (the dialog only guards the Slack client), claim the
  operation once, re-plan and act. Someone who may not confirm is told
  privately, and the refusal is noted in the thread.
* A plan that changed before it ran is superseded (its message says so) and
  its new plan is posted as a new operation message with its own buttons.
  One confirmation over several hosts (``/rmi @all …``) does the same for
  each host whose plan changed: the fleet's message shows every host's
  result, and each changed host's new plan follows as that host's own
  pending operation, confirmed on its own.
* A sweeper expires pending confirmations and says so in their message.

The neutral audit event goes to the local log from the handlers; this
module only renders what the replies say.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING

from bot.render import blockkit
from handlers import operations
from handlers.context import Actor
from handlers.ports import Operation
from handlers.replies import Reply
from handlers.units import human_size

if TYPE_CHECKING:
    from .runtime import SlackRuntime

log = logging.getLogger("dockhand.slack")

SWEEP_INTERVAL = 20.0  # seconds between looks for expired confirmations

_ICONS = {"pending": ":hourglass_flowing_sand:", "running": ":gear:", "done": ":white_check_mark:",
          "failed": ":x:", "cancelled": ":no_entry_sign:", "expired": ":alarm_clock:",
          "superseded": ":arrows_counterclockwise:", "denied": ":no_entry:", "interrupted": ":warning:"}


def _utc(at: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(at))


def header(op: Operation) -> str:
    """The first line of the operation's channel message, for its state."""
    who = blockkit.mention(op.requester)
    what = blockkit.code(blockkit.shown_command(op.command))
    where = blockkit.code(op.host)
    by = blockkit.mention(op.decided_by) if op.decided_by else "someone"
    icon = _ICONS.get(op.state, ":grey_question:")
    result = op.result or {}
    if op.state == "pending":
        approver = "an approver other than the requester" if op.needs_approver else who
        return (f"{icon} {who} asks to run {what} on {where}. Waiting for {approver} to confirm, "
                f"until {_utc(op.expires_at)}.")
    if op.state == "running":
        return f"{icon} {who} asked for {what} on {where}; confirmed by {by}: running…"
    if op.state == "done" and op.kind == "pull-all":
        return (f"{icon} {who} asked for {what} on {where}; confirmed by {by}: done, "
                f"{len(result.get('pulled') or ())} tag(s) pulled.")
    if op.state == "done":
        freed = human_size(int(result.get("freed") or 0))
        return (f"{icon} {who} asked for {what} on {where}; confirmed by {by}: done, "
                f"{len(result.get('deleted') or ())} image(s) deleted, {freed} freed.")
    if op.state == "failed":
        return f"{icon} {who} asked for {what} on {where}; confirmed by {by}: failed."
    if op.state == "cancelled":
        return f"{icon} {who} asked for {what} on {where}: cancelled by {by}. Nothing was removed."
    if op.state == "expired":
        return (f"{icon} {who} asked for {what} on {where}: nobody confirmed before {_utc(op.expires_at)}, "
                "so it expired. Nothing was removed.")
    if op.state == "superseded":
        return (f"{icon} {who} asked for {what} on {where}: the host changed before it ran, so nothing "
                "was removed; a new plan follows.")
    if op.state == "denied":
        reason = blockkit.escape(str(result.get("reason") or "not allowed"))
        return f"{icon} {who} asked to run {what} on {where}: denied ({reason})."
    if op.state == "interrupted":
        return (f"{icon} {who} asked for {what} on {where}; Dockhand stopped while it ran. "
                "Check the host with `/images`.")
    return f"{icon} {what} on {where}: {blockkit.escape(op.state)}"


# what an operation's result may hold, as the record shows it: (key, label, text, limit)
_RECORD_FIELDS = (
    ("reference", "reference", str, 200),
    ("digest", "digest", str, 200),
    ("image_id", "image ID", str, 200),
    ("pulled", "pulled tags", lambda tags: ", ".join(map(str, tags)), 900),
    ("resolved", "resolved", lambda pairs: ", ".join(f"{a} → {str(i)[7:19]}" for a, i in pairs), 900),
    ("untagged", "untagged", lambda refs: ", ".join(map(str, refs)), 900),
    ("deleted", "deleted", lambda ids: ", ".join(str(i)[7:19] for i in ids), 900),
    ("errors", "errors", lambda errors: "; ".join(str(e[-1]) for e in errors), 900),
    ("error", "error", str, 900),
    ("reason", "reason", str, 300),
    ("hosts", "hosts", lambda hosts: ", ".join(f"{h}: {s}" for h, s in hosts.items()), 900),
    ("replanned", "new plans", lambda new: ", ".join(f"{h} → {str(i)[:12]}" for h, i in new.items()), 900),
    ("result", "result", str, 300),
)


def record_text(op: Operation) -> str:
    """The final record, for the thread and the audit channel."""
    result = op.result or {}
    where = f" in <#{op.channel}>" if re.fullmatch(r"[CGD][A-Z0-9]{2,30}", op.channel or "") else ""
    lines = [f"*Record* of operation `{op.id[:12]}`",
             f"• asked by {blockkit.mention(op.requester)} via {blockkit.escape(op.via)}{where}",
             f"• command {blockkit.code(blockkit.shown_command(op.command), 500)} on {blockkit.code(op.host)}",
             f"• state *{blockkit.escape(op.state)}*"]
    if op.decided_by:
        verb = "cancelled" if op.state == "cancelled" else "confirmed"
        lines.append(f"• {verb} by {blockkit.mention(op.decided_by)}")
    for key, label, shown, limit in _RECORD_FIELDS:
        if result.get(key):
            lines.append(f"• {label} {blockkit.code(shown(result[key]), limit)}")
    if "freed" in result:
        lines.append(f"• freed {human_size(int(result.get('freed') or 0))}")
    if "duration" in result:
        lines.append(f"• duration {float(result['duration']):.1f}s")
    return "\n".join(lines)


async def _post(client, channel: str, text: str, *, thread_ts: str = "") -> str:
    from .ratelimit import for_client

    message = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]}
    try:
        kwargs = {"thread_ts": thread_ts} if thread_ts else {}
        resp = await for_client(client).call(
            "chat.postMessage", lambda: client.chat_postMessage(
                channel=channel, text=message["text"][:3000], blocks=message["blocks"],
                unfurl_links=False, unfurl_media=False, **kwargs), channel=channel)
        return resp.get("ts", "")
    except Exception as exc:  # noqa: BLE001 - the record is in the local log whatever Slack says
        log.error("posting an audit record in %s failed: %s", channel, getattr(exc, "response", {}) and
                  exc.response.get("error", "") or type(exc).__name__)
        return ""


async def thread_note(runtime: "SlackRuntime", client, channel: str, ts: str, text: str) -> None:
    """A line in an operation message's thread (text built by the caller, trusted)."""
    await _post(client, channel, text, thread_ts=ts)


async def record_in_thread(runtime: "SlackRuntime", client, channel: str, ts: str, reply: Reply) -> None:
    """The final record in the operation message's thread, and a copy for the audit channel."""
    op = reply.operation
    if op is None:
        return
    text = record_text(op)
    if channel and ts:
        await _post(client, channel, text, thread_ts=ts)
    audit_channel = runtime.settings.audit_channel
    if audit_channel and audit_channel != channel:
        await _post(client, audit_channel, text)


async def _update(runtime: "SlackRuntime", client, op: Operation, message: dict, *, respond=None) -> bool:
    """Update the operation's channel message; else the click's message."""
    from . import fallback
    from .ratelimit import for_client, log_failure

    where = op.message or {}
    if where.get("channel") and where.get("ts"):
        channel, ts = where["channel"], where["ts"]

        def call():
            shown = fallback.preferred(message)  # an interim state is never retried
            return client.chat_update(channel=channel, ts=ts, text=shown["text"], blocks=shown["blocks"])

        if op.state == "running":
            # an interim state: never holds up the removal, and the final state replaces it while it waits
            for_client(client).submit("chat.update", call, channel=channel, key=(channel, ts), interim=True
                                      ).add_done_callback(log_failure(f"updating operation {op.id[:12]}"))
            return True
        try:
            def send(text: str, blocks: list):
                return for_client(client).call("chat.update", lambda: client.chat_update(
                    channel=channel, ts=ts, text=text, blocks=blocks), channel=channel, key=(channel, ts))

            await fallback.send(send, message, where="chat.update")  # a refused table: its code blocks
            return True
        except Exception as exc:  # noqa: BLE001
            log.error("updating the message of operation %s failed: %s", op.id[:12], type(exc).__name__)
    if respond is not None:
        from .posting import send_response

        return await send_response(respond, message, replace_original=True)
    return False


async def _message(runtime: "SlackRuntime", reply: Reply, op: Operation, *, interactive: bool) -> dict:
    return await runtime.render(reply, command=op.command, header=header(op), interactive=interactive)


async def request(runtime: "SlackRuntime", line: str, actor: Actor, *, channel: str, respond, client) -> None:
    """``/rmi …``, ``/docker image prune …``: plan, then post the plan in the channel with Confirm/Cancel."""
    from .posting import ChannelPost, send_response

    reply = await runtime.dispatch(line, actor)
    op = reply.operation
    if reply.confirmation is None:
        if op is not None and op.state == "denied":
            # the refusal is on the record in the channel (unless the channel
            # itself is not one Dockhand works in) and in the audit channel;
            # its detail (which setting grants the role) goes to the person
            denied = Reply(op.command, (), status=reply.status, summary=reply.summary, host=reply.host)
            if (op.result or {}).get("reason") != "channel not allowed":
                await ChannelPost(client, channel, respond).post(
                    await runtime.render(denied, command=op.command, header=header(op), interactive=False))
            await record_in_thread(runtime, client, "", "", reply)
        await send_response(respond, await runtime.render(reply, command=line), response_type="ephemeral")
        return
    await _publish(runtime, reply, channel=channel, respond=respond, client=client)


async def _publish(runtime: "SlackRuntime", reply: Reply, *, channel: str, respond, client,
                   **fallback) -> None:
    """Post a pending operation's plan in the channel and remember where.
    ``fallback``: more arguments for the response_url when the channel refuses it."""
    from .posting import ChannelPost, send_response

    op = reply.operation
    post = ChannelPost(client, channel, respond)
    message = await _message(runtime, reply, op, interactive=True)
    if await post.post(message):
        if post.ts:
            await runtime.services.store.set_message(op.id, {"channel": post.channel, "ts": post.ts})
        return
    await send_response(respond, message, response_type="ephemeral", **fallback)


async def click(runtime: "SlackRuntime", kind: str, body: dict, action: dict, client, respond) -> None:
    """A Confirm or Cancel click on an operation's message."""
    from .posting import send_response

    user = body.get("user") or {}
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id", "")
    actor = await runtime.actor(user.get("id", ""), user.get("username") or user.get("name", ""), channel)
    op_id = str(action.get("value") or "")
    if not (len(op_id) == 32 and all(c in "0123456789abcdef" for c in op_id)):
        await send_response(respond, blockkit.plain("This button is not one of Dockhand's."),
                            response_type="ephemeral", replace_original=False)
        return
    store = runtime.services.store
    op = await store.get(op_id)
    if op is not None and not op.message and not container.get("is_ephemeral") and container.get("message_ts"):
        # the message was posted through a response_url: remember the one clicked
        await store.set_message(op_id, {"channel": channel, "ts": container["message_ts"]})

    async def emit(interim: Reply) -> None:
        if interim.operation is not None:
            fresh = await store.get(op_id) or interim.operation
            await _update(runtime, client, fresh, await _message(runtime, interim, fresh, interactive=False),
                          respond=respond)

    await runtime.gate.turn()
    if kind == "confirm":
        reply = await runtime.core(operations.confirm(op_id, actor, runtime.services, emit), op_id, actor)
    else:
        reply = await runtime.core(operations.cancel(op_id, actor, runtime.services), op_id, actor)
    final = reply.operation
    if reply.meta.get("denied") or reply.meta.get("late") or final is None:
        await send_response(respond, await runtime.render(reply, command=reply.command, interactive=False),
                            response_type="ephemeral", replace_original=False)
        if reply.meta.get("denied") and final is not None and (final.message or {}).get("ts"):
            await thread_note(runtime, client, final.message["channel"], final.message["ts"],
                              f":no_entry: {blockkit.mention(actor.id)} tried to {kind} this operation: "
                              f"{blockkit.escape(reply.summary)}.")
        return
    superseded = reply.meta.get("superseded")
    if superseded is not None:
        old = await store.get(superseded.id) or superseded
        await _update(runtime, client, old, await _message(
            runtime, Reply(old.command, (), host=reply.host), old, interactive=False), respond=respond)
        await _publish(runtime, reply, channel=channel, respond=None, client=client)
        return
    final = await store.get(op_id) or final
    await _update(runtime, client, final, await _message(runtime, reply, final, interactive=False),
                  respond=respond)
    where = final.message or {}
    await record_in_thread(runtime, client, where.get("channel", ""), where.get("ts", ""), reply)
    for fresh in (reply.meta.get("replanned") or {}).values():
        # one confirmation over several hosts, and a host's plan changed in between: its
        # new plan is that host's own pending operation, so it gets what every pending
        # operation gets, a message of its own with Confirm/Cancel (a click on it is
        # checked by that host's rules, its expiry and one claim, like any other)
        await _publish(runtime, fresh, channel=where.get("channel") or channel, respond=respond, client=client,
                       replace_original=False)


async def sweep(runtime: "SlackRuntime", client) -> None:
    """Expire what is due, and say so in each operation's message."""
    for op in await operations.expire_due(runtime.services):
        reply = Reply(op.command, (), host=op.host)
        await _update(runtime, client, op, await _message(runtime, reply, op, interactive=False))
        where = op.message or {}
        await record_in_thread(runtime, client, where.get("channel", ""), where.get("ts", ""),
                               Reply(op.command, (), operation=op))


async def sweep_forever(runtime: "SlackRuntime", client) -> None:
    """The sweeper: at start-up, operations a previous run left running are
    marked interrupted; then expiry every ``runtime.sweep_interval`` seconds."""
    try:
        for op in await operations.recover(runtime.services):
            where = op.message or {}
            await _update(runtime, client, op, await _message(
                runtime, Reply(op.command, (), host=op.host), op, interactive=False))
            await record_in_thread(runtime, client, where.get("channel", ""), where.get("ts", ""),
                                   Reply(op.command, (), operation=op))
    except Exception:  # noqa: BLE001
        log.exception("marking interrupted operations failed")
    while True:
        try:
            await sweep(runtime, client)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep sweeping
            log.exception("expiring confirmations failed")
        await asyncio.sleep(runtime.sweep_interval)

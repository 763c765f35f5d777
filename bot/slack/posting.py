"""Getting a message to Slack: one channel message posted then updated, or a
command's response_url, through the app's rate budget (``ratelimit.py``);
a message Slack refuses is sent again as plain text."""

from __future__ import annotations

import logging

from . import ratelimit

log = logging.getLogger("dockhand.slack")

Message = dict  # {"text": ..., "blocks": [...]} from blockkit.render

# chat.postMessage errors that mean "this bot cannot post in that conversation":
# fall back to the response_url, which works wherever the command was typed.
CANNOT_POST = frozenset({
    "not_in_channel", "channel_not_found", "is_archived", "restricted_action",
    "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "cannot_dm_bot", "team_access_not_granted",
    "ekm_access_denied", "missing_scope",
})
# Errors about the message itself: retry once as plain text.
BAD_MESSAGE = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long"})


# --- posting ------------------------------------------------------------------

def _slack_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    try:
        return str(response["error"])  # SlackApiError
    except Exception:
        return type(exc).__name__


class ChannelPost:
    """One message in a channel that is posted once and then updated.

    Uses ``chat.postMessage``/``chat.update`` through the app's rate budget
    (``bot.slack.ratelimit``): :meth:`update` sends a state that must arrive
    and waits for it, :meth:`push` queues an interim state (progress) and
    returns at once. Where the bot may not post (a private channel it is not
    in, a DM), falls back to the command's ``response_url`` with
    ``response_type=in_channel`` (no interim updates there: a response_url
    takes at most five messages).
    """

    def __init__(self, client, channel: str, respond=None):
        self.client, self.channel, self.respond = client, channel, respond
        self.ts: str = ""
        self.via_response_url = False

    async def post(self, message: Message) -> bool:
        try:
            resp = await self._call("chat.postMessage", message, channel=self.channel,
                                    unfurl_links=False, unfurl_media=False)
        except Exception as exc:
            error = _slack_error(exc)
            if self.respond is None or error not in CANNOT_POST:
                log.error("chat.postMessage to %s failed: %s", self.channel, error)
                return False
            log.info("cannot post in %s (%s): answering through the response_url", self.channel, error)
            self.via_response_url = True
            return await send_response(self.respond, message, response_type="in_channel",
                                       replace_original=False)
        self.ts, self.channel = resp["ts"], resp.get("channel") or self.channel
        return True

    def push(self, message: Message) -> None:
        """An interim state: queued, never waited for; a newer one replaces it
        while it waits, and the final state (:meth:`update`) goes before it."""
        if not self.ts:
            return
        client, channel, ts = self.client, self.channel, self.ts
        ratelimit.for_client(client).submit(
            "chat.update", lambda: client.chat_update(channel=channel, ts=ts, text=message["text"],
                                                      blocks=message["blocks"]),
            channel=channel, key=(channel, ts), interim=True,
        ).add_done_callback(ratelimit.log_failure(f"interim chat.update of {channel}/{ts}"))

    async def update(self, message: Message) -> bool:
        """The message's next state, as soon as the budget allows; True once Slack has it."""
        if self.ts:
            try:
                await self._call("chat.update", message, channel=self.channel, ts=self.ts)
                return True
            except Exception as exc:
                log.error("chat.update of %s/%s failed: %s", self.channel, self.ts, _slack_error(exc))
                return False
        if self.via_response_url:
            return await send_response(self.respond, message, response_type="in_channel",
                                       replace_original=True)
        return False

    async def _call(self, method: str, message: Message, **kwargs):
        """One Web API call in the budget; a message Slack refuses goes again as plain text."""
        fn = getattr(self.client, method.replace(".", "_"))
        budget = ratelimit.for_client(self.client)
        key = (kwargs["channel"], kwargs["ts"]) if "ts" in kwargs else None

        def attempt(text: str, blocks: list):
            return lambda: fn(text=text, blocks=blocks, **kwargs)

        try:
            return await budget.call(method, attempt(message["text"], message["blocks"]),
                                     channel=self.channel, key=key)
        except Exception as exc:
            if _slack_error(exc) not in BAD_MESSAGE:
                raise
            log.error("Slack refused a rendered message (%s); sending its text only", _slack_error(exc))
            return await budget.call(method, attempt(message["text"] or "(no text)", []),
                                     channel=self.channel, key=key)


async def send_response(respond, message: Message, **kwargs) -> bool:
    """Send ``message`` to a response_url; on a refusal retry as plain text."""
    try:
        resp = await respond(text=message["text"], blocks=message["blocks"], **kwargs)
        if resp.status_code == 200:
            return True
        log.error("response_url refused the reply: %s %s; retrying as text", resp.status_code,
                  str(resp.body)[:200])
        resp = await respond(text=message["text"] or "(no text)", **kwargs)
        return resp.status_code == 200
    except Exception as exc:
        log.error("response_url call failed: %s", exc)
        return False

"""Getting a message to Slack: one channel message posted then updated, or a
command's response_url, through the app's rate budget (``ratelimit.py``);
a message Slack refuses goes again at once in a simpler shape: its code-block
fallback, then its text alone (``fallback.py``)."""

from __future__ import annotations

import logging

from . import fallback, ratelimit
from .fallback import slack_error as _slack_error

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

# --- posting ------------------------------------------------------------------

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
        message = fallback.preferred(message)  # never retried: not in a shape Slack just refused
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
        """One Web API call in the budget; a message Slack refuses goes again
        in its simpler shapes (its code-block fallback, then its text)."""
        fn = getattr(self.client, method.replace(".", "_"))
        budget = ratelimit.for_client(self.client)
        key = (kwargs["channel"], kwargs["ts"]) if "ts" in kwargs else None

        def call(text: str, blocks: list):
            return budget.call(method, lambda: fn(text=text, blocks=blocks, **kwargs),
                               channel=self.channel, key=key)

        return await fallback.send(call, message, where=method)


class ResponseRefused(Exception):
    """A response_url answered something else than 200."""

    def __init__(self, status: int, body: str):
        super().__init__(f"{status} {body[:200]}")
        self.status, self.body = status, body
        # Slack answers a refused message with its error code as the body
        self.response = {"error": "invalid_blocks" if status != 200 and _about_message(body) else f"http_{status}"}


# response_url answers about the URL itself, not the message: no simpler shape helps
URL_ERRORS = frozenset({"used_url", "expired_url", "no_service", "no_service_id", "no_team", "no_active_hooks",
                        "invalid_token", "action_prohibited", "channel_not_found", "channel_is_archived"})


def _about_message(body: str) -> bool:
    return (body or "").strip() not in URL_ERRORS


async def send_response(respond, message: Message, **kwargs) -> bool:
    """Send ``message`` to a response_url; on a refusal its code-block
    fallback, then its text alone."""

    async def call(text: str, blocks: list):
        resp = await (respond(text=text, blocks=blocks, **kwargs) if blocks else respond(text=text, **kwargs))
        if resp.status_code != 200:
            log.error("response_url refused the reply: %s %s", resp.status_code, str(resp.body)[:200])
            raise ResponseRefused(resp.status_code, str(resp.body))
        return resp

    try:
        await fallback.send(call, message, where="response_url")
        return True
    except ResponseRefused:
        return False
    except Exception as exc:
        log.error("response_url call failed: %s", exc)
        return False

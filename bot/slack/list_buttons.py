"""The buttons on a list reply in Slack: share it in the channel, turn a
page, and "As the CLI prints it". Each reads the list again for the person
who clicked, through dispatch (which authorises it like a typed command);
mixed into :class:`bot.slack.runtime.SlackRuntime`."""

from __future__ import annotations

import json

from bot.render import blockkit
from handlers.argv import READ
from handlers.context import Actor
from handlers.dispatch import effect_of
from handlers.replies import Reply

from .posting import ChannelPost, Message, send_response


class ListButtons:
    @staticmethod
    async def button_value(value: str, respond, *, read_only: bool = False) -> dict | None:
        """A button's value made by ``blockkit``, or None after telling the person why not."""
        try:
            v = blockkit.parse_value(value)
            if not read_only or effect_of(v["c"]) == READ:
                return v
        except ValueError:
            pass
        await send_response(respond, blockkit.plain("This button is out of date: run the command again."),
                            response_type="ephemeral", replace_original=False)
        return None

    async def _rerun(self, value: str, actor: Actor, respond) -> tuple[dict, Reply] | None:
        """Re-run a read-only button's command for ``actor``; on failure answer
        the person (ephemeral) and return None."""
        v = await self.button_value(value, respond, read_only=True)
        if v is None:
            return None
        reply = await self.dispatch(v["c"], actor)
        if not reply.ok:
            await send_response(respond, await self.render(reply, command=v["c"]), response_type="ephemeral",
                                replace_original=False)
            return None
        return v, reply

    async def share(self, value: str, actor: Actor, *, channel: str, respond, client) -> None:
        rerun = await self._rerun(value, actor, respond)
        if rerun is None:
            return
        v, reply = rerun
        line = v["c"]
        header = f":eyes: {blockkit.mention(actor.id)} shared {blockkit.code(blockkit.shown_command(line))}"
        message = await self.render(reply, page=v["p"], command=line, header=header, interactive=False,
                                    cli=bool(v.get("v")))
        if not await ChannelPost(client, channel, respond).post(message):
            await send_response(respond, blockkit.plain(
                "Dockhand could not post in this conversation. Invite it with /invite @Dockhand "
                "and try again."), response_type="ephemeral", replace_original=False)

    async def _page_again(self, value: str, actor: Actor, respond, *, share: bool, cli: bool | None,
                          since: str) -> Message | None:
        """A list's page read again for ``actor`` (:meth:`_rerun`), rendered with
        a note when the list is not the one the button was made from; None when
        the person was answered otherwise. ``cli`` None: the view the button had."""
        rerun = await self._rerun(value, actor, respond)
        if rerun is None:
            return None
        v, reply = rerun
        changed = bool(v["f"]) and blockkit.table_fingerprint(reply) != v["f"]
        note = f"The list changed since {since}." if changed else ""
        return await self.render(reply, page=v["p"], command=v["c"], note=note, share=share,
                                 cli=bool(v.get("v")) if cli is None else cli)

    async def turn_page(self, value: str, actor: Actor, *, respond, share: bool) -> None:
        message = await self._page_again(value, actor, respond, share=share, cli=None, since="the previous page")
        if message is not None:
            await send_response(respond, message, replace_original=True)

    async def cli_view(self, value: str, actor: Actor, *, message_text: str, respond, share: bool) -> None:
        """"As the CLI prints it": the page of a native table as the CLI's text,
        for the person who clicked (ephemeral, next to the table). A list is
        read again for them (dispatch authorises it, like a page turn); a
        plan (``{"op": …}``) is not re-planned: its message's own text is
        the CLI's text, shown to a person the access policy lets read."""
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("op"), str):
            from handlers import access

            denial = access.authorise(self.services.access(), actor, READ, "viewing a plan")
            if denial is not None:
                await send_response(respond, blockkit.plain(f"{denial.message} {denial.hint}"),
                                    response_type="ephemeral", replace_original=False)
                return
            if not message_text:
                await send_response(respond, blockkit.plain("This message's text is not available: "
                                                            "run the command again."),
                                    response_type="ephemeral", replace_original=False)
                return
            await send_response(respond, blockkit.cli_message(message_text), response_type="ephemeral",
                                replace_original=False)
            return
        message = await self._page_again(value, actor, respond, share=share, cli=True, since="the table was shown")
        if message is not None:
            await send_response(respond, message, response_type="ephemeral", replace_original=False)

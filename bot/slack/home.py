"""Slack's Home tab: the hosts at a glance, refreshed each time it is opened.

* ``app_home_opened`` (Events API; Bolt acks events itself): the person's
  Home tab is published again with ``views.publish``. Publishing goes through
  the app's one rate budget (``bot.slack.ratelimit``, Tier 4) as an *interim*
  keyed by the person: a burst of openings is one publish now and at most one
  more every ``HOME_INTERVAL`` seconds (the newest drawing wins). The view is
  drawn when the tab is opened, before the budget is asked, so a token is
  spent when the call really leaves, as Slack counts it.
* One reading serves everybody for :data:`SUMMARY_TTL` seconds
  (``handlers.home.summary``: three engine calls per host, every host at once,
  each bounded by that host's own timeout), so fifty people opening the tab at
  once cost one reading, and a frozen host costs its timeout, not more.
* Each person sees the hosts where they hold a role, by that host's own roles
  (``handlers.home.for_actor``); someone with no role anywhere sees why.
* Buttons: a command button runs its (read-only) command line as the person
  who clicked, through dispatch (which authorises it like the typed
  command), and shows the answer in a modal opened at once (a trigger_id is
  good for 3 seconds) and filled when the answer is ready; with many hosts,
  each host's "Images on NAME" runs ``docker images -H NAME``; "Pull an
  image…" opens the pull form (``bot.slack.modals``); "Refresh" publishes again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from typing import Optional

from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.render import blockkit
from bot.render import home as home_render
from bot.render import modals as views
from bot.render import text as text_render
from handlers import access
from handlers.argv import READ
from handlers.context import Actor, Services
from handlers.home import Home, for_actor, roles_of, summary

from . import ratelimit
from .runtime import SlackRuntime, body_key, command_kind

log = logging.getLogger("dockhand.slack")

SUMMARY_TTL = 2.0  # seconds one reading of the engine serves every Home tab

RUN_ACTIONS = re.compile("^" + re.escape(home_render.ACTION_HOME_RUN_PREFIX) + r"(?:host)?\d+$")


class HomeTab:
    def __init__(self, runtime: SlackRuntime):
        self.runtime = runtime
        self._home: Optional[tuple[float, Home]] = None
        self._reading: Optional[asyncio.Future] = None
        self.readings = 0  # engine readings made (tests, logs)

    @property
    def services(self) -> Services:
        return self.runtime.services

    async def home(self) -> Home:
        """The summary, read at most once per SUMMARY_TTL for everybody."""
        if self._home is not None and time.monotonic() - self._home[0] < SUMMARY_TTL:
            return self._home[1]
        if self._reading is None or self._reading.done():
            self.readings += 1
            self._reading = asyncio.ensure_future(summary(self.services))
        home = await asyncio.shield(self._reading)
        self._home = (time.monotonic(), home)
        return home

    def no_role(self, actor: Actor) -> str:
        """Why ``actor`` may see nothing here ("" when they may see a host):
        the default host's policy's own words. Many hosts: a role on any host
        is enough to open the tab (each host's section is then its roles')."""
        if any(role >= access.Role.VIEWER for role in roles_of(actor, self.services).values()):
            return ""
        policy = self.services.access()
        anywhere = dataclasses.replace(policy, channels=frozenset())  # the Home tab is no channel
        denial = access.authorise(anywhere, actor, READ, "docker")
        if denial is None:
            return ""
        where = " on any host" if self.services.fleet is not None else ""
        return f"{denial.message.rstrip('.')}{where}. {denial.hint}"

    async def view_for(self, user_id: str) -> dict:
        actor = await self.runtime.actor(user_id, "", "")
        refused = self.no_role(actor)
        if refused:
            return home_render.home_view(Home(hosts=()), no_role=refused)
        return home_render.home_view(for_actor(await self.home(), actor, self.services))

    async def refresh(self, user_id: str, client) -> asyncio.Future:
        """Draw ``user_id``'s Home tab now and publish it when the budget allows
        (coalesced per person: a newer drawing replaces one still waiting).

        The view is drawn before the budget is asked, so the budget's token is
        spent when the call really goes to Slack, as Slack counts it."""
        view = await self.view_for(user_id)

        async def publish():
            return await client.views_publish(user_id=user_id, view=view)

        future = ratelimit.for_client(client).submit("views.publish", publish, key=("home", user_id), interim=True)
        future.add_done_callback(ratelimit.log_failure("views.publish (Home tab)"))
        return future

    async def run_button(self, body: dict, action: dict, client) -> None:
        """A command button: its answer in a modal (opened at once, filled when ready)."""
        trigger = body.get("trigger_id", "")
        label = ((action.get("text") or {}).get("text") or "Dockhand")
        try:
            line = blockkit.parse_value(action.get("value", ""))["c"]
        except ValueError:
            line = ""
        if not line or command_kind(line) != READ:  # a Home button only ever reads
            await client.views_open(trigger_id=trigger, view=views.text_view(
                label, "This button is out of date: open the Home tab again."))
            return
        try:
            opened = await client.views_open(trigger_id=trigger, view=views.loading_view(label, line))
        except SlackApiError as exc:  # e.g. expired_trigger_id: nowhere to answer; the person clicks again
            log.warning("a Home tab button's window did not open: %s", str(exc.response.get("error", "error"))[:60])
            return
        view_id = (opened.get("view") or {}).get("id", "")
        user = body.get("user") or {}
        actor = await self.runtime.actor(user.get("id", ""), user.get("username") or user.get("name", ""), "")
        reply = await self.runtime.dispatch(line, actor)  # authorised there, like the typed command
        # code blocks in a modal: native tables were built and tested for messages only
        message = await self.runtime.render(reply, command=line, interactive=False, native=False)
        await client.views_update(view_id=view_id, view=views.message_view(
            label, message, text=text_render.render(reply)))


def register(app, services: Services, settings: Settings, *, runtime: SlackRuntime) -> HomeTab:
    tab = HomeTab(runtime)
    runtime.home_tab = tab

    async def on_home_opened(event: dict, client) -> None:
        if event.get("tab") != "home" or not event.get("user"):
            return  # the Messages tab: nothing to draw
        async with runtime.job():
            await tab.refresh(str(event["user"]), client)

    def click(handle):
        async def listener(ack, body: dict, action: dict, client, request) -> None:
            await ack()
            async with runtime.job():
                user = (body.get("user") or {}).get("id", "")
                key = f"home:{user}:{action.get('action_id')}:{action.get('action_ts') or body_key(body)}"
                if await runtime.first_delivery(key, request.headers):
                    await handle(body, action, client)

        return listener

    async def run(body, action, client):
        await tab.run_button(body, action, client)

    async def pull(body, action, client):
        user = body.get("user") or {}
        forms = getattr(runtime, "pull_forms", None)
        if forms is not None:
            await forms.open(client, body.get("trigger_id", ""), user_id=user.get("id", ""),
                             user_name=user.get("username") or user.get("name", ""))

    async def refresh(body, action, client):
        await tab.refresh((body.get("user") or {}).get("id", ""), client)

    app.event("app_home_opened")(on_home_opened)
    app.action(RUN_ACTIONS)(click(run))
    app.action(home_render.ACTION_HOME_PULL)(click(pull))
    app.action(home_render.ACTION_HOME_REFRESH)(click(refresh))
    return tab

"""The pull form: ``/pull`` alone, the Home tab's button, or a shortcut (Slack's
shortcut menu, or a message's menu) opens a modal.

* Opening: right after the ack (a ``trigger_id`` is good for 3 seconds), the
  person's role is checked first (``handlers.access``, the one place): someone
  who may not pull is told so in the words a typed ``/pull`` gets, and no
  form opens.
* Suggestions (``block_suggestion`` for the three ``external_select``s):
  answered within Slack's 3 seconds (each lookup at most
  :data:`SUGGEST_TIMEOUT`), at most 100 options within Slack's option limits,
  cached for :data:`CACHE_TTL` seconds per (field, registry, repository,
  text); what an index or registry sends is data (``handlers.pullform``).
* Submission (``view_submission``): the fields become the command line a
  typed ``/pull`` would be (``handlers.pullform.pull_line``: each field
  checked, nothing can add a flag or an argument); a bad field gets
  ``response_action: errors`` on its block in the typed command's words; a
  person who may not pull gets the refusal there too, audited like a typed
  one (the line goes through dispatch); otherwise the modal closes and the
  line runs exactly as a typed ``/pull`` in the chosen conversation
  (``SlackRuntime.run``: announced in the channel, progress, result, record).
* Many hosts: a host menu comes first, listing the hosts and groups the
  person may pull on (each host's roles), starting on the conversation's
  default host; the suggestions come from the chosen host's engine (its
  images, registries, insecure-registry settings) and are cached per host;
  the submitted line names the host (``docker pull @name REF``), so its role
  check, announcement, progress and audit are those of a typed
  ``/pull @name REF``. With one engine the form has no host menu.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict

from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.render import blockkit
from bot.render import modals as views
from handlers import access
from handlers import pullform
from handlers.context import Actor, Services
from handlers.dispatch import hosts_for_line, parse_command
from handlers.errors import DockhandError
from handlers.replies import error_reply

from .posting import send_response
from .runtime import SlackRuntime, body_key

log = logging.getLogger("dockhand.slack")

SUGGEST_TIMEOUT = 2.0  # seconds one suggestion lookup may take (Slack waits 3 s)
ACTOR_TIMEOUT = 1.0  # seconds to learn a person's user groups before a trigger_id expires
CACHE_TTL = 30.0  # seconds a suggestion list is reused
CACHE_SIZE = 512  # suggestion lists kept at most
VIEWS_KEPT = 1000  # forms whose chosen registry/repository are remembered
MAX_QUERY = 255
_CONVERSATION = re.compile(r"[CGD][A-Z0-9]{2,30}")
_PROBE = "docker pull busybox"  # what a form is about, for the access check before it opens


def _selected(values: dict, block: str, action: str) -> str:
    state = ((values or {}).get(block) or {}).get(action) or {}
    option = state.get("selected_option") or {}
    value = option.get("value") if isinstance(option, dict) else None
    if value is None:
        value = state.get("value")
    if value is None:
        value = state.get("selected_conversation")
    return value if isinstance(value, str) else ""


class PullForms:
    def __init__(self, runtime: SlackRuntime):
        self.runtime = runtime
        self.no_search: set[str] = set()  # registries seen without a search endpoint
        self._cache: OrderedDict[tuple, tuple[float, pullform.Choices]] = OrderedDict()
        self._chosen: OrderedDict[str, dict[str, str]] = OrderedDict()  # view id -> field -> value
        self._lookups = asyncio.Semaphore(8)  # registry lookups for suggestions at once

    @property
    def services(self) -> Services:
        return self.runtime.services

    async def _actor(self, user_id: str, user_name: str, channel: str) -> Actor:
        try:
            return await asyncio.wait_for(self.runtime.actor(user_id, user_name, channel), ACTOR_TIMEOUT)
        except asyncio.TimeoutError:
            return Actor(id=user_id, name=user_name, via="slack", channel=channel)

    def denial(self, actor: Actor, line: str = _PROBE):
        """The first refusal of ``line`` for ``actor`` on the host(s) it names (None: allowed)."""
        return next(iter(self.denials(actor, line).values()), None)

    def denials(self, actor: Actor, line: str) -> dict:
        """The refusals of ``line`` for ``actor``, by the host that refuses (each by its own roles)."""
        from .runtime import access_denial

        command = parse_command(line)
        found = {}
        for here in hosts_for_line(line, actor, self.services)[1]:
            denial = access_denial(command, actor, here)
            if denial is not None:
                found[here.label] = denial
        return found

    def host_of(self, view: dict) -> str:
        """The host chosen on a form: its menu, else the one it opened on."""
        return self.chosen(view, "host", views.ACTION_HOST) or views.form_host(view)

    # -- opening

    async def open(self, client, trigger_id: str, *, user_id: str, user_name: str = "", channel: str = "",
                   channel_name: str = "", respond=None) -> None:
        """Open the form for this person, or tell them why not (``respond``:
        the slash command's response_url; without one, a modal says it).
        Many hosts: the form opens when the person may pull on one host at
        least, and starts on the conversation's default host."""
        actor = await self._actor(user_id, user_name, channel)
        hosts = pullform.host_choices(self.services, actor, channel, channel_name)
        denial = self.denial(actor) if not hosts.choices else None
        if denial is not None:
            if respond is not None:
                reply = error_reply("docker pull", denial.message, denial.hint).with_context(
                    self.runtime.host, self.services.engine_version)
                await send_response(respond, await self.runtime.render(reply, command="docker pull"),
                                    response_type="ephemeral")
            else:
                await client.views_open(trigger_id=trigger_id, view=views.text_view(
                    "Pull an image", f"{denial.message} {denial.hint}"))
            return
        view = views.pull_form(host=self.runtime.host, registry=pullform.default_registry(self.services),
                               from_conversation=bool(channel), hosts=hosts)
        try:
            await client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "error"))[:60]
            log.warning("the pull form did not open: %s", error)
            if respond is not None:  # e.g. expired_trigger_id: Slack gives 3 s to open it
                await send_response(respond, blockkit.plain(
                    f"Slack did not open the pull form ({error}). Run /pull again, or type the image: "
                    "/pull NAME[:TAG]."), response_type="ephemeral")

    # -- what was chosen so far

    def remember(self, view_id: str, field: str, value: str) -> None:
        if not view_id:
            return
        chosen = self._chosen.setdefault(view_id, {})
        chosen[field] = value
        self._chosen.move_to_end(view_id)
        while len(self._chosen) > VIEWS_KEPT:
            self._chosen.popitem(last=False)

    def chosen(self, view: dict, field: str, action: str) -> str:
        """A field's value: the view's state as Slack sent it, else what a
        dispatched choice told us."""
        value = _selected(((view or {}).get("state") or {}).get("values") or {}, views.BLOCKS[field], action)
        return value or self._chosen.get((view or {}).get("id", ""), {}).get(field, "")

    # -- suggestions

    async def _cached(self, key: tuple, make) -> pullform.Choices:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_TTL:
            return hit[1]
        async with self._lookups:
            found = await make()
        if not found.note:  # a slow or failing registry is asked again next time
            self._cache[key] = (time.monotonic(), found)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    async def suggest(self, body: dict) -> dict:
        """The options for one ``block_suggestion``: empty for someone without
        a role (on the chosen host, with many hosts), or for an unknown host."""
        user = body.get("user") or {}
        actor = await self._actor(user.get("id", ""), user.get("username") or user.get("name", ""), "")
        view = body.get("view") or {}
        target = self.host_of(view) if self.services.fleet is not None else ""
        mine = pullform.host_choices(self.services, actor, any_channel=True).choices  # the roles: no channel here
        if target and target not in {c.value for c in mine}:
            return {"options": []}  # many hosts: only the hosts the person may pull on suggest anything
        services = pullform.suggestions_from(self.services, target)
        if services is None or services.access().role_of(actor) < access.Role.VIEWER:
            return {"options": []}
        action = body.get("action_id", "")
        query = str(body.get("value") or "")[:MAX_QUERY]
        host = services.label  # suggestions are the host's own: cached per host
        registry = self.chosen(view, "registry", views.ACTION_REGISTRY) or pullform.default_registry(services)
        if action == views.ACTION_REGISTRY:
            known = tuple(login.registry for login in getattr(self.runtime.settings, "registry_logins", ()))
            found = await self._cached(("registry", host, query.lower()), lambda: pullform.registries(
                services, query, known=known, timeout=SUGGEST_TIMEOUT))
        elif action == views.ACTION_REPOSITORY:
            found = await self._cached(("repository", host, registry, query.lower()), lambda: pullform.repositories(
                services, actor, registry, query, no_search=self.no_search, timeout=SUGGEST_TIMEOUT))
        elif action == views.ACTION_TAG:
            repository = self.chosen(view, "repository", views.ACTION_REPOSITORY)
            found = await self._cached(("tag", host, registry, repository, query.lower()), lambda: pullform.tags(
                services, registry, repository, query, timeout=SUGGEST_TIMEOUT))
        else:
            found = pullform.Choices(())
        return views.options(found)

    # -- submission

    async def submit(self, ack, body: dict, view: dict, client, request) -> None:
        values = ((view or {}).get("state") or {}).get("values") or {}
        fields = {"registry": _selected(values, views.BLOCKS["registry"], views.ACTION_REGISTRY),
                  "repository": _selected(values, views.BLOCKS["repository"], views.ACTION_REPOSITORY),
                  "tag": _selected(values, views.BLOCKS["tag"], views.ACTION_TAG),
                  "platform": _selected(values, views.BLOCKS["platform"], views.ACTION_PLATFORM)}
        channel = _selected(values, views.BLOCKS["channel"], views.ACTION_CHANNEL)
        hosts = self.services.fleet
        if hosts is not None:  # many hosts: the line names the chosen one, as a typed `/pull @name` does
            fields["host"] = self.host_of(view)  # the menu's value; else the host it showed when it opened
        line, errors = pullform.pull_line(**fields)
        if hosts is not None and "host" not in errors:
            host = fields["host"]
            if not host:
                errors["host"] = "Choose the host to pull on."
            elif pullform.suggestions_from(self.services, host) is None:
                errors["host"] = blockkit.clip(f"unknown host {host[:60]!r}: {hosts.known()}.", 1000)
        if not _CONVERSATION.fullmatch(channel or ""):
            errors["channel"] = "Choose the conversation where the progress is posted."
        if errors:
            await ack(response_action="errors",
                      errors={views.BLOCKS[k]: blockkit.clip(v, 1000) for k, v in errors.items()})
            return
        user = body.get("user") or {}
        actor = await self._actor(user.get("id", ""), user.get("username") or user.get("name", ""), channel)
        refused = self.denials(actor, line)  # on the host(s) the line names, each by its own roles
        if refused:
            denial = next(iter(refused.values()))
            field = "host" if hosts is not None else "repository"
            where = f"On {', '.join(refused)}: " if hosts is not None and pullform.suggestions_from(
                self.services, fields["host"]) is not None and fields["host"] not in refused else ""
            await ack(response_action="errors", errors={views.BLOCKS[field]: blockkit.clip(
                f"{where}{denial.message} {denial.hint}", 1000)})
            async with self.runtime.job():
                # the refusal is audited like a typed /pull's, on each host that refuses (and
                # nothing is pulled on a group's other hosts: the form was refused as a whole)
                for name in (refused if hosts is not None else ("",)):
                    denied_line = pullform.pull_line(**dict(fields, host=name))[0] if name else line
                    await self.runtime.dispatch(denied_line, actor)
            return
        await ack()  # closes the form; the pull is announced in the channel
        response_url = next((r.get("response_url") for r in body.get("response_urls") or ()
                             if r.get("block_id") == views.BLOCKS["channel"] and r.get("channel_id") == channel), None)
        respond = self.runtime.responder(response_url)
        async with self.runtime.job(respond if response_url else None):
            key = "view:" + ((view or {}).get("id") or body_key(body))
            if not await self.runtime.first_delivery(key, request.headers, durable=True):
                return
            await self.runtime.run(line, actor, channel=channel, respond=respond, client=client)


def register(app, services: Services, settings: Settings, *, runtime: SlackRuntime) -> PullForms:
    forms = PullForms(runtime)
    runtime.pull_forms = forms

    async def on_suggestion(ack, body: dict) -> None:
        try:
            found = await asyncio.wait_for(forms.suggest(body), SUGGEST_TIMEOUT + 0.5)
        except asyncio.TimeoutError:
            found = {"options": []}
        except Exception:  # noqa: BLE001 - a bug: logged, and the menu simply offers nothing
            log.exception("suggestions for %s failed", str(body.get("action_id"))[:60])
            found = {"options": []}
        await ack(**found)

    async def on_choice(ack, body: dict, action: dict) -> None:
        await ack()
        field = {views.ACTION_REGISTRY: "registry", views.ACTION_HOST: "host"}.get(action.get("action_id"),
                                                                                    "repository")
        value = ((action.get("selected_option") or {}).get("value") or "")[:MAX_QUERY]
        forms.remember(((body.get("view") or {}).get("id") or ""), field, value)

    async def on_submit(ack, body: dict, view: dict, client, request) -> None:
        try:
            await forms.submit(ack, body, view, client, request)
        except DockhandError as exc:  # a parse the checks above let through: say it on the form
            with contextlib.suppress(Exception):
                await ack(response_action="errors", errors={views.BLOCKS["repository"]: exc.message[:1000]})

    async def on_shortcut(ack, body: dict, client) -> None:
        """The pull form from Slack's shortcut menu (no conversation: the
        default host first) or from a message's menu (its conversation's
        default host first; a refusal answers in that conversation, privately)."""
        await ack()
        user = body.get("user") or {}
        channel = body.get("channel") or {}
        response_url = body.get("response_url") if body.get("type") == "message_action" else None
        respond = runtime.responder(response_url) if response_url else None
        async with runtime.job(respond):
            await forms.open(client, str(body.get("trigger_id") or ""), user_id=str(user.get("id") or ""),
                             user_name=str(user.get("username") or user.get("name") or ""),
                             channel=str(channel.get("id") or ""), channel_name=str(channel.get("name") or "")[:80],
                             respond=respond)

    app.shortcut(views.SHORTCUT_PULL)(on_shortcut)
    app.shortcut(views.SHORTCUT_PULL_HERE)(on_shortcut)
    for action in (views.ACTION_REGISTRY, views.ACTION_REPOSITORY, views.ACTION_TAG):
        app.options(action)(on_suggestion)
    app.action(views.ACTION_REGISTRY)(on_choice)
    app.action(views.ACTION_REPOSITORY)(on_choice)
    app.action(views.ACTION_HOST)(on_choice)
    app.view(views.PULL_CALLBACK)(on_submit)
    return forms

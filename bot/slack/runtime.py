"""What slash commands and buttons share once Slack has been acked.

Every listener acks first and then hands over to :class:`SlackRuntime`,
which turns the payload into an :class:`~handlers.context.Actor` and a
command line, runs ``handlers.dispatch``, renders the reply with
``bot.render.blockkit`` and gets it to Slack:

* read-only replies: ``respond()`` on the ``response_url``, ephemeral by
  default (``DOCKHAND_REPLY_VISIBILITY``), with a "Share in channel" button;
* ``pull``: one ``chat.postMessage`` in the channel naming the requester,
  then ``chat.update`` with progress and the result, within the app's one
  Slack rate budget (``bot.slack.ratelimit``: progress coalesced, the result
  first);
* anything that goes wrong on our side: a short "internal error, logged as
  <id>" for the person and the traceback in the log, never in Slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from typing import Awaitable, Callable, Optional

from bot.config import Settings
from bot.metrics import Metrics
from bot.render import blockkit

from .list_buttons import ListButtons
from .posting import ChannelPost, Message, send_response
from handlers.argv import READ, WRITE
from handlers.context import Actor, Emit, Services
from handlers.dispatch import Command, effect_of, engine_preflight, hosts_for_line, parse_command
from handlers.fleet import split_target
from handlers import engine_identity
from handlers.engine_identity import engine_note
from handlers.errors import DockhandError
from handlers.replies import Reply, Status, error_reply

log = logging.getLogger("dockhand.slack")

Dispatch = Callable[..., Awaitable[Reply]]

OFFLOAD_WEIGHT = 2000  # render replies bigger than this (cells) in a worker thread
# a command on several hosts still waiting for one after this long: the answers so far are sent
# first (one more response_url message), the whole reply when the slow host answers or times out
EARLY_ANSWERS_AFTER = 1.5
HTTP_TIMEOUT = 15  # seconds for any call to Slack
ACK_GATE_MAX_WAIT = 0.1  # seconds work after an ack may yield to pending acks
DEDUPE_TTL = 600.0  # Slack signs with a 5-minute window; remember twice that


# --- payload -> command line and actor ----------------------------------------

_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'",
                        "\u00a0": " "})
_DASH_FLAG = re.compile(r"(^|\s)[\u2014\u2013](?=[A-Za-z])")


def normalize_text(text: str) -> str:
    """The command text as the person meant it.

    Slack escapes ``&``, ``<`` and ``>`` in command text; desktop clients may
    turn quotes into curly quotes and ``--`` into an em dash (``—limit``).
    """
    text = (text or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    text = text.translate(_SMART)
    return _DASH_FLAG.sub(lambda m: m.group(1) + "--", text).strip()


def command_kind(line: str) -> str:
    """``read`` (safe to re-run and to share), ``write`` (pull) or
    ``destructive`` (rmi, prune): the effect the handlers' own command table
    declares (``handlers.dispatch.effect_of``, the one public parse)."""
    return effect_of(line)


_WRITE_VERB = re.compile(r"^/?(?:docker\s+)?(?:image\s+)?(pull|run)\b\s*", re.I)
# how the channel message of a write command speaks: (icon, while, done, failed)
_WRITE_WORDS = {"pull": (":arrow_down:", "is pulling", "pulled", "could not pull"),
                "run": (":arrow_forward:", "is running", "ran", "could not run")}


def _write_target(line: str) -> tuple[str, str]:
    """("pull" or "run", what follows it) for a write command line."""
    m = _WRITE_VERB.match(line.strip())
    return (m.group(1).lower(), line.strip()[m.end():]) if m else ("", "")


def _pull_target(line: str) -> str:
    verb, target = _write_target(line)
    return target if verb == "pull" else ""


# --- dedupe -------------------------------------------------------------------

class Deduper:
    """Keys seen in the last ``ttl`` seconds (bounded memory)."""

    def __init__(self, ttl: float = DEDUPE_TTL, max_items: int = 100_000, clock=time.monotonic):
        self.ttl, self.max_items, self.clock = ttl, max_items, clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first(self, key: str) -> bool:
        """True the first time ``key`` is seen within the window."""
        now = self.clock()
        while self._seen and (len(self._seen) >= self.max_items
                              or next(iter(self._seen.values())) < now - self.ttl):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def body_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class AckGate:
    """Acks first: work done after an ack yields while other requests still
    wait for theirs.

    The app counts requests it has not answered yet (``arrived`` /
    ``answered``, around Bolt's dispatch). Work after an ack (parsing, the
    engine call, rendering, posting) first awaits :meth:`turn`, which returns
    once every request in flight has its answer, or after ``max_wait``
    seconds at most (so a flood of requests cannot starve the replies).
    """

    def __init__(self, max_wait: float = ACK_GATE_MAX_WAIT):
        self.max_wait = max_wait
        self.unanswered = 0
        self._clear: Optional[asyncio.Event] = None

    def _event(self) -> asyncio.Event:
        if self._clear is None:
            self._clear = asyncio.Event()
            if self.unanswered == 0:
                self._clear.set()
        return self._clear

    def arrived(self) -> None:
        self.unanswered += 1
        self._event().clear()

    def answered(self) -> None:
        self.unanswered = max(0, self.unanswered - 1)
        if self.unanswered == 0:
            self._event().set()

    async def turn(self) -> None:
        if self.unanswered == 0:
            return
        try:
            await asyncio.wait_for(self._event().wait(), self.max_wait)
        except asyncio.TimeoutError:
            pass


def access_denial(command: Command, actor: Actor, services: Services):
    """The access policy's answer for ``command`` (handlers.access decides;
    this only lets a front end ask before announcing an action)."""
    from handlers import access

    return access.authorise(services.access(), actor, command.effect, command.path, command.role)


# --- the runtime ----------------------------------------------------------------

def _incident() -> str:
    return uuid.uuid4().hex[:8]


def internal_error_message(incident: str) -> Message:
    return blockkit.plain(f"Internal error, logged as {incident}. Nothing about it is shown here; "
                          "whoever runs Dockhand can find the details in its log under that id.")


class SlackRuntime(ListButtons):
    def __init__(self, settings: Settings, services: Services, dispatch: Dispatch | None = None,
                 metrics: Metrics | None = None):
        self.settings = settings
        self.services = services
        self.metrics = metrics if metrics is not None else Metrics()
        if dispatch is None:
            from handlers.dispatch import dispatch as real_dispatch
            dispatch = real_dispatch
        self._dispatch = dispatch
        self.seen = Deduper()
        self.gate = AckGate()
        self.directory = None  # GroupDirectory once open() has the Web API client
        from .operations import SWEEP_INTERVAL

        self.sweep_interval = SWEEP_INTERVAL
        self._sweeper: Optional[asyncio.Task] = None
        self._jobs: set[asyncio.Task] = set()
        self.session = None  # one aiohttp session (kept-alive connections to Slack) once open()

    # -- lifecycle

    async def open(self, client=None) -> None:
        """Share one HTTP session among every Slack call (Web API and
        response_urls): connections to Slack are kept alive instead of a new
        TLS handshake per reply. ``client`` is the app's Web API client."""
        import aiohttp

        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
                                                 trace_configs=[self._slack_calls_trace()])
        if client is not None:
            client.session = self.session
            from .directory import GroupDirectory

            # the user groups any host's roles name (many hosts: each host may grant its own)
            fleet = self.services.fleet
            groups = (frozenset().union(*(s.access().groups for s in fleet.targets.values())) if fleet is not None
                      else self.services.access().groups)
            self.directory = GroupDirectory(client, groups)
            self.client = client
            from . import operations as slack_operations

            if self._sweeper is None and self.services.store is not None:
                self._sweeper = asyncio.ensure_future(slack_operations.sweep_forever(self, client))

    def _slack_calls_trace(self):
        """Counts every HTTP call to Slack on the shared session (Web API methods
        and response_url messages, retries included) and its 429s."""
        import aiohttp

        from bot.metrics import slack_method

        base = (self.settings.slack_api_url or "https://slack.com/api/")
        base = base if base.endswith("/") else base + "/"
        trace = aiohttp.TraceConfig()

        async def on_request_end(session, context, params) -> None:
            self.metrics.slack_call(slack_method(str(params.url), base), params.response.status)

        async def on_request_exception(session, context, params) -> None:
            self.metrics.slack_call(slack_method(str(params.url), base), 0)

        trace.on_request_end.append(on_request_end)
        trace.on_request_exception.append(on_request_exception)
        return trace

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sweeper
            self._sweeper = None
        if self.session is not None:
            await self.session.close()
        if self.services.store is not None:
            with contextlib.suppress(Exception):
                await self.services.store.close()

    def responder(self, response_url: str | None):
        """``respond(**message)`` for a response_url, on the shared session."""
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        async def respond(**kwargs):
            if not response_url:
                raise ValueError("no response_url in this payload")
            return await AsyncWebhookClient(response_url, session=self.session, timeout=HTTP_TIMEOUT).send(**kwargs)

        return respond

    # -- plumbing

    @property
    def host(self) -> str:
        return (self.services.host_label or getattr(self.services.engine, "host", "")
                or self.settings.target_label)

    @property
    def visibility(self) -> str:
        return self.settings.reply_visibility

    async def first_delivery(self, key: str, headers: dict | None = None, *, durable: bool = False) -> bool:
        """False for a delivery already handled (a retry, or a replayed request).

        ``durable``: also remembered in the state store, so a delivery of a
        command that changes the host is refused after a restart of the bot
        too, and by every bot process sharing the store."""
        first = self.seen.first(key)
        if first and durable and self.services.store is not None:
            first = await self.services.store.first_delivery(key, now=time.time(), ttl=DEDUPE_TTL)
        if first:
            return True
        retry = (headers or {}).get("x-slack-retry-num") or ["-"]
        log.info("ignored a repeated delivery of %s (X-Slack-Retry-Num: %s)", key[:60], retry[0])
        return False

    async def actor(self, user_id: str, user_name: str, channel: str, channel_name: str = "") -> Actor:
        """The person behind a payload, with the configured user groups they are in."""
        groups = await self.directory.groups_of(user_id) if self.directory is not None else frozenset()
        return Actor(id=user_id, name=user_name, via="slack", channel=channel, groups=groups,
                     channel_name=channel_name[:80])

    @contextlib.asynccontextmanager
    async def job(self, respond=None):
        """Track the running listener (for a clean shutdown) and catch what
        nobody else did: log it, tell the person an incident id."""
        task = asyncio.current_task()
        if task is not None:
            self._jobs.add(task)
        try:
            yield
        except asyncio.CancelledError:
            raise
        except Exception:
            incident = _incident()
            log.exception("internal error %s in the Slack front end", incident)
            if respond is not None:
                with contextlib.suppress(Exception):
                    await send_response(respond, internal_error_message(incident),
                                        response_type="ephemeral", replace_original=False)
        finally:
            if task is not None:
                self._jobs.discard(task)

    async def drain(self, timeout: float) -> None:
        """Let running commands finish for ``timeout`` s, then cancel them."""
        pending = {t for t in self._jobs if not t.done()}
        if not pending:
            return
        log.info("waiting up to %.0fs for %d running command(s)", timeout, len(pending))
        _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    def count(self, name: str, reply: Reply | None) -> None:
        """``dockhand_commands_total``: ``name`` from the command table, the outcome from the reply."""
        if reply is None:
            outcome = "error"
        elif reply.confirmation is not None:
            outcome = "confirm"
        else:
            outcome = {Status.OK: "ok", Status.USAGE: "usage"}.get(reply.status, "failed")
        self.metrics.command(name, outcome)

    async def dispatch(self, line: str, actor: Actor, emit: Emit = None) -> Reply:
        from bot.metrics import command_name

        await self.gate.turn()
        try:
            reply = await self._dispatch(line, actor, self.services, emit)
            if not isinstance(reply, Reply):
                raise TypeError(f"dispatch returned {type(reply).__name__}, not a Reply")
            self.count(command_name(line), reply)
            return reply
        except asyncio.CancelledError:
            raise
        except Exception:
            incident = _incident()
            log.exception("internal error %s while running %r for %s", incident, line, actor.id)
            self.count(command_name(line), None)
            return error_reply(line, f"Internal error, logged as {incident}.",
                               "This is a bug in Dockhand, not in your command: give the id to "
                               "whoever runs Dockhand (the details are in its log).").with_context(
                                   self.host, getattr(self.services, "engine_version", ""),
                                   engine_note(self.services))

    async def core(self, coro, op_id: str, actor: Actor) -> Reply:
        """Await a handlers.operations call; a bug becomes an incident reply."""
        from handlers.dispatch import with_operation_context

        try:
            reply = await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            incident = _incident()
            log.exception("internal error %s on operation %s for %s", incident, op_id[:12], actor.id)
            reply = error_reply("docker", f"Internal error, logged as {incident}.",
                                "Nothing more is known to have happened: check the host with /images.")
        return await with_operation_context(reply, self.services)

    async def render(self, reply: Reply, **kwargs) -> Message:
        """``blockkit.render``, off the event loop for big replies (acks stay fast)."""
        await self.gate.turn()
        if _weight(reply) > OFFLOAD_WEIGHT:
            return await asyncio.to_thread(self._render_now, reply, **kwargs)
        return self._render_now(reply, **kwargs)

    def _render_now(self, reply: Reply, **kwargs) -> Message:
        note = engine_note(self.services)
        # announcements, progress, operation messages: the same engine (many hosts: only the default host's)
        if note and not reply.engine_note and (self.services.fleet is None or reply.host in ("", self.host)):
            reply = dataclasses.replace(reply, engine_note=note)
        kwargs.setdefault("native", self.settings.native_tables)  # lists as data_table blocks
        try:
            return blockkit.render(reply, **kwargs)
        except Exception:
            incident = _incident()
            log.exception("internal error %s rendering the reply to %r", incident, reply.command)
            return internal_error_message(incident)

    # -- flows

    async def run(self, line: str, actor: Actor, *, channel: str, respond, client,
                  from_button: bool = False) -> None:
        """Run one command line and answer it (the slash command and help-button flow)."""
        try:
            command = parse_command(line)  # once: what it is decides the flow
        except DockhandError:
            command = None  # a usage error: dispatch answers it, privately
        kind = command.effect if command is not None else READ
        if command is not None and command.asks_first:
            from . import operations as slack_operations

            await slack_operations.request(self, line, actor, channel=channel, respond=respond, client=client)
            return
        if command is not None and kind == WRITE and _write_target(line)[1] \
                and all(access_denial(command, actor, here) is None
                        for here in hosts_for_line(line, actor, self.services)[1]):
            # announced in the channel only once the command line is known to be
            # valid (for this engine too) and the person may run it (on the host it names)
            refusal = await engine_preflight(command, self.services, actor)
            if refusal is not None:
                await send_response(respond, await self.render(refusal, command=line), response_type="ephemeral")
                return
            await self.run_write(line, actor, channel=channel, respond=respond, client=client)
            return
        extra = {"replace_original": False} if from_button else {}
        share = self.visibility == "ephemeral" and kind == READ
        reply = await self._answer_early(line, actor, respond, extra)
        await send_response(respond, await self.render(reply, command=line, share=share),
                            response_type=self.visibility, **extra)

    async def _answer_early(self, line: str, actor: Actor, respond, extra: dict) -> Reply:
        """Dispatch a read; on several hosts, when one is still awaited after
        EARLY_ANSWERS_AFTER seconds, send the hosts' answers so far at once
        (handlers/fanout.py emits them as they arrive): a frozen host holds
        nobody's answer up. The whole reply follows as usual."""
        latest: list[Reply] = []

        async def emit(interim: Reply) -> None:
            latest[:] = [interim]

        task = asyncio.ensure_future(self.dispatch(line, actor, emit))
        try:
            done, _ = await asyncio.wait({task}, timeout=EARLY_ANSWERS_AFTER)
            if not done and latest:
                await send_response(respond, await self.render(latest[0], command=line, interactive=False),
                                    response_type=self.visibility, **{**extra, "replace_original": False})
            return await task
        finally:
            task.cancel()

    async def run_write(self, line: str, actor: Actor, *, channel: str, respond, client) -> None:
        """A command that adds to the host (pull, run): one message in the
        channel naming who, updated with progress, ending with the result,
        and the operation's record in its thread."""
        verb, target = _write_target(line)
        target = " ".join(split_target(target.split())[0])  # @prod names the host, not the image
        host, on = hosts_for_line(line, actor, self.services)  # the host(s) the line names (or the channel's)
        here = on[0]
        host = host or self.host
        icon, doing, done, failed = _WRITE_WORDS[verb]
        who, what, where = blockkit.mention(actor.id), blockkit.code(target), blockkit.code(host)
        # one pull per image per host: joined only when the line names one host
        pull_key = self._pull_key(target, here.label) if verb == "pull" and len(on) == 1 else None
        note = here.pulls.note(*pull_key) if pull_key else None
        if note and note.get("channel") == channel and note.get("ts"):
            await self._join_pull(line, actor, note, respond=respond, client=client)
            return
        pulling = f"{icon} {who} {doing} {what} on {where}…"
        post = ChannelPost(client, channel, respond)
        first = Reply(command=line, parts=(), summary=f"{doing.split()[-1].capitalize()} {target} on {host}…",
                      host=host)
        # The pull starts at once; the announcement goes when the channel's budget allows,
        # saying which engine it is on (learnt once, bounded: engine_identity.py).
        async def announce() -> bool:
            await engine_identity.learn(here)
            return await post.post(await self.render(first, command=line, header=pulling, interactive=False))

        announced = asyncio.ensure_future(announce())

        async def announcement() -> Optional[ChannelPost]:
            """The channel message, once posted; None when neither the channel
            nor the response_url took it (then the answer is private)."""
            return post if await asyncio.shield(announced) else None

        async def emit(interim: Reply) -> None:
            try:
                if announced.done() and not announced.cancelled() and announced.result() and post.ts:
                    shared = here.pulls.note(*pull_key) if pull_key else None
                    if shared is not None and not shared:
                        shared.update(channel=post.channel, ts=post.ts)  # later requests join this message
                    post.push(await self.render(interim, command=line, header=pulling, interactive=False))
            except Exception:
                log.exception("rendering pull progress failed")

        try:
            reply = await self.dispatch(line, actor, emit)
        except asyncio.CancelledError:
            posted = None
            with contextlib.suppress(Exception, asyncio.CancelledError):
                posted = await announcement()
            if posted is not None:
                stopped = Reply(command=line, parts=(), status=Status.FAILED, host=host,
                                summary=f"Dockhand stopped during the {verb}")
                with contextlib.suppress(Exception):
                    await posted.update(await self.render(
                        stopped, command=line, interactive=False,
                        header=f":warning: Dockhand stopped while {who} was {doing.split()[-1]} "
                               f"{what} on {where}: it may not have finished. Check with `/images`."))
            raise
        icon, outcome = (":white_check_mark:", done) if reply.ok else (":x:", failed)
        message = await self.render(reply, command=line, header=f"{icon} {who} {outcome} {what} on {where}",
                                    interactive=False)
        if await announcement() is None:
            await send_response(respond, message, response_type="ephemeral")
            return
        delivered = await post.update(message)  # ahead of every waiting progress update
        if not delivered and not post.via_response_url:
            # The channel message could not be updated: at least tell the requester.
            await send_response(respond, message, response_type="ephemeral")
        if post.ts and reply.operation is not None:
            from . import operations as slack_operations

            await slack_operations.record_in_thread(self, client, post.channel, post.ts, reply)

    def _pull_key(self, target: str, label: str) -> tuple[str, str, str] | None:
        """(host, repository, tag) as handlers/pull.py keys the pulls in flight."""
        from handlers import refs

        if "--platform" in target:
            return None  # another variant than the host's: its own pull
        try:
            ref = refs.parse_normalized(target.split()[-1] if target.split() else "").with_default_tag()
        except Exception:  # noqa: BLE001 - not a reference: the pull answers with the usage error
            return None
        return label, ref.name, ref.digest or ref.tag

    async def _join_pull(self, line: str, actor: Actor, note: dict, *, respond, client) -> None:
        """The same image is already being pulled here, announced in this
        channel: join that pull and its message instead of a second transfer
        and a second message; the person gets the result privately."""
        from . import operations as slack_operations

        who = blockkit.mention(actor.id)
        await slack_operations.thread_note(
            self, client, note["channel"], note["ts"],
            f":link: {who} asked for the same pull: they share this one (one transfer).")
        reply = await self.dispatch(line, actor)
        await send_response(respond, await self.render(reply, command=line, interactive=False),
                            response_type="ephemeral")
        if reply.operation is not None:
            await slack_operations.record_in_thread(self, client, note["channel"], note["ts"], reply)


def _weight(reply: Reply) -> int:
    """Roughly how much work rendering ``reply`` is (table cells, text)."""
    total = 0
    for part in reply.parts:
        rows = getattr(part, "rows", None)
        if rows is not None:
            total += len(rows) * max(1, len(getattr(part, "columns", ())))
        else:
            total += len(getattr(part, "text", "")) // 20 + len(getattr(part, "layers", ()))
    return total


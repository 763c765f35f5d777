"""The Bolt app and its two runners.

``create_app(settings, services)`` builds an ``AsyncApp`` with every
listener registered. ``serve(settings, services)`` runs it until SIGTERM or
SIGINT:

* HTTP mode (no ``SLACK_APP_TOKEN``): aiohttp on ``HOST:PORT``, Slack posts
  to ``/slack/events``; Bolt verifies every request's signature (401
  otherwise) before any listener runs.
* Socket Mode (``SLACK_APP_TOKEN=xapp-...``): a WebSocket opened by
  ``apps.connections.open``; no public URL needed. ``/healthz``, ``/readyz``
  and ``/metrics`` get a small listener of their own
  (DOCKHAND_STATUS_HOST:DOCKHAND_STATUS_PORT, loopback by default).

In HTTP mode Dockhand runs the aiohttp server itself, behind the front door
of ``bot/slack/front_door.py`` (bounded connections, a deadline to receive
each request, a body size cap, 4xx for malformed requests, a short log),
with ``/healthz``, ``/readyz`` and ``/metrics`` (``bot/health.py``) beside
``/slack/events``.

On a signal it stops taking requests, lets running commands finish (up to
:data:`DRAIN_SECONDS`), then closes the engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import time

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.health import PROBE_TIMEOUT, EngineProbe, Status
from bot.metrics import Metrics
from handlers.context import Services

from . import actions, commands
from .front_door import FrontDoor, GuardedSite, body_of
from .ratelimit import OtherMethodsRateLimitRetryHandler
from .runtime import HTTP_TIMEOUT, AckGate, Dispatch, SlackRuntime

log = logging.getLogger("dockhand.slack")

EVENTS_PATH = "/slack/events"
DRAIN_SECONDS = 20.0
DEFAULT_API_URL = "https://slack.com/api/"


def api_url(settings: Settings) -> str:
    url = settings.slack_api_url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


class DockhandApp(AsyncApp):
    """Bolt's AsyncApp, counting the requests it has not answered yet so that
    work after an ack can let the other acks go first (see ``AckGate``)."""

    ack_gate: AckGate | None = None
    metrics: Metrics | None = None

    async def async_dispatch(self, req):
        started = time.monotonic()
        gate = self.ack_gate
        if gate is not None:
            gate.arrived()
        try:
            return await super().async_dispatch(req)
        finally:
            if gate is not None:
                gate.answered()
            # HTTP mode: the front door times the ack from the request's first byte
            if self.metrics is not None and getattr(req, "mode", "") == "socket_mode":
                self.metrics.ack(time.monotonic() - started)


def build(settings: Settings, services: Services, *, dispatch: Dispatch | None = None,
          metrics: Metrics | None = None) -> tuple[AsyncApp, SlackRuntime]:
    """The app and the runtime its listeners share (``serve`` drains it).

    ``metrics``: the app's registry; by default the engine's, else a new one,
    which the engine then counts into (``bot/wiring.py`` gives the engine
    none: the shell counts nothing). It is ``runtime.metrics``."""
    if metrics is None:
        metrics = getattr(services.engine, "metrics", None) or Metrics()
    fleet = getattr(services, "fleet", None)
    for engine in [s.engine for s in fleet.targets.values()] if fleet is not None else [services.engine]:
        if getattr(engine, "count_into", None) is not None and engine.metrics is None:
            engine.count_into(metrics)  # every host's engine counts into the app's registry
    client = AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=api_url(settings),
        timeout=HTTP_TIMEOUT,
        # 429s: the app's rate budget (bot/slack/ratelimit.py) owns them for chat.postMessage and
        # chat.update (every caller of the method waits out Retry-After, then the call is retried);
        # the SDK's retry on 429 is kept only for the methods the budget does not limit.
        retry_handlers=[AsyncConnectionErrorRetryHandler(), OtherMethodsRateLimitRetryHandler(max_retry_count=2)],
    )
    app = DockhandApp(
        name="dockhand",
        logger=_bolt_logger(),
        signing_secret=settings.slack_signing_secret,
        client=client,
        process_before_response=False,
    )
    runtime = SlackRuntime(settings, services, dispatch, metrics=metrics)
    app.ack_gate = runtime.gate
    app.metrics = metrics
    commands.register(app, services, settings, runtime=runtime)
    actions.register(app, services, settings, runtime=runtime)
    from . import home, modals  # the Home tab and the pull form

    modals.register(app, services, settings, runtime=runtime)
    home.register(app, services, settings, runtime=runtime)
    return app, runtime


class _DropTokenNotice(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN (which it reads from the environment by
    itself) is unused because a client is given: that is the intent here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("dockhand.slack.bolt")
    if not any(isinstance(f, _DropTokenNotice) for f in logger.filters):
        logger.addFilter(_DropTokenNotice())
    return logger


def create_app(settings: Settings, services: Services, *, dispatch: Dispatch | None = None) -> AsyncApp:
    return build(settings, services, dispatch=dispatch)[0]


FRONT_DOOR = web.AppKey("dockhand_front_door", FrontDoor)


def status_of(runtime: SlackRuntime, mode: str) -> Status:
    """``/healthz``, ``/readyz``, ``/metrics`` for this app (``bot/health.py``)."""
    timeout = min(PROBE_TIMEOUT, runtime.settings.engine_timeout)
    # only the label: without one, the host is known by DOCKER_HOST, an address that is not shown here
    label = runtime.settings.host_label or runtime.services.host_label or None
    fleet = runtime.services.fleet
    if fleet is None:
        probe = EngineProbe(runtime.services.engine, metrics=runtime.metrics, timeout=timeout,
                            host=label or "default")
        return Status(probe, runtime.metrics, label, mode=mode)
    # many hosts: each probed on its own, within its own timeout when shorter; the default host's is shared
    hosts = {name: EngineProbe(s.engine, metrics=runtime.metrics, timeout=min(timeout, fleet.timeout(name)),
                               host=name)
             for name, s in fleet.targets.items()}
    return Status(hosts[fleet.default], runtime.metrics, label, mode=mode, hosts=hosts)


def web_app(app: AsyncApp, runtime: SlackRuntime, *, drain: float = DRAIN_SECONDS) -> web.Application:
    """The aiohttp application for HTTP mode: ``POST /slack/events`` (Bolt,
    behind the checks of ``bot/slack/front_door.py``), ``GET /healthz``,
    ``/readyz`` and ``/metrics``. Serve it with :func:`listen`.

    Its start-up opens the shared HTTP session to Slack; its shutdown (after
    the listening socket is closed) lets running commands finish for up to
    ``drain`` seconds, then closes the session.
    """
    settings = runtime.settings
    door = FrontDoor(read_timeout=settings.http_read_timeout, max_connections=settings.http_max_connections,
                     metrics=runtime.metrics)
    events = SlackEvents(app, settings.slack_signing_secret, door, runtime.metrics)
    web_application = door.application([web.post(EVENTS_PATH, events.handle)]
                                       + status_of(runtime, "http").routes())
    web_application[FRONT_DOOR] = door

    async def on_startup(_):
        await runtime.open(app.client)

    async def on_shutdown(_):
        await runtime.drain(drain)

    async def on_cleanup(_):
        await runtime.close()

    web_application.on_startup.append(on_startup)
    web_application.on_shutdown.append(on_shutdown)
    web_application.on_cleanup.append(on_cleanup)
    return web_application


async def listen(runner: web.AppRunner, host: str, port: int) -> GuardedSite:
    """Start serving ``runner``'s application (made by :func:`web_app` or
    :func:`status_app`) on ``host:port`` (port 0: any free port, see
    ``site.bound_port``), through its front door's connection guard."""
    return await runner.app[FRONT_DOOR].listen(runner, host, port)


def status_app(runtime: SlackRuntime) -> web.Application:
    """Socket Mode's own small listener: ``/healthz``, ``/readyz``, ``/metrics``."""
    door = FrontDoor(read_timeout=runtime.settings.http_read_timeout, max_connections=64,
                     metrics=runtime.metrics)
    application = door.application(status_of(runtime, "socket").routes())
    application[FRONT_DOOR] = door
    return application


class SlackEvents:
    """``POST /slack/events``: check what Bolt would choke on, then hand over.

    The front door's middleware has read the body (in time, within the size
    cap). An unauthenticated request that is malformed gets a 4xx and one
    quiet line (or a count in the flood summary), never a traceback: no
    signature or timestamp (401), a timestamp that is not a number (400), a
    body that is not UTF-8 (400), a bad signature or a timestamp more than 5
    minutes off (401). Bolt checks the signature again (it always does)."""

    def __init__(self, app: AsyncApp, signing_secret: str, door: FrontDoor, metrics: Metrics):
        self.app, self.door, self.metrics = app, door, metrics
        self.verifier = SignatureVerifier(signing_secret)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        conn = self.door.guard.of(request)
        started = conn.since if conn is not None else time.monotonic()
        body = body_of(request)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not signature or not timestamp:
            return self.door.refuse(request, 401, "no signature", text="not signed: X-Slack-Signature and "
                                    "X-Slack-Request-Timestamp are required\n")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            return self.door.refuse(request, 400, "bad timestamp header", text="bad X-Slack-Request-Timestamp\n")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self.door.refuse(request, 400, "body not UTF-8", text="the body is not UTF-8\n")
        if not self.verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
            return self.door.refuse(request, 401, "bad signature or stale timestamp", text="invalid signature\n")
        try:
            bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=request.headers)
        except Exception as exc:  # noqa: BLE001 - signed but unreadable: a 400, one line
            return self.door.refuse(request, 400, "unreadable payload", type(exc).__name__,
                                    text="unreadable payload\n")
        response = await to_aiohttp_response(await self.app.async_dispatch(bolt_request))
        self.metrics.ack(time.monotonic() - started)
        return response


# --- running ------------------------------------------------------------------

class StartupError(Exception):
    """A one-line reason why Dockhand cannot start talking to Slack.

    ``status`` follows ``dockhand``'s exit statuses: 2 for a configuration
    Slack refuses, 1 for anything else (port taken, Slack unreachable).
    """

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def serve(settings: Settings, services: Services) -> int:
    """Run the Slack front end until SIGTERM/SIGINT; the process exit status."""
    from bot import logs

    logs.setup(settings)  # unless the process configured its log already (``dockhand`` does)
    try:
        return asyncio.run(_serve(settings, services))
    except StartupError as exc:
        print(f"dockhand: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


async def _serve(settings: Settings, services: Services) -> int:
    if os.environ.get("SLACK_CLIENT_ID") and os.environ.get("SLACK_CLIENT_SECRET"):
        raise StartupError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set, which turns on Bolt's "
                           "multi-workspace OAuth flow; Dockhand is installed in one workspace with "
                           "SLACK_BOT_TOKEN: unset them.", status=2)
    app, runtime = build(settings, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        identity = await _check_token(app.client, settings)
        if settings.socket_mode:
            await _run_socket_mode(app, runtime, settings, stop, identity)
        else:
            await _run_http(app, runtime, settings, stop, identity)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        close = getattr(services.engine, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.exception("closing the engine failed")
    log.info("stopped")
    return 0


async def _check_token(client: AsyncWebClient, settings: Settings) -> str:
    """Fail at start, in one line, when Slack is unreachable or refuses the token."""
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        raise StartupError(f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token "
                           "from your app's 'OAuth & Permissions' page and reinstall the app if needed",
                           status=2)
    except Exception as exc:
        raise StartupError(f"cannot reach the Slack API at {api_url(settings)} "
                           f"({type(exc).__name__}: {exc or 'no detail'})")
    return f"{auth.get('user') or auth.get('user_id')} in {auth.get('team') or auth.get('team_id')}"


async def _listen_on(web_application: web.Application, host: str, port: int, what: str,
                     fix: str) -> web.AppRunner:
    """Serve ``web_application`` on host:port through the guarded front door
    (:func:`listen`); a port that cannot be had is one start-up line."""
    runner = web.AppRunner(web_application, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await listen(runner, host, port)
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {host}:{port}{what} ({exc.strerror or exc}): {fix}")
    return runner


async def _run_http(app: AsyncApp, runtime: SlackRuntime, settings: Settings, stop: asyncio.Event,
                    identity: str) -> None:
    runner = await _listen_on(web_app(app, runtime), settings.http_host, settings.http_port,
                              "", "choose another PORT or HOST")
    log.info("Dockhand (%s) listening on http://%s:%d%s for Slack (health: /healthz, /readyz; "
             "metrics: /metrics); target %s", identity, settings.http_host, settings.http_port, EVENTS_PATH,
             settings.target_label)
    try:
        await stop.wait()
        log.info("stopping: no new requests; finishing running commands (up to %.0fs)", DRAIN_SECONDS)
    finally:
        await runner.cleanup()  # closes the socket, then drains (web_app's on_shutdown)


async def _run_socket_mode(app: AsyncApp, runtime: SlackRuntime, settings: Settings, stop: asyncio.Event,
                           identity: str, *, drain: float = DRAIN_SECONDS) -> None:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    await runtime.open(app.client)
    handler = AsyncSocketModeHandler(app, settings.slack_app_token)
    try:
        # Ask for the WebSocket URL ourselves: a refused app token then stops
        # the start-up with one line instead of an endless reconnect loop.
        response = await app.client.apps_connections_open(app_token=settings.slack_app_token)
        handler.client.wss_uri = response["url"]
    except SlackApiError as exc:
        await handler.close_async()
        await runtime.close()
        error = exc.response.get("error", "error")
        raise StartupError(f"Slack refused SLACK_APP_TOKEN ({error}): create an app-level token with "
                           "the connections:write scope (Basic Information > App-Level Tokens) and "
                           "turn Socket Mode on", status=2)
    except Exception as exc:
        await handler.close_async()
        await runtime.close()
        raise StartupError(f"cannot open a Socket Mode connection ({type(exc).__name__}: {exc})")
    try:
        status = await _start_status_listener(runtime, settings)
    except StartupError:
        await handler.close_async()
        await runtime.close()
        raise
    await handler.connect_async()
    log.info("Dockhand (%s) connected to Slack in Socket Mode; target %s", identity, settings.target_label)
    try:
        await stop.wait()
        log.info("stopping: disconnecting; finishing running commands (up to %.0fs)", drain)
    finally:
        await handler.close_async()
        await runtime.drain(drain)
        await runtime.close()
        if status is not None:
            await status.cleanup()


async def _start_status_listener(runtime: SlackRuntime, settings: Settings) -> web.AppRunner | None:
    """Socket Mode's ``/healthz``, ``/readyz`` and ``/metrics`` on
    DOCKHAND_STATUS_HOST:DOCKHAND_STATUS_PORT (loopback by default; port off: none)."""
    if not settings.status_port:
        return None
    runner = await _listen_on(status_app(runtime), settings.status_host, settings.status_port,
                              " for /healthz and /metrics", "choose another DOCKHAND_STATUS_PORT, or 'off'")
    log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", settings.status_host,
             settings.status_port)
    return runner

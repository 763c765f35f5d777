"""``/healthz``, ``/readyz`` and ``/metrics``: how an SRE sees a running Dockhand.

* ``GET /healthz`` (liveness): 200 as long as the process serves requests,
  whatever the engines do: restarting Dockhand does not bring an engine
  back, and a Dockhand that keeps serving can tell people an engine is down.
  The small JSON body reports the engine::

      {"status": "ok" | "degraded", "host": "<DOCKHAND_HOST_LABEL, or null>",
       "engine": {"reachable": true, "version": "20.10.24", "api_version": "1.41"},
       "uptime_seconds": 12.3}

* ``GET /readyz`` (readiness): the same body; 200 when the engine answered,
  503 when it did not (a load balancer or an alert can key on it).
* ``GET /metrics``: the app's registry in the Prometheus text format;
  ``dockhand_engine_up{host=…}`` is refreshed (through the probes' cache)
  before each scrape is rendered.

Many hosts: every host is probed at once, each within the probe's bound and
its own timeout (the hosts file's ``timeout``, when shorter). ``engine`` is
the default host's; ``hosts`` has every host's answer by name in the
settings' order, ``hosts_answering`` how many answered; ``status`` is
"degraded" when any host does not answer. ``/readyz`` is 503 only when *no*
host answers: readiness says whether this Dockhand can serve, and one host
down must not take the bot that serves the others out of rotation (it is
said in the body and by ``dockhand_engine_up{host=…} == 0``, where an alert
per host belongs). ``dockhand_engine_up`` has one series per host.

The engine probe (``version``) is bounded: it waits at most
:data:`PROBE_TIMEOUT` seconds, its answer is kept :data:`PROBE_TTL` seconds,
and scrapers arriving meanwhile share one probe in flight, so no scraper can
hammer an engine. The body never carries an engine's address or socket
path (only the host's label), nor an error's text: ``error`` is one word.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from handlers.errors import EngineTimeout, EngineUnreachable

PROBE_TIMEOUT = 2.0  # seconds the engine may take to answer the probe
PROBE_TTL = 2.0  # seconds a probe's answer is reused


class EngineProbe:
    """Is the engine reachable, and which version: asked at most once per ``ttl``."""

    def __init__(self, engine, *, timeout: float = PROBE_TIMEOUT, ttl: float = PROBE_TTL,
                 metrics: Metrics | None = None, clock=time.monotonic, host: str = "default"):
        self.engine, self.timeout, self.ttl, self.metrics, self.clock = engine, timeout, ttl, metrics, clock
        self.host = host  # the `host` label of dockhand_engine_up
        self._answer: dict[str, Any] | None = None
        self._at = float("-inf")
        self._inflight: asyncio.Future | None = None
        self.probes = 0  # engine calls made (tests check the cache with it)

    async def check(self) -> dict[str, Any]:
        if self._answer is not None and self.clock() - self._at < self.ttl:
            return self._answer
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._inflight)

    async def _probe(self) -> dict[str, Any]:
        self.probes += 1
        try:
            raw = await asyncio.wait_for(self.engine.version(), self.timeout)
            answer = {"reachable": True, "version": str(raw.get("Version") or ""),
                      "api_version": str(raw.get("ApiVersion") or "")}
        except asyncio.TimeoutError:
            answer = {"reachable": False, "error": "timeout"}
        except EngineTimeout:
            answer = {"reachable": False, "error": "timeout"}
        except EngineUnreachable:
            answer = {"reachable": False, "error": "unreachable"}
        except Exception:  # noqa: BLE001 - any other failure: not reachable, no text (it could name the address)
            answer = {"reachable": False, "error": "error"}
        if self.metrics is not None:
            self.metrics.engine_up.labels(self.host).set(1 if answer["reachable"] else 0)
        self._answer, self._at = answer, self.clock()
        return answer


class Status:
    """The three endpoints for one app."""

    def __init__(self, probe: EngineProbe, metrics: Metrics, label: str | None, *, mode: str = "http",
                 hosts: dict[str, EngineProbe] | None = None):
        self.probe, self.metrics, self.label, self.mode = probe, metrics, label, mode
        self.hosts = hosts  # many hosts: every host's probe by name (the default host's is ``probe``)

    async def body(self) -> dict[str, Any]:
        engine = await self.probe.check()
        body = {"status": "ok" if engine["reachable"] else "degraded", "host": self.label, "mode": self.mode,
                "engine": engine, "uptime_seconds": round(time.time() - self.metrics.started, 1)}
        if self.hosts:
            answers = await asyncio.gather(*(p.check() for p in self.hosts.values()))
            body["hosts"] = dict(zip(self.hosts, answers))
            body["hosts_answering"] = sum(1 for a in answers if a["reachable"])
            body["status"] = "ok" if all(a["reachable"] for a in answers) else "degraded"
        return body

    def _ready(self, body: dict[str, Any]) -> bool:
        if "hosts" in body:
            return any(a["reachable"] for a in body["hosts"].values())
        return body["engine"]["reachable"]

    async def healthz(self, request: web.Request) -> web.Response:
        return _json(200, await self.body())

    async def readyz(self, request: web.Request) -> web.Response:
        body = await self.body()
        return _json(200 if self._ready(body) else 503, body)

    async def metrics_page(self, request: web.Request) -> web.Response:
        # dockhand_engine_up is as fresh as the probes' cache, for every host
        await asyncio.gather(self.probe.check(), *(p.check() for p in (self.hosts or {}).values()))
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.healthz, allow_head=True),
                web.get("/readyz", self.readyz, allow_head=True),
                web.get("/metrics", self.metrics_page)]


def _json(status: int, body: dict) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})

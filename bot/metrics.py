"""Dockhand's Prometheus metrics: one registry per app, and the instruments.

A :class:`Metrics` owns its own ``CollectorRegistry`` (not the library's
global one), so two apps in one process (tests) never share counters. The
places that count call its small methods: the Slack runtime where
``handlers.dispatch`` is called (commands), the HTTP front door (acks,
refused requests, connections), the engine adapter (engine calls, pulls in
flight) and the Slack HTTP session (Web API calls, 429s).

Label values are always bounded: command names come from the handlers'
command table (never the text a person typed), engine calls from the
adapter's operation names, Slack methods from a fixed pattern.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "command_name", "slack_method"]

# seconds; an ack must come well under Slack's 3 s
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# seconds; engine calls go from a millisecond (list) to minutes (a pull)
ENGINE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

OUTCOMES = ("ok", "failed", "usage", "confirm", "error")
_METHOD = re.compile(r"[a-z][A-Za-z]*(?:\.[A-Za-z]+){1,3}")


def command_name(line: str) -> str:
    """The command's name in the command table (``images``, ``image prune``),
    ``help`` for the built-in forms, ``invalid`` for a line that does not
    parse: never the text itself."""
    from handlers.dispatch import parse_command

    try:
        command = parse_command(line)
    except Exception:  # noqa: BLE001 - any line that does not parse
        return "invalid"
    spec = command.spec
    if spec is None:
        return "help"
    return " ".join(spec.path)


def slack_method(url: str, api_url: str) -> str:
    """The Web API method of a request URL (``chat.update``), ``response_url``
    for a message to a response_url, ``other`` for anything else."""
    if api_url and url.startswith(api_url):
        method = url[len(api_url):].split("?", 1)[0].strip("/")
        return method if _METHOD.fullmatch(method) and len(method) <= 64 else "other"
    return "response_url"


class Metrics:
    """The registry and every instrument of one Dockhand app."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.started = time.time()
        self.commands = Counter("dockhand_commands", "Commands run from Slack, by command and outcome "
                                "(ok, failed, usage, confirm: a plan waits for its confirmation, "
                                "error: an internal error).", ("command", "outcome"), registry=r)
        self.ack_seconds = Histogram("dockhand_ack_seconds", "Seconds from a Slack request's arrival to its "
                                     "HTTP answer (the ack).", buckets=ACK_BUCKETS, registry=r)
        self.engine_seconds = Histogram("dockhand_engine_call_seconds", "Seconds an engine call took, by call "
                                        "and outcome (ok, error).", ("call", "outcome"),
                                        buckets=ENGINE_BUCKETS, registry=r)
        self.pulls_in_flight = Gauge("dockhand_pulls_in_flight", "Image pulls transferring now.", registry=r)
        self.slack_calls = Counter("dockhand_slack_api_calls", "HTTP calls to Slack (Web API methods, and "
                                   "response_url messages), by method.", ("method",), registry=r)
        self.slack_ratelimited = Counter("dockhand_slack_api_ratelimited", "Slack answers 429 (rate limited), "
                                         "by method.", ("method",), registry=r)
        self.http_refused = Counter("dockhand_http_refused", "Requests and connections the HTTP front door "
                                    "refused or closed, by reason.", ("reason",), registry=r)
        self.http_connections = Gauge("dockhand_http_connections", "Open connections to the HTTP front door.",
                                      registry=r)
        self.engine_up = Gauge("dockhand_engine_up", "1 when the last health probe reached the host's engine, "
                               "else 0; one series per host (many hosts: by name; one engine: its "
                               "DOCKHAND_HOST_LABEL, else \"default\").", ("host",), registry=r)
        self.uptime = Gauge("dockhand_uptime_seconds", "Seconds since this Dockhand started.", registry=r)
        self.uptime.set_function(lambda: time.time() - self.started)

    # -- what the counting places call

    def command(self, name: str, outcome: str) -> None:
        self.commands.labels(name, outcome if outcome in OUTCOMES else "error").inc()

    def ack(self, seconds: float) -> None:
        self.ack_seconds.observe(seconds)

    def engine_call(self, call: str, seconds: float, ok: bool) -> None:
        self.engine_seconds.labels(call, "ok" if ok else "error").observe(seconds)

    def track_pulls(self, count: Callable[[], int]) -> None:
        """The pulls in flight are read from ``count()`` at every scrape, summed
        over every engine that registered one (one per host)."""
        counts = getattr(self, "_pull_counts", None)
        if counts is None:
            counts = self._pull_counts = []
            self.pulls_in_flight.set_function(lambda: float(sum(c() for c in counts)))
        counts.append(count)

    def slack_call(self, method: str, status: int) -> None:
        self.slack_calls.labels(method).inc()
        if status == 429:
            self.slack_ratelimited.labels(method).inc()

    def refused(self, reason: str, n: int = 1) -> None:
        self.http_refused.labels(reason).inc(n)

    # -- exposition

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

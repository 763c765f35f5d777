"""Dockhand's log: plain text or JSON lines, never a secret, never a flood.

:func:`setup` configures the root logger once for the process:

* ``DOCKHAND_LOG_FORMAT=text`` (default): ``time LEVEL logger: message``;
* ``DOCKHAND_LOG_FORMAT=json``: one JSON object a line (``time``, ``level``,
  ``logger``, ``message``, and ``exc`` with the traceback when there is one),
  for log shippers.

Either way every line goes through :class:`Redactor` first: the Slack tokens,
the signing secret and the registry passwords of the settings (and their
URL-quoted and Basic-auth forms), and anything shaped like a Slack token, are
replaced by ``***`` in the message and in tracebacks.

The event loop logs one traceback for each ``accept()`` that fails with "Too
many open files"; :class:`RepeatFilter` lets the first through and then one
line a minute saying how many were held back.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import time
import urllib.parse
from typing import Iterable

_SLACK_TOKEN = re.compile(r"\bx(?:ox[abposer]|app)-[A-Za-z0-9-]{6,}")
REPEAT_INTERVAL = 60.0  # seconds between two lines about the same repeated error


class Redactor:
    """Replaces known secrets (every form of them) and Slack-token shapes by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                forms.update({secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]})
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, "***")
        return _SLACK_TOKEN.sub("***", text)


def secrets_of(settings) -> list[str]:
    """The secrets in ``settings``: Slack tokens, signing secret, registry passwords."""
    out = [settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret]
    for login in getattr(settings, "registry_logins", ()):
        if login.password is not None:
            password = login.password.reveal()
            out.append(password)
            pair = f"{login.username}:{password}".encode("utf-8")
            out += [base64.b64encode(pair).decode("ascii"), base64.urlsafe_b64encode(pair).decode("ascii")]
    return [s for s in out if s]


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; the traceback, when there is one, in ``exc``."""

    def __init__(self, redact: Redactor):
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = self.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Lets a message matching ``pattern`` through at most once per ``interval``
    seconds; the next one that goes through says how many were held back (and
    loses its traceback: the first one had it)."""

    def __init__(self, pattern: str, interval: float = REPEAT_INTERVAL, clock=time.monotonic):
        super().__init__()
        self.pattern, self.interval, self.clock = re.compile(pattern), interval, clock
        self.last = float("-inf")
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad record is not ours to judge
            return True
        if not self.pattern.search(message):
            return True
        now = self.clock()
        if now - self.last < self.interval:
            self.held += 1
            return False
        if self.held:
            record.msg = f"{message} ({self.held} more like it in the last {now - self.last:.0f}s were not logged)"
            record.args = ()
            record.exc_info = record.exc_text = None
        self.last, self.held = now, 0
        return True


ACCEPT_ERRORS = r"socket\.accept\(\) out of system resource|Too many open files"


def setup(settings, *, stream=None, force: bool = False) -> logging.Handler | None:
    """Configure the root logger for ``settings`` (level, format, redaction);
    does nothing when the root logger already has handlers, unless ``force``."""
    root = logging.getLogger()
    if root.handlers and not force:
        return None
    redact = Redactor(secrets_of(settings))
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if settings.log_format == "json" else TextFormatter(redact))
    if force:
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    quiet_repeats()
    return handler


def quiet_repeats() -> None:
    """Install the :class:`RepeatFilter` for the event loop's accept errors (once)."""
    for name in ("asyncio", "aiohttp.server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(ACCEPT_ERRORS))

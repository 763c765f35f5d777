"""The log: JSON lines, secrets redacted, repeated accept errors held back."""

from __future__ import annotations

import base64
import io
import json
import logging

from bot import logs
from bot.config import load_settings

TOKEN = "xoxb-1234567890-abcdefghijkl"
APP_TOKEN = "xapp-1-A0123-4567-deadbeef"
SIGNING = "8f2b2c4e1d5a6b7c8d9e0f1a2b3c4d5e"
PASSWORD = "s3cr3t/p@ss word"


def settings(fmt: str):
    return load_settings({"SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": SIGNING,
                          "DOCKHAND_LOG_FORMAT": fmt, "DOCKHAND_REGISTRY_CORP_HOST": "registry.example:5000",
                          "DOCKHAND_REGISTRY_CORP_USERNAME": "bot", "DOCKHAND_REGISTRY_CORP_PASSWORD": PASSWORD})


def emit(fmt: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    redact = logs.Redactor(logs.secrets_of(settings(fmt)))
    handler.setFormatter(logs.JsonFormatter(redact) if fmt == "json" else logs.TextFormatter(redact))
    logger = logging.getLogger(f"test.logs.{fmt}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    basic = base64.b64encode(f"bot:{PASSWORD}".encode()).decode()
    logger.info("token %s app %s secret %s password %s basic %s", TOKEN, APP_TOKEN, SIGNING, PASSWORD, basic)
    logger.info("quoted %s and some other xoxp-999999-token-shape", "s3cr3t%2Fp%40ss%20word")
    try:
        raise RuntimeError(f"failed with Authorization: Bearer {TOKEN} and {PASSWORD}")
    except RuntimeError:
        logger.exception("internal error 1234abcd")
    logger.removeHandler(handler)
    return stream.getvalue()


def test_json_lines_carry_no_secret():
    out = emit("json")
    lines = out.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["level"] for e in entries] == ["INFO", "INFO", "ERROR"]
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    assert entries[2]["message"] == "internal error 1234abcd" and "RuntimeError" in entries[2]["exc"]
    for secret in (TOKEN, APP_TOKEN, SIGNING, PASSWORD, "s3cr3t%2Fp%40ss%20word", "xoxp-999999",
                   base64.b64encode(f"bot:{PASSWORD}".encode()).decode()):
        assert secret not in out
    assert "***" in entries[0]["message"]


def test_text_lines_carry_no_secret():
    out = emit("text")
    assert "Traceback" in out and "internal error 1234abcd" in out
    for secret in (TOKEN, APP_TOKEN, SIGNING, PASSWORD):
        assert secret not in out


def test_repeated_accept_errors_are_held_back():
    clock = [0.0]
    f = logs.RepeatFilter(logs.ACCEPT_ERRORS, interval=60, clock=lambda: clock[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, (), None)

    passed = []
    for i in range(126_000):
        clock[0] = i * 30 / 126_000
        r = record("socket.accept() out of system resource")
        if f.filter(r):
            passed.append(r.getMessage())
    assert passed == ["socket.accept() out of system resource"]
    clock[0] = 61
    r = record("socket.accept() out of system resource")
    assert f.filter(r) and "125999 more like it" in r.getMessage()
    assert f.filter(record("something else"))


def test_log_format_setting():
    assert settings("json").log_format == "json"
    assert load_settings({}).log_format == "text"
    import pytest

    from bot.config import ConfigError

    with pytest.raises(ConfigError, match="DOCKHAND_LOG_FORMAT"):
        load_settings({"DOCKHAND_LOG_FORMAT": "yaml"})

"""`dockhand slack` with DOCKHAND_LOG_FORMAT=json: every line of its log is one
JSON object, and no secret (Slack tokens, signing secret, registry password)
appears in it, even at DEBUG level."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import aiohttp

from tests.fakes.slack_api import SIGNING_SECRET, command_payload, form_body, signed_headers
from tests.fakes.slack_harness import clean_slack_env, fake_slack  # noqa: F401
from tests.integration.slack.test_slack_process import dockhand_cmd, free_port, user_env, wait_port

PASSWORD = "hunter2-registry-pass"


async def test_json_log_lines_without_secrets(fake_slack, stack, tmp_path):
    port = free_port()
    env = user_env(fake_slack, stack, PORT=str(port), DOCKHAND_LOG_FORMAT="json", DOCKHAND_LOG_LEVEL="DEBUG",
                   DOCKHAND_STATE_DIR=str(tmp_path / "state"), DOCKHAND_HOST_LABEL="lab-1",
                   DOCKHAND_REGISTRY_LAB_HOST=stack.registry, DOCKHAND_REGISTRY_LAB_USERNAME="dockhand",
                   DOCKHAND_REGISTRY_LAB_PASSWORD=PASSWORD, DOCKHAND_OPERATORS="UALICE")
    proc = await asyncio.create_subprocess_exec(*dockhand_cmd("slack"), env=env, cwd=tmp_path,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        await wait_port(port, proc)
        async with aiohttp.ClientSession() as session:
            rids = []
            for command, text in (("/images", ""), ("/pull", f"{stack.registry}/dockhand/busybox:latest"),
                                  ("/docker", "imagez")):
                rid = uuid.uuid4().hex[:12]
                rids.append(rid)
                body = form_body(command_payload(command, text, response_url=fake_slack.response_url(rid)))
                async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                        headers=signed_headers(SIGNING_SECRET, body)) as r:
                    assert r.status == 200
            body = b"token=" + fake_slack.bot_token.encode()
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers={"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=1"}) as r:
                assert r.status == 400
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
        await fake_slack.wait_for("response", rids[0], timeout=30)
        await fake_slack.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    lines = text.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(entries) > 10 and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["logger"] == "dockhand.http" and "bad timestamp header" in e["message"] for e in entries)
    assert any(e["level"] == "DEBUG" for e in entries)
    for secret in (fake_slack.bot_token, SIGNING_SECRET, PASSWORD):
        assert secret not in text, secret
    assert proc.returncode == 0

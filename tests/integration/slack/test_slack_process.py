"""`dockhand slack` started as a person starts it (a subprocess), HTTP and
Socket Mode, plus start-up errors; and Socket Mode in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from tests.fakes.slack_api import (
    SIGNING_SECRET,
    action_payload,
    buttons,
    command_payload,
    form_body,
    message_problems,
    signed_headers,
)
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


def dockhand_cmd(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("dockhand")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "bot", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_env(fake, stack, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "DOCKHAND_")) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(SLACK_BOT_TOKEN=fake.bot_token, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=fake.api_url,
               HOST="127.0.0.1", DOCKER_HOST=stack.docker_host, DOCKHAND_SEARCH_INDEX=stack.index,
               PYTHONPATH=str(ROOT), DOCKHAND_STATUS_PORT=str(free_port()))  # Socket Mode's /healthz listener
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


async def start(env: dict, cwd, *args: str) -> asyncio.subprocess.Process:
    """``dockhand ARGS`` as a user starts it (``dockhand slack`` by default)."""
    return await asyncio.create_subprocess_exec(*dockhand_cmd(*(args or ("slack",))), env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def wait_port(port: int, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            err = (await proc.stderr.read()).decode()
            raise AssertionError(f"dockhand exited {proc.returncode}: {err}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("dockhand did not start listening")


async def stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, err.decode()


async def test_dockhand_slack_http_mode_as_a_subprocess(fake_slack, stack, tmp_path):
    port = free_port()
    proc = await start(user_env(fake_slack, stack, PORT=str(port)), tmp_path)
    try:
        await wait_port(port, proc)
        rid = uuid.uuid4().hex[:12]
        body = form_body(command_payload("/images", "", response_url=fake_slack.response_url(rid)))
        async with aiohttp.ClientSession() as session:
            t0 = time.monotonic()
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers=signed_headers(SIGNING_SECRET, body)) as r:
                assert r.status == 200
            assert time.monotonic() - t0 < 1.0
            # unsigned: refused
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                assert r.status == 401
        reply = (await fake_slack.wait_for("response", rid, timeout=30))[0]
        assert "REPOSITORY" in reply.text and "dockhand/busybox" in reply.text
        assert message_problems(reply.body) == []
        # SIGTERM while a command runs: it still gets its answer, then the process exits 0.
        slow = uuid.uuid4().hex[:12]
        body = form_body(command_payload("/search", f"{stack.index}/slow-2",
                                         response_url=fake_slack.response_url(slow)))
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers=signed_headers(SIGNING_SECRET, body)) as r:
                assert r.status == 200
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    late = (await fake_slack.wait_for("response", slow, timeout=5))[0]
    assert ":x:" not in late.text and "NAME" in late.text


@pytest.mark.parametrize("args", [("slack",), ("--env-file", "/dev/null")],
                         ids=["dockhand slack", "plain dockhand with SLACK_BOT_TOKEN"])
async def test_dockhand_slack_socket_mode_as_a_subprocess(fake_slack, stack, tmp_path, args):
    proc = await start(user_env(fake_slack, stack, SLACK_APP_TOKEN=fake_slack.app_token,
                                SLACK_SIGNING_SECRET=None), tmp_path, *args)
    try:
        await asyncio.wait_for(fake_slack.wait_socket(), 30)
        rid = uuid.uuid4().hex[:12]
        t0 = time.monotonic()
        envelope = await fake_slack.send_envelope(
            "slash_commands", command_payload("/docker", "version", response_url=fake_slack.response_url(rid)))
        await fake_slack.wait_for("socket", "ack", where=lambda c: c.body.get("envelope_id") == envelope)
        assert time.monotonic() - t0 < 1.0
        reply = (await fake_slack.wait_for("response", rid, timeout=30))[0]
        assert "Server: Docker Engine" in reply.text
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("change,expect", [
    ({"SLACK_SIGNING_SECRET": None}, "SLACK_SIGNING_SECRET"),
    ({"SLACK_BOT_TOKEN": "xoxb-wrong"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_APP_TOKEN": "xapp-wrong", "SLACK_SIGNING_SECRET": None}, "SLACK_APP_TOKEN"),
    ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}, "SLACK_CLIENT_ID"),
])
async def test_start_up_errors_are_one_clear_line(fake_slack, stack, tmp_path, change, expect):
    proc = await start(user_env(fake_slack, stack, PORT=str(free_port()), **change), tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode not in (0, None)
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("dockhand:")]
    assert len(lines) == 1 and expect in lines[0], text


async def test_port_in_use_is_one_clear_line(fake_slack, stack, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await start(user_env(fake_slack, stack, PORT=str(port)), tmp_path)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode() and "Traceback" not in err.decode()


async def test_socket_mode_in_process_acks_and_handles_clicks(fake_slack, engine_services):
    from bot.slack import app as slack_app_module

    services = engine_services()
    settings = Settings(slack_bot_token=fake_slack.bot_token, slack_app_token=fake_slack.app_token,
                        slack_api_url=fake_slack.api_url, docker_host=services.engine.host)
    app, runtime = slack_app_module.build(settings, services)
    stopping = asyncio.Event()
    task = asyncio.create_task(slack_app_module._run_socket_mode(app, runtime, settings, stopping, "test",
                                                                 drain=5))
    try:
        await fake_slack.wait_socket()
        rid = uuid.uuid4().hex[:12]
        envelope = await fake_slack.send_envelope(
            "slash_commands", command_payload("/images", "", response_url=fake_slack.response_url(rid)))
        ack = (await fake_slack.wait_for("socket", "ack", where=lambda c: c.body.get("envelope_id") == envelope))[0]
        assert set(ack.body) <= {"envelope_id", "payload"} and not ack.body.get("payload")
        reply = (await fake_slack.wait_for("response", rid))[0]
        share = [b for b in buttons(reply.body) if b["action_id"] == "dockhand.share"][0]
        # A click arrives as an "interactive" envelope; a retried envelope runs once.
        click = action_payload(share, response_url=fake_slack.response_url(), user_id="UBOB")
        for attempt in (None, 1):
            await fake_slack.send_envelope("interactive", click, retry_attempt=attempt)
        posted = (await fake_slack.wait_for("api", "chat.postMessage"))[0]
        assert "<@UBOB> shared" in posted.text
        await asyncio.sleep(0.5)
        assert len(fake_slack.api_calls("chat.postMessage")) == 1
    finally:
        stopping.set()
        await asyncio.wait_for(task, 15)
        await services.engine.close()

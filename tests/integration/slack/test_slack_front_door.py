"""The HTTP front door under abuse: malformed unauthenticated requests get a
4xx and one quiet log line; a request must arrive in time; and a flood of
slow connections against `dockhand slack` with a file limit of 1,024 does not
stop a signed command from being acked (bench/front_door.py runs the full
2,000-connection version)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp

from tests.fakes.scrape import samples, value
from tests.fakes.slack_api import SIGNING_SECRET, command_payload, form_body, sign, signed_headers
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401
from tests.integration.slack.test_slack_process import dockhand_cmd, free_port, user_env, wait_port

ROOT = Path(__file__).resolve().parents[3]


async def raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def port_of(h) -> int:
    return int(h.base_url.rsplit(":", 1)[1])


async def test_malformed_unauthenticated_requests_get_a_4xx_and_a_quiet_log(slack_app, engine_services,
                                                                           fake_slack, caplog):
    caplog.set_level(logging.DEBUG)
    h = await slack_app(engine_services())
    body = form_body(command_payload("/images", "", response_url=fake_slack.response_url("x")))
    now = str(int(time.time()))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        # what Bolt turned into a 500 and a traceback
        ({**form, "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": sign(SIGNING_SECRET, body, "abc")},
         body, 400),
        ({**form, "X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(SIGNING_SECRET, b"\xff\xfe", now)},
         b"text=\xff\xfe\xfd&command=/images", 400),
        ({**form, "X-Slack-Request-Timestamp": "-1", "X-Slack-Signature": "v0=00"}, body, 400),
        ({**form, "X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=00"}, body, 400),
        ({**form, "X-Slack-Request-Timestamp": now}, body, 401),  # not signed
        (form, body, 401),
        ({**form, "X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "0" * 64}, body, 401),
        ({**form, **signed_headers(SIGNING_SECRET, body, timestamp=int(time.time()) - 3600)}, body, 401),  # stale
        # signed, but JSON that does not parse
        ({"Content-Type": "application/json", **{k: v for k, v in signed_headers(SIGNING_SECRET, b"{nope").items()
                                                 if k != "Content-Type"}}, b"{nope", None),
    ]
    for headers, data, want in cases:
        status, text, _ = await h.post(data, headers)
        assert 400 <= status < 500 if want is None else status == want, (headers, status, text)
    # a body announced larger than 256 KiB: refused from its head, before any of it is sent
    t0 = time.monotonic()
    answer = await raw(port_of(h), b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - t0 < 1.0
    # a chunked body that grows past the cap
    async def chunks():
        for _ in range(40):
            yield b"x" * 10_000
    async with aiohttp.ClientSession() as session:
        async with session.post(h.url, data=chunks(), headers=signed_headers(SIGNING_SECRET, b"")) as r:
            assert r.status == 413
        async with session.get(h.url) as r:
            assert r.status == 405
        async with session.post(h.base_url + "/nope", data=b"x") as r:
            assert r.status == 404
    # a header block that never ends within 16 KiB
    answer = await raw(port_of(h), b"POST /slack/events HTTP/1.1\r\nX-Long: " + b"a" * 20_000)
    assert answer.startswith(b"HTTP/1.1 431")

    # the app still answers a real command at once
    sent = await h.command("/docker", "version")
    assert sent.status == 200 and sent.elapsed < 1.0
    assert "Server: Docker Engine" in (await h.reply(sent)).text

    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [(r.name, r.getMessage()) for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    about = [r.getMessage() for r in caplog.records if r.name == "dockhand.http"]
    assert len(about) == 1 and "refused a request from 127.0.0.1: bad timestamp header" in about[0], about
    scraped = samples((await h.get("/metrics"))[1])
    assert value(scraped, "dockhand_http_refused_total", reason="bad timestamp header") == 3
    assert value(scraped, "dockhand_http_refused_total", reason="body not UTF-8") == 1
    assert value(scraped, "dockhand_http_refused_total", reason="bad signature or stale timestamp") == 2
    assert value(scraped, "dockhand_http_refused_total", reason="no signature") == 2
    assert value(scraped, "dockhand_http_refused_total", reason="body too large") == 2
    assert value(scraped, "dockhand_http_refused_total", reason="head too large") == 1


async def test_a_request_must_arrive_within_the_read_timeout(slack_app, engine_services, fake_slack):
    h = await slack_app(engine_services(), http_read_timeout=1.0)
    port = port_of(h)
    body = form_body(command_payload("/images", "", response_url=fake_slack.response_url("x")))
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"

    async def trickle(first: bytes, rest: bytes) -> float:
        """Seconds until the server closes a connection sending ``first`` then ``rest`` a byte each 0.2 s."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        writer.write(first)
        try:
            for i in range(len(rest)):
                try:
                    if not await asyncio.wait_for(reader.read(100), 0.2):
                        break
                except asyncio.TimeoutError:
                    writer.write(rest[i:i + 1])
            return time.monotonic() - t0
        finally:
            writer.close()

    headers = signed_headers(SIGNING_SECRET, body)
    full_head = head + "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k != "Content-Type").encode() \
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    slow_head, slow_body = await asyncio.gather(trickle(b"POST /sl", full_head[8:] + body),
                                                trickle(full_head + body[:10], body[10:]))
    for took in (slow_head, slow_body):
        assert 0.9 < took < 2.0, (slow_head, slow_body)
    sent = await h.command("/images")
    assert sent.status == 200 and sent.elapsed < 1.0
    scraped = samples((await h.get("/metrics"))[1])
    assert value(scraped, "dockhand_http_refused_total", reason="read timeout") == 2


async def test_a_flood_of_slow_connections_does_not_stop_acks(fake_slack, stack, tmp_path):
    """`dockhand slack` with a file limit of 1,024, against 1,500 connections that
    never finish a request (tests/fakes/flood.py), reopened 2 s after being closed."""
    port = free_port()
    log_path = tmp_path / "dockhand.log"
    env = user_env(fake_slack, stack, PORT=str(port), DOCKHAND_STATE_DIR=str(tmp_path / "state"))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(*dockhand_cmd("slack"), env=env, cwd=tmp_path,
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                                                    preexec_fn=limit)
    flood = None
    acks: list[tuple[int, float]] = []
    fds: list[int] = []
    try:
        await wait_port(port, proc)
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.flood", "--port", str(port), "--connections", "1500",
            "--seconds", "10", "--reopen", "2", cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1.5)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=10)) as session:
            for _ in range(12):
                fds.append(len(os.listdir(f"/proc/{proc.pid}/fd")))
                rid = uuid.uuid4().hex[:12]
                body = form_body(command_payload("/docker", "version", response_url=fake_slack.response_url(rid),
                                                 trigger_id=uuid.uuid4().hex))
                t0 = time.monotonic()
                async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                        headers=signed_headers(SIGNING_SECRET, body)) as r:
                    acks.append((r.status, time.monotonic() - t0))
                await asyncio.sleep(0.5)
        out, _ = await flood.communicate()
        stats = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        if flood is not None and flood.returncode is None:
            flood.kill()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    log = log_path.read_text(errors="replace")
    assert stats["opened"] >= 1500, stats
    assert all(status == 200 for status, _ in acks), acks
    times = [t for _, t in acks]
    assert statistics.median(times) < 0.25, times
    assert sum(1 for t in times if t < 1.0) >= len(times) - 1, times  # a loaded shared machine: one late at most
    assert max(fds) < 1024 - 64, fds
    assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]
    flood_lines = [line for line in log.splitlines() if "front door" in line]
    assert 1 <= len(flood_lines) <= 4, flood_lines

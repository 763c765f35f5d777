#!/usr/bin/env python3
"""Does the HTTP front door hold under a slow-request flood?

    .venv/bin/python bench/front_door.py [--connections 2000] [--seconds 30] [--server dockhand|bolt]

Needs the private test stack (``tests/stack/stack.py up`` is run first). It
starts a server as a subprocess with a file limit of 1,024 (``setrlimit`` in
the child, as ``prlimit --nofile=1024`` would), on 127.0.0.1, its Web API
pointed at a fake Slack:

* ``dockhand``: ``dockhand slack`` exactly as a person starts it;
* ``bolt``: Bolt's own aiohttp server (``AsyncApp.web_app()``), whose
  listeners only ack: how Dockhand served HTTP before its front door.

Then ``tests/fakes/flood.py`` (another process) opens ``--connections``
connections that never finish a request (a third with a 10 MB
``Content-Length`` then a byte a second, a third with a 4,000-byte one, a
third trickling headers; each reopened half a second after the server closes
it), and every 0.5 s a signed ``/docker version`` is sent on a new
connection: its ack time (to the HTTP answer, 10 s at most) is recorded,
before, during and after the flood. At the end: acks, the server's open file
descriptors (``/proc/PID/fd``, sampled), and its log: how many lines, how
many about the flood, tracebacks, "Too many open files". Results are printed
and written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import load_stack  # noqa: E402 - bench/ is on sys.path when run as a script

RESULTS = ROOT / "bench" / "results"
FILE_LIMIT = 1024


def serve_bolt(port: int, api_url: str) -> None:
    """Bolt's own server, listeners that only ack (run as ``--serve-bolt PORT API_URL``)."""
    from aiohttp import web
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from tests.fakes.slack_api import SIGNING_SECRET

    app = AsyncApp(signing_secret=SIGNING_SECRET, client=AsyncWebClient(token="xoxb-test", base_url=api_url),
                   process_before_response=False)

    async def ack_only(ack):
        await ack()

    app.command("/docker")(ack_only)
    web.run_app(app.web_app(), host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


async def start_server(kind: str, fake, state: dict, log_path: Path, extra_env: dict) -> tuple:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DOCKHAND_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONPATH=str(ROOT))
    if kind == "dockhand":
        script = Path(sys.executable).with_name("dockhand")
        cmd = [str(script), "slack"] if script.exists() else [sys.executable, "-m", "bot", "slack"]
        from tests.fakes.slack_api import SIGNING_SECRET

        env.update(SLACK_BOT_TOKEN=fake.bot_token, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=fake.api_url,
                   HOST="127.0.0.1", PORT=str(port), DOCKER_HOST=state["docker_host"],
                   DOCKHAND_STATE_DIR=tempfile.mkdtemp(prefix="dockhand-bench-"))
        env.update(extra_env)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bolt", str(port), fake.api_url]
    log = open(log_path, "wb")
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=str(ROOT), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=log, stderr=log, preexec_fn=limit_files)
    deadline = time.monotonic() + 30
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return proc, port
        except OSError:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise SystemExit(f"{kind} did not start: {log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.05)


async def signed_command(port: int, fake) -> dict:
    """One signed /docker version on a new connection: status and ack seconds."""
    import aiohttp

    from tests.fakes.slack_api import SIGNING_SECRET, command_payload, form_body, signed_headers

    rid = uuid.uuid4().hex[:12]
    body = form_body(command_payload("/docker", "version", response_url=fake.response_url(rid),
                                     trigger_id=uuid.uuid4().hex))
    t0 = time.monotonic()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers=signed_headers(SIGNING_SECRET, body)) as r:
                await r.read()
                status = r.status
    except Exception as exc:  # noqa: BLE001 - a failed probe is a result
        status = type(exc).__name__
    return {"status": status, "ack_s": round(time.monotonic() - t0, 4), "rid": rid}


async def run(args) -> dict:
    from tests.fakes.slack_api import FakeSlack

    _, _, state = load_stack()
    fake = FakeSlack().start_in_thread()
    log_path = Path(tempfile.mkdtemp(prefix="dockhand-bench-")) / "server.log"
    extra = {"DOCKHAND_LOG_FORMAT": "json"} if args.json_log else {}
    proc, port = await start_server(args.server, fake, state, log_path, extra)
    probes: list[dict] = []
    fds: list[int] = []
    try:
        for _ in range(3):  # warm-up: auth.test, first engine call
            await signed_command(port, fake)
        for _ in range(6):
            probes.append(dict(await signed_command(port, fake), phase="before"))
            await asyncio.sleep(0.2)
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.flood", "--port", str(port), "--connections", str(args.connections),
            "--seconds", str(args.seconds), "--reopen", str(args.reopen), cwd=str(ROOT), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        started = time.monotonic()
        await asyncio.sleep(2)  # the flood ramps up
        while flood.returncode is None and time.monotonic() - started < args.seconds - 0.5:
            fds.append(open_fds(proc.pid))
            probe = await signed_command(port, fake)
            probes.append(dict(probe, phase="flood", at=round(time.monotonic() - started, 2)))
            await asyncio.sleep(max(0.0, 0.5 - probe["ack_s"]))
        out, _ = await flood.communicate()
        flood_stats = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
        await asyncio.sleep(1)
        for _ in range(6):
            probes.append(dict(await signed_command(port, fake), phase="after"))
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        replies = sum(1 for p in probes if fake.responses(p["rid"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except asyncio.TimeoutError:
            proc.kill()
        fake.stop_thread()
    log_text = log_path.read_text(errors="replace")
    lines = log_text.splitlines()
    during = [p for p in probes if p["phase"] == "flood"]
    acked = [p["ack_s"] for p in during if p["status"] == 200]
    result = {
        "server": args.server, "connections": args.connections, "seconds": args.seconds, "file_limit": FILE_LIMIT,
        "reopen_s": args.reopen,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "flood": flood_stats,
        "probes_during_flood": len(during),
        "acked_during_flood": len(acked),
        "ack_during_flood_ms": {"median": round(sorted(acked)[len(acked) // 2] * 1000, 1) if acked else None,
                                "max": round(max(acked) * 1000, 1) if acked else None,
                                "over_1s": sum(1 for a in acked if a >= 1.0)},
        "failed_probes": [p for p in during if p["status"] != 200][:10],
        "before": [p["ack_s"] for p in probes if p["phase"] == "before"],
        "after": [(p["status"], p["ack_s"]) for p in probes if p["phase"] == "after"],
        "replies_received": replies, "probes": len(probes),
        "server_fds_max": max(fds) if fds else None,
        "log_lines": len(lines),
        "log_lines_front_door": sum(1 for line in lines if "front door" in line),
        "log_lines_too_many_open_files": sum(1 for line in lines if "Too many open files" in line),
        "log_tracebacks": sum(1 for line in lines if "Traceback" in line),
        "log_sample": [line[:300] for line in lines if "front door" in line or "Too many" in line][:8],
    }
    return result


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bolt":
        serve_bolt(int(sys.argv[2]), sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description="Slow-request flood against the HTTP front door")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--server", choices=("dockhand", "bolt"), default="dockhand")
    p.add_argument("--json-log", action="store_true", help="run dockhand with DOCKHAND_LOG_FORMAT=json")
    p.add_argument("--reopen", type=float, default=5.0,
                   help="seconds before the flood reopens a connection the server closed (default 5)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    name = f"front_door-{args.server}{'-' + args.tag if args.tag else ''}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to bench/results/{name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

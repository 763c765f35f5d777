#!/usr/bin/env python3
"""How fast Dockhand acks Slack while its engine is busy, next to Bolt's floor.

    .venv/bin/python bench/ack_latency.py [--rounds 6] [--concurrency 50] [--slow 3]

Needs the private test stack (``tests/stack/stack.py up`` is run first). In
one run, for each of two servers started as subprocesses on 127.0.0.1:

* ``dockhand``: ``dockhand slack`` exactly as a person starts it (HTTP mode,
  Web API pointed at a fake Slack, DOCKER_HOST = the private engine);
* ``floor``: a bare Bolt ``AsyncApp`` (same Bolt settings) whose listeners
  only ``ack()``: the least any Bolt app on this machine can do;

each round first makes the engine busy (``--busy-searches`` slow searches
``INDEX/slow-N`` on the fake index and one ``/pull`` of a ~30 MB image from the
private registry), then sends ``--concurrency`` signed slash commands at once
(a mix of /images, /search, /docker info|version|help and more slow
searches). Ack latency is the time to the HTTP answer; time to final reply is
until the fake Slack receives the answer (response_url, or the pull's last
chat.update). Results are printed and written to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import tempfile
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import load_stack  # noqa: E402 - bench/ is on sys.path when run as a script

RESULTS = ROOT / "bench" / "results"
TARGET_P99 = 0.100


# --- the floor server (run as `ack_latency.py --serve-floor PORT API_URL`) ------------

def serve_floor(port: int, api_url: str) -> None:
    from aiohttp import web
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from tests.fakes.slack_api import SIGNING_SECRET

    app = AsyncApp(signing_secret=SIGNING_SECRET, client=AsyncWebClient(token="xoxb-test", base_url=api_url),
                   process_before_response=False)

    async def ack_only(ack):
        await ack()

    for command in ("/docker", "/images", "/search", "/pull", "/rmi"):
        app.command(command)(ack_only)
    web.run_app(app.web_app(), host="127.0.0.1", port=port, print=None, access_log=None)


# --- helpers -------------------------------------------------------------------------



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 2), "p90_ms": round(pct(values, 90) * 1000, 2),
            "p99_ms": round(pct(values, 99) * 1000, 2), "max_ms": round(max(values) * 1000, 2) if values else None,
            "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else None}


@dataclass
class Sample:
    server: str
    phase: str  # "busy" (makes the engine busy) or "burst" (the measured concurrent commands)
    command: str
    text: str
    status: int = 0
    sent: float = 0.0
    ack: float = 0.0
    final: float | None = None
    rid: str = ""
    user: str = "UBENCH"
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, args, stackmod, paths, state):
        from tests.fakes.slack_api import FakeSlack

        self.args, self.stackmod, self.paths, self.state = args, stackmod, paths, state
        self.fake = FakeSlack().start_in_thread()
        self.samples: list[Sample] = []
        self.pull_ref = ""

    # -- the pull target: an image only the registry has ------------------------------

    def make_pull_image(self) -> None:
        ref = f"{self.state['registry']}/dockhand-bench/pull-{uuid.uuid4().hex[:8]}:latest"
        self.stackmod.import_image(self.paths, ref, {"data/blob.bin": os.urandom(self.args.pull_bytes)})
        self.stackmod.docker(self.paths, "push", ref)
        self.pull_ref = ref
        self.forget_pull_image()

    def forget_pull_image(self) -> None:
        self.stackmod.docker(self.paths, "rmi", "-f", self.pull_ref, check=False)

    def remove_pull_image(self) -> None:
        if not self.pull_ref:
            return
        self.forget_pull_image()
        digest = self.stackmod.registry_digest(self.pull_ref)
        if digest:
            registry, repo, _ = self.stackmod.split_ref(self.pull_ref)
            self.stackmod.http_request(f"http://{registry}/v2/{repo}/manifests/{digest}", method="DELETE")

    # -- servers ----------------------------------------------------------------------

    async def start_server(self, name: str) -> tuple[asyncio.subprocess.Process, int]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DOCKHAND_"))}
        env.update(PYTHONPATH=str(ROOT), DOCKHAND_LOG_LEVEL="WARNING")
        if name == "dockhand":
            script = Path(sys.executable).with_name("dockhand")
            cmd = [str(script), "slack"] if script.exists() else [sys.executable, "-m", "bot", "slack"]
            if self.args.profile:  # the event loop thread, under cProfile, written at exit
                cmd = [sys.executable, "-m", "cProfile", "-o", str(self.args.profile), "-m", "bot", "slack"]
            env.update(SLACK_BOT_TOKEN=self.fake.bot_token, SLACK_SIGNING_SECRET=self._secret(),
                       SLACK_API_URL=self.fake.api_url, HOST="127.0.0.1", PORT=str(port),
                       DOCKER_HOST=self.state["docker_host"], DOCKHAND_SEARCH_INDEX=self.state["index"],
                       # the busy /pull of each round is sent by an operator; a state dir of its own
                       DOCKHAND_OPERATORS=",".join(f"UPULL{n}D" for n in range(100)),
                       DOCKHAND_STATE_DIR=str(Path(tempfile.mkdtemp(prefix="dockhand-bench-"))))
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-floor", str(port), self.fake.api_url]
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=str(ROOT / "bench"),
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    err = (await proc.stderr.read()).decode()[-2000:]
                    raise SystemExit(f"{name} did not start: {err}")
                await asyncio.sleep(0.05)
        return proc, port

    @staticmethod
    def _secret() -> str:
        from tests.fakes.slack_api import SIGNING_SECRET

        return SIGNING_SECRET

    # -- load -------------------------------------------------------------------------

    async def fire(self, session, url: str, sample: Sample) -> Sample:
        from tests.fakes.slack_api import command_payload, form_body, signed_headers

        sample.rid = uuid.uuid4().hex[:12]
        payload = command_payload(sample.command, sample.text, response_url=self.fake.response_url(sample.rid),
                                  user_id=sample.user)
        body = form_body(payload)
        headers = signed_headers(self._secret(), body)
        sample.sent = time.monotonic()
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            sample.status = r.status
        sample.ack = time.monotonic() - sample.sent
        return sample

    def burst_mix(self, n: int) -> list[tuple[str, str]]:
        index = self.state["index"]
        mix = [("/images", ""), ("/images", "-a"), ("/search", "ubuntu"), ("/docker", "info"),
               ("/docker", "version"), ("/docker", "help"), ("/search", "--limit 5 ubuntu"),
               ("/docker", "image ls"), ("/search", f"{index}/slow-1"), ("/images", "busybox")]
        return [mix[i % len(mix)] for i in range(n)]

    async def round(self, server: str, url: str, session, number: int) -> None:
        a = self.args
        # the slow searches are one other person's (the registry lane is shared fairly by person)
        busy = [Sample(server, "busy", "/search", f"{self.state['index']}/slow-{a.slow}", user="UBUSY")
                for _ in range(a.busy_searches)]
        if server == "dockhand":
            self.forget_pull_image()
        busy.append(Sample(server, "busy", "/pull", self.pull_ref, user=f"UPULL{number}{server[0].upper()}"))
        busy_tasks = [asyncio.ensure_future(self.fire(session, url, s)) for s in busy]
        await asyncio.sleep(a.busy_head_start)
        burst = [Sample(server, "burst", c, t) for c, t in self.burst_mix(a.concurrency)]
        await asyncio.gather(*(self.fire(session, url, s) for s in burst))
        await asyncio.gather(*busy_tasks)
        round_samples = busy + burst
        self.samples += round_samples
        if server == "dockhand":
            await self.wait_finals(round_samples)
        else:
            await asyncio.sleep(0.2)

    async def wait_finals(self, samples: list[Sample], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = list(samples)
        while pending and time.monotonic() < deadline:
            still = []
            for s in pending:
                if s.command == "/pull":
                    calls = self.fake.find("api", "chat.update",
                                           lambda c, u=s.user: f"<@{u}> pulled" in c.text
                                           or f"<@{u}> could not pull" in c.text)
                else:
                    calls = self.fake.find("response", s.rid)
                if calls:
                    s.final = calls[-1].at - s.sent
                    s.extra["ok"] = "could not" not in calls[-1].text and ":x:" not in calls[-1].text[:200]
                else:
                    still.append(s)
            pending = still
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        """Both servers up at once; their rounds alternate (same machine load)."""
        import aiohttp

        servers = {}
        try:
            for name in ("floor", "dockhand"):
                proc, port = await self.start_server(name)
                servers[name] = (proc, f"http://127.0.0.1:{port}/slack/events")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                for name, (_, url) in servers.items():
                    # warm-up: Bolt's first auth.test, imports, the engine connection
                    for c, t in (("/docker", "help"), ("/images", ""), ("/search", "ubuntu")):
                        s = await self.fire(session, url, Sample(name, "warmup", c, t))
                        if name == "dockhand":
                            await self.wait_finals([s], timeout=30)
                for n in range(self.args.rounds):
                    for name, (_, url) in servers.items():
                        await self.round(name, url, session, n)
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _ in servers.values():
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except asyncio.TimeoutError:
                    proc.kill()

    # -- report -------------------------------------------------------------------------

    def report(self) -> dict:
        out: dict = {
            "benchmark": "slack ack latency under engine load",
            "command": "python bench/ack_latency.py " + " ".join(sys.argv[1:]),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "engine": self.state.get("engine", {}).get("version")},
            "params": {k: v for k, v in vars(self.args).items() if k != "serve_floor"},
            "target_p99_ms": TARGET_P99 * 1000,
        }
        for server in ("floor", "dockhand"):
            mine = [s for s in self.samples if s.server == server and s.phase != "warmup"]
            burst = [s for s in mine if s.phase == "burst"]
            entry = {
                "ack_all": summary([s.ack for s in mine]),
                "ack_burst": summary([s.ack for s in burst]),
                "non_200": sum(1 for s in mine if s.status != 200),
            }
            if server == "dockhand":
                finals = [s.final for s in mine if s.final is not None]
                entry["final_reply"] = summary(finals)
                entry["final_reply_fast_commands"] = summary(
                    [s.final for s in burst if s.final is not None and "slow" not in s.text])
                # local engine calls (images, info, version, help) vs searches that go to a registry
                is_search = lambda s: s.command == "/search" or "search" in s.text  # noqa: E731
                entry["final_reply_local_commands"] = summary(
                    [s.final for s in burst if s.final is not None and not is_search(s)])
                entry["final_reply_fast_searches"] = summary(
                    [s.final for s in burst if s.final is not None and is_search(s) and "slow" not in s.text])
                entry["final_reply_pull"] = summary([s.final for s in mine if s.command == "/pull" and s.final])
                entry["missing_final"] = sum(1 for s in mine if s.final is None)
                entry["failed_replies"] = sum(1 for s in mine if s.extra.get("ok") is False)
                by = {}
                for s in mine:
                    by.setdefault(f"{s.command} {s.text}".strip(), []).append(s.ack)
                entry["ack_by_command_p99_ms"] = {k: round(pct(v, 99) * 1000, 2) for k, v in sorted(by.items())}
            out[server] = entry
        f, d = out["floor"]["ack_all"], out["dockhand"]["ack_all"]
        out["ratio_dockhand_over_floor"] = {k: round(d[k] / f[k], 2) if f[k] else None
                                            for k in ("p50_ms", "p90_ms", "p99_ms")}
        out["target_met"] = d["p99_ms"] < TARGET_P99 * 1000
        return out


def print_report(r: dict) -> None:
    def row(name, s):
        return (f"  {name:<34} n={s['n']:<4} p50 {s['p50_ms']:>8.1f} ms   p90 {s['p90_ms']:>8.1f} ms   "
                f"p99 {s['p99_ms']:>8.1f} ms   max {s['max_ms']:>8.1f} ms")

    print(f"\nSlack ack latency, {r['machine']['cpus']} CPUs, {r['params']['rounds']} rounds x "
          f"({r['params']['busy_searches']} slow searches + 1 pull, then {r['params']['concurrency']} at once)")
    print("floor (bare Bolt AsyncApp, ack only):")
    print(row("ack, all requests", r["floor"]["ack_all"]))
    print(row("ack, concurrent burst", r["floor"]["ack_burst"]))
    print("dockhand slack:")
    print(row("ack, all requests", r["dockhand"]["ack_all"]))
    print(row("ack, concurrent burst", r["dockhand"]["ack_burst"]))
    print(row("final reply, all", r["dockhand"]["final_reply"]))
    print(row("final reply, fast commands", r["dockhand"]["final_reply_fast_commands"]))
    print(row("  of which local (images, info...)", r["dockhand"]["final_reply_local_commands"]))
    print(row("  of which quick searches", r["dockhand"]["final_reply_fast_searches"]))
    print(row("final reply, /pull", r["dockhand"]["final_reply_pull"]))
    ratio = r["ratio_dockhand_over_floor"]
    print(f"ratio dockhand/floor: p50 x{ratio['p50_ms']}  p90 x{ratio['p90_ms']}  p99 x{ratio['p99_ms']}")
    print(f"non-200 acks: floor {r['floor']['non_200']}, dockhand {r['dockhand']['non_200']}; "
          f"missing finals {r['dockhand']['missing_final']}, failed replies {r['dockhand']['failed_replies']}")
    print(f"target p99 ack < {r['target_p99_ms']:.0f} ms: {'met' if r['target_met'] else 'MISSED'}")


async def main_async(args) -> int:
    stackmod, paths, state = load_stack()
    bench = Bench(args, stackmod, paths, state)
    try:
        bench.make_pull_image()
        await bench.run()
    finally:
        bench.remove_pull_image()
        bench.fake.stop_thread()
    report = bench.report()
    print_report(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    label = args.label or ("busy" if args.busy_searches else "idle")
    report["label"] = label
    path = RESULTS / f"ack_latency-{label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    if args.samples:
        report["samples"] = [asdict(s) for s in bench.samples]
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {path.relative_to(ROOT)}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=50, help="slash commands sent at once per round")
    p.add_argument("--busy-searches", type=int, default=10, help="slow searches keeping the engine busy")
    p.add_argument("--slow", type=int, default=3, help="seconds each busy search takes (INDEX/slow-N)")
    p.add_argument("--pull-bytes", type=int, default=30_000_000, help="size of the image /pull fetches")
    p.add_argument("--busy-head-start", type=float, default=0.3, help="seconds between busy work and the burst")
    p.add_argument("--samples", action="store_true", help="also write every sample in the JSON")
    p.add_argument("--label", help="names the result file (default: busy, or idle with --busy-searches 0)")
    p.add_argument("--profile", type=Path, help="run dockhand under cProfile, stats written to this file")
    p.add_argument("--serve-floor", nargs=2, metavar=("PORT", "API_URL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_floor:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

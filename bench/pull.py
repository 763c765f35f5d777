"""`/pull` through Slack and `dockhand shell -c "pull"` against `docker pull` of the same image.

    .venv/bin/python bench/pull.py [--rounds 10] [--layers 5] [--layer-mib 20] [--breakdown N]

Needs the private test stack (``tests/stack/stack.py up`` is run first). Once
per run it builds an image offline: a busybox rootfs layer plus ``--layers``
layers of random bytes (``--layer-mib`` MiB each, so nothing compresses), in
one hand-built ``docker load`` archive (``stack.load_layered_image``),
labelled ``org.dockhand.bench.pull=TOKEN``, tagged
``REGISTRY/dockhand-bench/pull-TOKEN:latest`` for the private registry and
pushed there. Every round first removes it from the engine (``docker rmi -f``
of its ID, then ``docker image prune -f`` of dangling images carrying this
run's label only, and checks that the image is gone), then pulls it with one of

* ``cli``: ``docker pull REF``, the real CLI, timed from spawn to exit: the floor;
* ``slack``: a SIGNED ``/pull REF`` slash command sent to ``dockhand slack``
  (a subprocess, HTTP mode, exactly as a person starts it; the Web API is a
  fake Slack, ``tests/fakes/slack_api.py``, enforcing Slack's rate limits),
  timed from sending the request until the fake Slack receives the final
  channel message (the ``chat.update`` saying "pulled"). The requester is an
  operator (``DOCKHAND_OPERATORS``);
* ``shell``: ``dockhand shell -c "pull REF"``, timed from spawn to exit;

and after each round the image must be on the engine. The three sides
alternate (cli, slack, shell, shell, slack, cli, …) so they see the same
machine load; one uncounted round of each goes first (the bot's first pull
opens its engine client and Slack session; the shell's first start writes
its bytecode). After each counted round three start-up references are timed
(spawn to exit, not in the ratios): ``python -c "import docker"`` (the least
any Python front end on docker-py pays to start), ``dockhand shell -c
version`` and ``docker version``.

Where the time goes, per round, seen from outside every client: the
registry's access log says when the engine first asked it for the image and
the engine's event stream (``GET /events``, action ``pull``) when the engine
had finished, which splits a round into *head* (client start-up, request,
until the engine reaches the registry), *engine* and *tail* (from the
engine's end until the client exits or the final Slack message arrives).
For the Slack rounds the timeline is also kept: when the HTTP ack came, when
the channel message was posted, each progress ``chat.update`` and the final
one, and any 429. CPU per round: the client process (for the bot, from
sending to the final message) and dockerd with its reaped children.
``--breakdown N`` adds N uncounted pairs of a raw ``POST /images/create``
read to its end in this process (the engine's own time) against the CLI.

The Python sides run with their bytecode cached (``--bytecode cached``, under
``/tmp/dockhand-bench-pycache``, outside the work tree), as an installed
Dockhand runs; ``--bytecode none`` keeps ``PYTHONDONTWRITEBYTECODE`` as found
(this sandbox sets it, so every start compiles Dockhand's modules again).

Results are printed and written to ``bench/results/pull-<label>-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import load_stack, ms, stats  # noqa: E402 - bench/ is on sys.path when run as a script

RESULTS = ROOT / "bench" / "results"
TARGET_RATIO = 1.10
LABEL = "org.dockhand.bench.pull"
SIDES = ("cli", "slack", "shell")
OPERATOR = "UBENCHPULL"
PYCACHE = "/tmp/dockhand-bench-pycache"  # bytecode of the Python sides (--bytecode cached)


# --- the private stack -----------------------------------------------------------------



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




class Image:
    """The run's image: built, pushed, then removed locally before every round."""

    def __init__(self, stackmod, paths, state, layers: int, layer_bytes: int):
        self.stackmod, self.paths, self.state = stackmod, paths, state
        self.token = uuid.uuid4().hex[:8]
        self.ref = f"{state['registry']}/dockhand-bench/pull-{self.token}:latest"
        self.layers, self.layer_bytes = layers, layer_bytes
        self.id = ""
        self.size = 0

    def build_and_push(self) -> dict:
        s = self.stackmod
        t = time.monotonic()
        tars = [(s.rootfs_tar({"etc/dockhand-bench": f"pull {self.token}\n"}), "busybox rootfs (bench/pull.py)")]
        for i in range(self.layers):
            tars.append((s.rootfs_tar({f"data/{i}.bin": os.urandom(self.layer_bytes)}, with_busybox=False),
                         f"COPY {i}.bin /data/{i}.bin  # {self.layer_bytes / 2**20:g} MiB random"))
        self.size = sum(len(t) for t, _ in tars)
        built = time.monotonic()
        self.id = s.load_layered_image(self.paths, self.ref, tars, labels={LABEL: self.token})
        loaded = time.monotonic()
        s.docker(self.paths, "push", self.ref)
        pushed = time.monotonic()
        del tars
        return {"ref": self.ref, "id": self.id, "layers": self.layers + 1, "bytes": self.size,
                "build_ms": ms(built - t), "load_ms": ms(loaded - built), "push_ms": ms(pushed - loaded)}

    def remove(self) -> float:
        """The image and any dangling leftovers of this run's (never anyone else's); the seconds it took."""
        t = time.monotonic()
        self.stackmod.docker(self.paths, "rmi", "-f", self.id, check=False)
        self.stackmod.docker(self.paths, "image", "prune", "-f", "--filter", f"label={LABEL}={self.token}",
                             check=False)
        left = self.stackmod.docker(self.paths, "images", "-aq", "--filter", f"label={LABEL}={self.token}").stdout
        if left.strip() or self.present():
            raise SystemExit(f"could not remove {self.ref}: {left.decode().split()}")
        return time.monotonic() - t

    def present(self) -> bool:
        info = self.stackmod.inspect_image(self.paths, self.ref)
        return bool(info) and info.get("Id") == self.id

    def forget_in_registry(self) -> None:
        s = self.stackmod
        digest = s.registry_digest(self.ref)
        if digest:
            registry, repo, _ = s.split_ref(self.ref)
            s.http_request(f"http://{registry}/v2/{repo}/manifests/{digest}", method="DELETE")


def proc_cpu(pid: int | None, children: bool = False) -> float:
    """CPU seconds process ``pid`` has used (with ``children``: plus its reaped
    children's, e.g. dockerd's docker-untar processes); nan when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return float("nan")


def spawn_timed(argv: list[str], env: dict) -> tuple[float, float, int, bytes]:
    """Wall seconds spawn -> exit, child CPU seconds, exit code, stderr tail."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = proc.stderr.read()  # until it exits (the pipe closes); small
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return took, usage.ru_utime + usage.ru_stime, proc.returncode, err[-2000:]


def raw_pull(socket_path: str, api_version: str, ref: str) -> tuple[float, int]:
    """``POST /images/create`` over the engine's unix socket, read to the end
    in this process: the engine's (and registry's) own time. (seconds, events)."""

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(socket_path)

    repo, _, tag = ref.rpartition(":")
    conn = Conn("localhost", timeout=300)
    try:
        t = time.perf_counter()
        conn.request("POST", f"/v{api_version}/images/create?"
                     + urllib.parse.urlencode({"fromImage": repo, "tag": tag}), headers={"Content-Length": "0"})
        r = conn.getresponse()
        body = r.read()
        took = time.perf_counter() - t
    finally:
        conn.close()
    if r.status != 200 or b'"error"' in body:
        raise SystemExit(f"raw pull failed: {r.status} {body[-300:]!r}")
    return took, body.count(b"\n")


class Markers:
    """Where the time of one pull goes, seen from outside every client: the
    registry's access log (``response completed`` lines, nanosecond times,
    with their durations) says when the engine first asked the registry for
    this image, and the engine's event stream (``GET /events``, action
    ``pull``, ``timeNano``) when the engine finished the pull. With the
    round's start and end (wall clock) that splits a round into head (client
    start-up and request, until the engine reaches the registry), engine
    (transfer, extraction, registration) and tail (from the engine's end
    until the client exits or the final Slack message arrives)."""

    _LINE = re.compile(r'^time="([^"]+)".*msg="response completed".*http\.request\.uri="([^"]+)"'
                       r'.*http\.response\.duration=(\S+)')

    def __init__(self, state: dict, image: Image):
        self.log = (state.get("logs") or {}).get("registry", "")
        self.socket = state["docker_socket"]
        self.version = (state.get("engine") or {}).get("api_version") or "1.41"
        self.repo_path = "/v2/" + image.stackmod.split_ref(image.ref)[1] + "/"
        self.ref = image.ref
        self.offset = 0
        self.t0 = 0.0

    def start(self) -> None:
        self.offset = os.path.getsize(self.log) if self.log and os.path.exists(self.log) else 0
        self.t0 = time.time()

    def registry_first(self) -> float | None:
        """Wall time the engine's first request for this image reached the registry."""
        if not self.log:
            return None
        first = None
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            for raw in f:
                m = self._LINE.match(raw.decode("utf-8", "replace"))
                if not m or not m.group(2).startswith(self.repo_path):
                    continue
                began = _wall(m.group(1)) - _go_duration(m.group(3))
                first = began if first is None else min(first, began)
        return first

    def engine_done(self) -> float | None:
        """Wall time of the engine's ``pull`` event for the image since the round began."""
        filters = json.dumps({"type": ["image"], "event": ["pull"]})
        query = urllib.parse.urlencode({"since": f"{self.t0 - 1:.9f}", "until": f"{time.time() + 0.5:.9f}",
                                        "filters": filters})

        class Conn(http.client.HTTPConnection):
            def connect(self_):
                self_.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self_.sock.connect(self.socket)

        conn = Conn("localhost", timeout=10)
        try:
            conn.request("GET", f"/v{self.version}/events?{query}")
            body = conn.getresponse().read()
        finally:
            conn.close()
        times = [int(e["timeNano"]) / 1e9 for e in map(json.loads, body.decode().splitlines())
                 if e.get("id") == self.ref and int(e["timeNano"]) / 1e9 >= self.t0]
        return min(times) if times else None

    def split(self, end_wall: float) -> dict:
        first, done = self.registry_first(), self.engine_done()
        if first is None or done is None:
            return {}
        return {"head_ms": ms(first - self.t0), "engine_ms": ms(done - first), "tail_ms": ms(end_wall - done)}


def _wall(stamp: str) -> float:
    """``2026-11-28T06:47:44.484069172Z`` as epoch seconds (nanoseconds kept)."""
    import calendar

    whole, _, frac = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def _go_duration(text: str) -> float:
    """A Go duration as the registry logs it (``1.02ms``, ``159.7ms``, ``1.2s``, ``850µs``), in seconds."""
    for unit, scale in (("ns", 1e-9), ("µs", 1e-6), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * scale
            except ValueError:
                return 0.0
    return 0.0


# --- the bot -----------------------------------------------------------------------------

class Bot:
    """``dockhand slack`` as a subprocess, pointed at a fake Slack in this process."""

    def __init__(self, state: dict, enforce: bool, profile: Path | None, bytecode: str = "cached"):
        from tests.fakes.slack_api import FakeSlack

        self.state = state
        self.fake = FakeSlack(enforce_rate_limits=enforce).start_in_thread()
        self.profile = profile
        self.bytecode = bytecode
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.state_dir = tempfile.TemporaryDirectory(prefix="dockhand-bench-pull-")
        self.session = None

    @staticmethod
    def secret() -> str:
        from tests.fakes.slack_api import SIGNING_SECRET

        return SIGNING_SECRET

    async def start(self) -> None:
        import aiohttp

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DOCKHAND_", "DOCKER_"))}
        env.update(PYTHONPATH=str(ROOT), DOCKHAND_LOG_LEVEL="WARNING",
                   SLACK_BOT_TOKEN=self.fake.bot_token, SLACK_SIGNING_SECRET=self.secret(),
                   SLACK_API_URL=self.fake.api_url, HOST="127.0.0.1", PORT=str(port),
                   DOCKER_HOST=self.state["docker_host"], DOCKER_CONFIG=self.state["docker_config"],
                   DOCKHAND_SEARCH_INDEX=self.state["index"], DOCKHAND_OPERATORS=OPERATOR,
                   DOCKHAND_STATE_DIR=self.state_dir.name)
        env = python_env(env, self.bytecode)
        script = Path(sys.executable).with_name("dockhand")
        cmd = [str(script), "slack"] if script.exists() else [sys.executable, "-m", "bot", "slack"]
        if self.profile:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(self.profile), "-m", "bot", "slack"]
        self.proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=str(ROOT / "bench"),
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
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    err = (await self.proc.stderr.read()).decode()[-2000:]
                    raise SystemExit(f"dockhand slack did not start: {err}")
                await asyncio.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}/slack/events"
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
        self.fake.stop_thread()
        self.state_dir.cleanup()

    async def command(self, command: str, text: str) -> tuple[float, float, int, str]:
        """Send one signed slash command; (sent, acked) monotonic times, HTTP status, response_url id."""
        from tests.fakes.slack_api import command_payload, form_body, signed_headers

        rid = uuid.uuid4().hex[:12]
        body = form_body(command_payload(command, text, response_url=self.fake.response_url(rid),
                                         user_id=OPERATOR, user_name="bench"))
        headers = signed_headers(self.secret(), body)
        sent = time.monotonic()
        async with self.session.post(self.url, data=body, headers=headers) as r:
            await r.read()
            status = r.status
        return sent, time.monotonic(), status, rid

    async def pull(self, ref: str, timeout: float = 240) -> dict:
        """``/pull ref`` until the final channel message; its timeline (seconds from sending)."""
        start_calls = len(self.fake.calls)
        sent, acked, status, rid = await self.command("/pull", ref)
        if status != 200:
            raise SystemExit(f"/pull was answered {status}")
        deadline = time.monotonic() + timeout
        final = None
        while final is None:
            for c in self.fake.calls[start_calls:]:
                if c.kind == "api" and c.name == "chat.update" and c.response.get("ok") and (
                        " pulled " in c.text or "could not pull" in c.text or "stopped while" in c.text):
                    final = c
                    break
                if c.kind == "response" and c.name == rid:  # an ephemeral answer: refused or failed
                    raise SystemExit(f"/pull was answered privately: {c.text[:300]}")
            if final is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no final message within {timeout:.0f}s")
                # the time taken is the fake's receipt time (Call.at), not when this loop notices:
                # a slow poll keeps this process off the CPUs the engine and the bot need
                await asyncio.sleep(0.025)
        if " pulled " not in final.text:
            raise SystemExit(f"the pull failed: {final.text[:400]}")
        calls = [c for c in self.fake.calls[start_calls:] if c.kind == "api" and c.at <= final.at]
        posted = [c for c in calls if c.name == "chat.postMessage"]
        interims = [c for c in calls if c.name == "chat.update" and c is not final]
        return {"took": final.at - sent, "ack_ms": ms(acked - sent),
                "posted_ms": ms(posted[0].at - sent) if posted else None,
                "progress_updates_ms": [ms(c.at - sent) for c in interims],
                "final_ms": ms(final.at - sent),
                "after_last_progress_ms": ms(final.at - interims[-1].at) if interims else None,
                "ratelimited_429": sum(1 for c in calls if c.status == 429)}


# --- the run ---------------------------------------------------------------------------

def python_env(base: dict, bytecode: str) -> dict:
    """The environment of a Python side. An installed Dockhand has its
    bytecode compiled (pip writes .pyc files; a first run writes them in
    __pycache__): with ``cached`` the modules' bytecode is kept under
    ``PYCACHE`` (outside the work tree) and reused from the warm-up round on;
    ``none`` keeps PYTHONDONTWRITEBYTECODE as found, so a module without a
    .pyc is compiled at every start."""
    env = dict(base)
    if bytecode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


async def run(args, stackmod, paths, state) -> dict:
    load_avg = os.getloadavg()
    image = Image(stackmod, paths, state, args.layers, int(args.layer_mib * 2**20))
    print(f"building and pushing {image.ref} ({args.layers + 1} layers) ...", flush=True)
    setup = image.build_and_push()
    print(f"  {setup['bytes'] / 1e6:.1f} MB in {setup['layers']} layers: build {setup['build_ms']:.0f} ms, "
          f"docker load {setup['load_ms']:.0f} ms, push {setup['push_ms']:.0f} ms", flush=True)
    markers = Markers(state, image)
    cli = state.get("docker_cli") or "docker"
    cli_env = stackmod.cli_env(paths)
    shell_dir = tempfile.TemporaryDirectory(prefix="dockhand-bench-pull-shell-")
    shell_env = {k: v for k, v in cli_env.items() if not k.startswith(("SLACK_", "DOCKHAND_"))}
    shell_env.update(DOCKHAND_STATE_DIR=shell_dir.name, DOCKHAND_HISTORY=os.path.join(shell_dir.name, "history"))
    shell_env = python_env(shell_env, args.bytecode)
    dockhand = str(Path(sys.executable).with_name("dockhand"))
    api_version = (state.get("engine") or {}).get("api_version") or "1.41"
    bot = Bot(state, args.enforce_rate_limits, args.profile, args.bytecode)
    keys = (*SIDES, *(f"{side}_cpu" for side in SIDES), *(f"{side}_dockerd_cpu" for side in SIDES),
            *(f"{side}_bench_cpu" for side in SIDES), "raw_api", "remove",
            "python_import_docker", "dockhand_shell_version", "docker_version")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    rounds: list[dict] = []
    try:
        await bot.start()
        await bot.command("/docker", "version")  # warm: Bolt's auth.test, imports, the engine client

        async def one(side: str, n: int, counted: bool = True) -> None:
            removed = image.remove()
            entry: dict = {"round": n, "side": side, "counted": counted, "remove_ms": ms(removed),
                           "load_avg_1min": round(os.getloadavg()[0], 2)}
            dockerd = (state.get("pids") or {}).get("dockerd")
            engine_cpu, bot_cpu = proc_cpu(dockerd, children=True), proc_cpu(bot.proc.pid)
            own_cpu = time.process_time()
            markers.start()
            if side == "cli":
                took, cpu, code, err = spawn_timed([cli, "pull", image.ref], cli_env)
                if code:
                    raise SystemExit(f"docker pull exited {code}: {err.decode(errors='replace')}")
                entry["cpu_ms"] = ms(cpu)
            elif side == "shell":
                took, cpu, code, err = spawn_timed([dockhand, "shell", "-c", f"pull {image.ref}"], shell_env)
                if code:
                    raise SystemExit(f"dockhand shell exited {code}: {err.decode(errors='replace')}")
                entry["cpu_ms"] = ms(cpu)
            elif side == "slack":
                timeline = await bot.pull(image.ref)
                took = timeline.pop("took")
                entry.update(timeline)
            else:  # raw_api (breakdown)
                took, events = raw_pull(state["docker_socket"], api_version, image.ref)
                entry["events"] = events
            end_wall = markers.t0 + took
            entry["dockerd_cpu_ms"] = ms(proc_cpu(dockerd, children=True) - engine_cpu)
            entry["bench_cpu_ms"] = ms(time.process_time() - own_cpu)  # this process (and its fake Slack)
            if side == "slack":
                entry["cpu_ms"] = ms(proc_cpu(bot.proc.pid) - bot_cpu)
            if not image.present():
                raise SystemExit(f"round {n} ({side}): {image.ref} is not on the engine after the pull")
            entry["ms"] = ms(took)
            entry.update(markers.split(end_wall))
            if counted:
                # start-up references of this round (not in the ratios)
                for key, argv, env in (("python_import_docker", [sys.executable, "-c", "import docker"], shell_env),
                                       ("dockhand_shell_version", [dockhand, "shell", "-c", "version"], shell_env),
                                       ("docker_version", [cli, "version"], cli_env)):
                    t, _, code, err = spawn_timed(argv, env)
                    if code:
                        raise SystemExit(f"{' '.join(argv[-3:])} exited {code}: {err.decode(errors='replace')}")
                    samples[key].append(t)
                samples[side].append(took)
                samples["remove"].append(removed)
                samples[side + "_cpu"].append(entry["cpu_ms"] / 1000)
                samples[side + "_dockerd_cpu"].append(entry["dockerd_cpu_ms"] / 1000)
                samples[side + "_bench_cpu"].append(entry["bench_cpu_ms"] / 1000)
            elif side == "raw_api":
                samples["raw_api"].append(took)
            rounds.append(entry)
            extra = ""
            if "head_ms" in entry:
                extra += (f"  head {entry['head_ms']:>6.1f} engine {entry['engine_ms']:>7.1f} "
                          f"tail {entry['tail_ms']:>6.1f}")
            if side == "slack":
                extra += (f"  | ack {entry['ack_ms']} posted {entry['posted_ms']} progress "
                          f"{entry['progress_updates_ms']} 429s {entry['ratelimited_429']}")
            print(f"  {'' if counted else '(uncounted) '}round {n:>2} {side:<7} {entry['ms']:>8.1f} ms"
                  f"{extra}", flush=True)

        if args.warmup:
            for side in SIDES:
                await one(side, 0, counted=False)
        for n in range(1, args.rounds + 1):
            for side in (SIDES if n % 2 else tuple(reversed(SIDES))):
                await one(side, n)
        for n in range(1, args.breakdown + 1):
            for side in (("raw_api", "cli") if n % 2 else ("cli", "raw_api")):
                await one(side, n, counted=False)
    finally:
        await bot.stop()
        problems = []
        try:
            image.remove()
        except SystemExit as exc:
            problems.append(str(exc))
        image.forget_in_registry()
        shell_dir.cleanup()
        for e in problems:
            print(e, file=sys.stderr)
    return {"setup": setup, "samples": samples, "rounds": rounds, "load_avg_at_start": load_avg,
            "ratelimited_429": len(bot.fake.ratelimited)}


def split_medians(rounds: list[dict], side: str) -> dict | None:
    mine = [r for r in rounds if r["side"] == side and "head_ms" in r and (r["counted"] or side == "raw_api")]
    if not mine:
        return None
    return {k: round(statistics.median(r[k] for r in mine), 1) for k in ("head_ms", "engine_ms", "tail_ms")}


def report(args, state, got: dict) -> dict:
    s = got["samples"]
    med = {k: statistics.median(v) for k, v in s.items() if v}
    slack_rounds = [r for r in got["rounds"] if r["side"] == "slack" and r["counted"]]
    out = {
        "benchmark": "/pull through Slack (until the final message) and `dockhand shell -c pull` "
                     "vs `docker pull` of the same image from the local registry",
        "command": "python bench/pull.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "engine": state.get("engine", {}).get("version"), "load_avg_at_start": got["load_avg_at_start"],
                    "load_avg_at_end": os.getloadavg()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "image": got["setup"],
        "target_ratio": TARGET_RATIO,
        "docker_cli_pull": stats(s["cli"]),
        "slack_pull": stats(s["slack"]),
        "shell_pull": stats(s["shell"]),
        "ratio_of_medians": {"slack_over_cli": round(med["slack"] / med["cli"], 3),
                             "shell_over_cli": round(med["shell"] / med["cli"], 3)},
        # the same round's pulls side by side (rounds alternate, so a pair shares the machine's load)
        "ratio_per_round": {"slack_over_cli": [round(a / b, 3) for a, b in zip(s["slack"], s["cli"])],
                            "shell_over_cli": [round(a / b, 3) for a, b in zip(s["shell"], s["cli"])]},
        "startup_references": {"python_import_docker": stats(s["python_import_docker"]),
                               "dockhand_shell_version": stats(s["dockhand_shell_version"]),
                               "docker_version": stats(s["docker_version"])},
        # CPU of the client process during the round (the bot: its CPU from sending to the final message)
        # and of dockerd with its reaped children (docker-untar); dockerd serves other clients too
        "client_cpu": {side: stats(s[f"{side}_cpu"]) for side in SIDES},
        "dockerd_cpu": {side: stats(s[f"{side}_dockerd_cpu"]) for side in SIDES},
        "bench_process_cpu": {side: stats(s[f"{side}_bench_cpu"]) for side in SIDES},
        "removal_between_rounds": stats(s["remove"]),
        # head: until the engine first asks the registry; engine: until its pull event; tail: until the end
        "split_medians_ms": {side: split_medians(got["rounds"], side) for side in (*SIDES, "raw_api")},
        "slack_timeline_medians_ms": {
            "ack": round(statistics.median(r["ack_ms"] for r in slack_rounds), 1),
            "channel_message_posted": round(statistics.median(r["posted_ms"] for r in slack_rounds
                                                              if r["posted_ms"]), 1),
            "progress_updates": statistics.median(len(r["progress_updates_ms"]) for r in slack_rounds),
            "final_after_last_progress": round(statistics.median(
                [r["after_last_progress_ms"] for r in slack_rounds if r["after_last_progress_ms"] is not None]
                or [float("nan")]), 1),
        },
        "ratelimited_429": got["ratelimited_429"],
        "rounds": got["rounds"],
    }
    if s["raw_api"]:
        out["raw_api_pull"] = stats(s["raw_api"])
    r = out["ratio_of_medians"]
    out["target_met"] = {"slack": r["slack_over_cli"] <= TARGET_RATIO, "shell": r["shell_over_cli"] <= TARGET_RATIO}
    return out


def print_report(r: dict) -> None:
    def row(name, st):
        return (f"  {name:<44} n={st['n']:<3} median {st['median_ms']:>8.1f} ms   min {st['min_ms']:>8.1f}"
                f"   max {st['max_ms']:>8.1f}")

    img = r["image"]
    print(f"\nPulling {img['bytes'] / 1e6:.1f} MB in {img['layers']} layers from the local registry, "
          f"{r['params']['rounds']} alternating rounds per side, {r['machine']['cpus']} CPUs, "
          f"engine {r['machine']['engine']}, bytecode {r['params']['bytecode']}")
    print(row("docker pull (spawn -> exit)", r["docker_cli_pull"]))
    print(row("/pull via Slack (request -> final message)", r["slack_pull"]))
    print(row("dockhand shell -c pull (spawn -> exit)", r["shell_pull"]))
    if "raw_api_pull" in r:
        print(row("raw POST /images/create (breakdown)", r["raw_api_pull"]))
    st = r["startup_references"]
    print(row("python -c 'import docker'", st["python_import_docker"]))
    print(row("dockhand shell -c version", st["dockhand_shell_version"]))
    print(row("docker version", st["docker_version"]))
    for side, name in (("cli", "docker CLI process"), ("slack", "dockhand slack process, per pull"),
                       ("shell", "dockhand shell process")):
        print(row(f"CPU: {name}", r["client_cpu"][side]))
    for side in SIDES:
        print(row(f"CPU: dockerd (+children) in {side} rounds", r["dockerd_cpu"][side]))
    print(row("CPU: this process + fake Slack, slack rounds", r["bench_process_cpu"]["slack"]))
    print("  medians of head (until the engine reaches the registry) / engine (until its pull event) / tail:")
    for side, sp in r["split_medians_ms"].items():
        if sp:
            print(f"    {side:<8} head {sp['head_ms']:>7.1f} ms   engine {sp['engine_ms']:>7.1f} ms   "
                  f"tail {sp['tail_ms']:>7.1f} ms")
    t = r["slack_timeline_medians_ms"]
    print(f"  Slack: ack {t['ack']} ms, channel message {t['channel_message_posted']} ms, "
          f"{t['progress_updates']} progress updates, final {t['final_after_last_progress']} ms after the last one; "
          f"429s: {r['ratelimited_429']}")
    ratio = r["ratio_of_medians"]
    per = r["ratio_per_round"]
    print(f"ratio per round: slack/cli {per['slack_over_cli']}\n                 shell/cli {per['shell_over_cli']}")
    print(f"ratio of medians: slack/cli {ratio['slack_over_cli']:.3f}   shell/cli {ratio['shell_over_cli']:.3f}")
    met = r["target_met"]
    print(f"target <= {r['target_ratio']}: slack {'met' if met['slack'] else 'MISSED'}, "
          f"shell {'met' if met['shell'] else 'MISSED'}")


async def main_async(args) -> int:
    stackmod, paths, state = load_stack()
    got = await run(args, stackmod, paths, state)
    r = report(args, state, got)
    print_report(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"pull-{args.label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(r, indent=2) + "\n")
    print(f"written: {path.relative_to(ROOT)}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="rounds per side (they alternate)")
    p.add_argument("--layers", type=int, default=5, help="random layers on top of the busybox one")
    p.add_argument("--layer-mib", type=float, default=20.0, help="MiB of random bytes in each")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the uncounted first rounds")
    p.add_argument("--no-rate-limits", dest="enforce_rate_limits", action="store_false",
                   help="the fake Slack does not enforce Slack's rate limits")
    p.add_argument("--breakdown", type=int, default=0, metavar="N",
                   help="then N uncounted rounds of a raw POST /images/create in this process against the CLI")
    p.add_argument("--profile", type=Path, help="run dockhand slack under cProfile, stats written to this file")
    p.add_argument("--bytecode", choices=("cached", "none"), default="cached",
                   help="cached: the Python sides reuse compiled bytecode, as an installed Dockhand does "
                        "(kept under " + PYCACHE + "); none: PYTHONDONTWRITEBYTECODE as found")
    p.add_argument("--label", default="local-registry", help="names the result file")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.layers < 1:
        p.error("--layers must be at least 1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

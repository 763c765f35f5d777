#!/usr/bin/env python3
"""One confirmed removal of 200 images against `docker rmi` of the same 200 IDs.

    .venv/bin/python bench/removal.py [--rounds 10] [--images 200] [--breakdown N] [--distinct-layers]

Needs the private test stack (``tests/stack/stack.py up`` is run first). Each
round makes ``--images`` small distinct images on the private engine with one
``docker load`` of a hand-built archive (single-layer images, each with its
own config, so its own ID; all labelled with the round's token and tagged
``dockhand-bench/removal-TOKEN:N``, so nothing else is ever named and nobody's
dangling-image prune takes them). By default they share one layer of that
round's (``docker load`` then takes ~0.6 s); ``--distinct-layers`` gives each
its own layer (the engine unpacks each in a child process: ~65 ms per image).
Their IDs are read back from the engine, then they are removed with either

* ``dockhand``: ``plan = await dispatch("rmi ID ID …", admin, services)`` (the
  plan, timed on its own), then ``await operations.confirm(plan.operation.id,
  admin, services)``, timed: the person's click to the final reply;
* ``docker_cli``: ``docker rmi ID ID …`` (the real CLI, one process), timed
  from spawn to exit: the floor.

The IDs are the 12-character ones ``docker images -q`` prints, for both (200
full IDs would pass Dockhand's 4,000-character command line limit).
``services`` comes from ``bot.wiring.build_services`` (real SQLite store and
hash-chained audit log in a temporary state dir), built once and warmed, as in
a running bot. Rounds alternate (ABBA: dockhand, cli, cli, dockhand, …) so
both see the same machine load; one uncounted round of each goes first. After
each round none of the round's images may be left, every one of them must be
among what the remover reports deleted, and Dockhand's operation must be "done".

``--breakdown N`` then runs N uncounted rounds of five removers: Dockhand with
its engine, store and audit calls timed one by one (methods wrapped on the
instances; no file changes), raw docker-py (``APIClient.remove_image`` in a
loop), the same with a single connection pool, raw ``http.client`` over one
keep-alive connection, and the CLI; each with the CPU time of the client and
of dockerd (which other clients may share).
Results are printed and written to ``bench/results/removal-<label>-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import load_stack, ms, stats  # noqa: E402 - bench/ is on sys.path when run as a script

RESULTS = ROOT / "bench" / "results"
TARGET_RATIO = 1.2
LABEL = "org.dockhand.bench"
RUN_LABEL = "org.dockhand.bench.run"
ADMIN = "UBENCHADMIN"
BREAKDOWN_SIDES = ("dockhand", "raw_docker_py", "raw_docker_py_one_pool", "raw_http", "docker_cli")


# --- the private stack -----------------------------------------------------------------



# --- making N distinct images in one `docker load` -------------------------------------

def _add(tf: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
    ti = tarfile.TarInfo(name)
    ti.mtime = 1700000000
    ti.uname = ti.gname = "root"
    if data is None:
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
    else:
        ti.size, ti.mode = len(data), 0o644
        tf.addfile(ti, io.BytesIO(data))


def layer_tar(content: bytes) -> bytes:
    """A one-file layer (``/dockhand-bench``), as small as a tar gets."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        _add(tf, "dockhand-bench", content)
    return buf.getvalue()


def archive(token: str, n: int, arch: str, distinct_layers: bool) -> tuple[bytes, list[str], str]:
    """A `docker save` archive of ``n`` single-layer images with distinct configs
    (so distinct IDs), each with a layer of its own or all sharing one layer of
    this round's; (archive bytes, their IDs, their repository)."""
    repo = f"dockhand-bench/removal-{token}"
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    manifest, ids, layers = [], [], set()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(n):
            layer = layer_tar(f"{token} {i if distinct_layers else 'shared'}\n".encode())
            diff_id = hashlib.sha256(layer).hexdigest()
            config = json.dumps({
                "architecture": arch, "os": "linux", "created": created,
                "config": {"Cmd": ["/dockhand-bench"],
                           "Labels": {LABEL: "removal", RUN_LABEL: token, f"{LABEL}.n": str(i)}},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
                "history": [{"created": created, "created_by": "bench/removal.py"}],
            }, separators=(",", ":")).encode()
            config_id = hashlib.sha256(config).hexdigest()
            _add(tf, f"{config_id}.json", config)
            if diff_id not in layers:
                layers.add(diff_id)
                _add(tf, diff_id)
                _add(tf, f"{diff_id}/layer.tar", layer)
            manifest.append({"Config": f"{config_id}.json", "RepoTags": [f"{repo}:{i}"],
                             "Layers": [f"{diff_id}/layer.tar"]})
            ids.append("sha256:" + config_id)
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    return buf.getvalue(), ids, repo


class Images:
    """Creates, lists and (on the way out) cleans up this run's images only."""

    def __init__(self, stackmod, paths, n: int, distinct_layers: bool):
        self.stackmod, self.paths, self.n, self.distinct_layers = stackmod, paths, n, distinct_layers
        self.cli = stackmod.docker_cli()
        self.env = stackmod.cli_env(paths)
        self.arch = stackmod.docker_arch()
        self.tokens: list[str] = []

    def docker(self, *args: str, input: bytes | None = None) -> str:
        r = subprocess.run([self.cli, *args], input=input, capture_output=True, env=self.env, timeout=300)
        if r.returncode:
            raise SystemExit(f"docker {' '.join(args[:3])} failed: {r.stderr.decode().strip()[-500:]}")
        return r.stdout.decode()

    def ids(self, token: str) -> list[str]:
        out = self.docker("images", "-a", "-q", "--no-trunc", "--filter", f"label={RUN_LABEL}={token}")
        return sorted(set(out.split()))

    def make(self) -> tuple[str, list[str], float]:
        token = uuid.uuid4().hex[:12]
        self.tokens.append(token)
        data, expected, _ = archive(token, self.n, self.arch, self.distinct_layers)
        t = time.perf_counter()
        self.docker("load", "-q", input=data)
        took = time.perf_counter() - t
        ids = self.ids(token)
        if ids != sorted(expected):
            raise SystemExit(f"docker load made {len(ids)} images, expected {len(expected)}")
        return token, expected, took

    def cleanup(self) -> None:
        """Remove whatever this run left behind (after a failure)."""
        for token in self.tokens:
            left = self.ids(token)
            if left:
                subprocess.run([self.cli, "rmi", "-f", *left], capture_output=True, env=self.env)


# --- the two ways to remove them -------------------------------------------------------

def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli_rmi(images: Images, ids: list[str]) -> tuple[float, float, list[str]]:
    """`docker rmi ID…`, spawn to exit; its CPU time; what it reports deleted (images and layers)."""
    cpu = children_cpu()
    t = time.perf_counter()
    proc = subprocess.Popen([images.cli, "rmi", *ids], env=images.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = proc.communicate()
    took = time.perf_counter() - t
    cpu = children_cpu() - cpu
    if proc.returncode:
        raise SystemExit(f"docker rmi exited {proc.returncode}: {err.decode().strip()[-500:]}")
    deleted = [line.split(": ", 1)[1] for line in out.decode().splitlines() if line.startswith("Deleted: ")]
    return took, cpu, deleted


async def dockhand_rmi(services, actor, ids: list[str], timings: "Timings | None" = None
                       ) -> tuple[float, float, float, list[str], dict]:
    """Plan (timed alone), then one confirmation (timed, and its CPU time in
    this process, all threads); the IDs it deleted."""
    from handlers import operations
    from handlers.dispatch import dispatch

    t = time.perf_counter()
    plan = await dispatch("rmi " + " ".join(ids), actor, services)
    planned = time.perf_counter() - t
    if plan.operation is None or plan.operation.state != "pending":
        raise SystemExit(f"the plan asks for no confirmation: {plan.summary}")
    if timings is not None:
        timings.reset()  # only the confirmation's calls
    cpu = time.process_time()
    t = time.perf_counter()
    reply = await operations.confirm(plan.operation.id, actor, services)
    confirmed = time.perf_counter() - t
    cpu = time.process_time() - cpu
    op = reply.operation
    if op is None or op.state != "done":
        raise SystemExit(f"the confirmation did not finish: state {op.state if op else None}: {reply.summary}")
    return planned, confirmed, cpu, list(op.result.get("deleted") or []), {"summary": reply.summary}


# --- breakdown: where a confirmation's time goes ---------------------------------------

class Timings:
    """Wraps the async methods of the engine, store and audit log *instances*
    (no file is changed) and sums the wall time spent awaiting each."""

    def __init__(self):
        self.calls: dict[str, list[float]] = {}
        self.undo: list = []

    def wrap(self, obj, name: str, label: str) -> None:
        original = getattr(obj, name)

        @functools.wraps(original)
        async def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.calls.setdefault(label, []).append(time.perf_counter() - t)

        setattr(obj, name, timed)
        self.undo.append((obj, name))

    def install(self, services) -> None:
        for name in ("remove_image", "list_images", "list_containers", "disk_usage"):
            self.wrap(services.engine, name, f"engine.{name}")
        for name in ("get", "transition", "add"):
            self.wrap(services.store, name, f"store.{name}")
        self.wrap(services.audit, "record", "audit.record")

    def remove(self) -> None:
        for obj, name in self.undo:
            delattr(obj, name)  # back to the class's method
        self.undo.clear()

    def reset(self) -> dict:
        out = {k: {"n": len(v), "total_ms": round(sum(v) * 1000, 1),
                   "median_ms": round(statistics.median(v) * 1000, 2)} for k, v in self.calls.items()}
        self.calls = {}
        return out


def raw_docker_py(host: str, ids: list[str], one_pool: bool = False) -> tuple[float, float]:
    """Sequential ``APIClient.remove_image`` calls on one client, in this
    thread: the SDK's own cost, without Dockhand. Wall and CPU time.

    On a unix socket docker-py 7.1 keeps one connection pool per URL (at most
    10), so 200 different ``/images/ID`` URLs open 200 connections;
    ``one_pool`` mounts an adapter with a single pool, which keeps one."""
    import threading

    import docker
    from docker.transport import UnixHTTPAdapter
    from docker.transport.unixconn import UnixHTTPConnectionPool

    class OnePool(UnixHTTPAdapter):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.one, self.lock = None, threading.Lock()

        def get_connection(self, url, proxies=None):
            with self.lock:
                if self.one is None:
                    self.one = UnixHTTPConnectionPool(url, self.socket_path, self.timeout, maxsize=self.max_pool_size)
                return self.one

        def close(self):
            super().close()
            if self.one is not None:
                self.one.close()

    api = docker.APIClient(base_url=host, version="auto")
    adapter = api.get_adapter(api.base_url)
    if one_pool and isinstance(adapter, UnixHTTPAdapter):
        api.mount("http+docker://", OnePool("http+unix://" + adapter.socket_path, adapter.timeout))
        adapter.close()
    try:
        cpu = time.process_time()
        t = time.perf_counter()
        for i in ids:
            api.remove_image(i)
        return time.perf_counter() - t, time.process_time() - cpu
    finally:
        api.close()


def raw_http(socket_path: str, api_version: str, ids: list[str]) -> tuple[float, float]:
    """The same DELETEs over ONE keep-alive connection with the standard
    library's http.client (what the Go CLI does): a Python floor. Wall and CPU."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(socket_path)

    conn = Conn("localhost", timeout=60)
    try:
        cpu = time.process_time()
        t = time.perf_counter()
        for i in ids:
            conn.request("DELETE", f"/v{api_version}/images/{i}?force=False&noprune=False")
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"DELETE /images/{i}: {r.status} {body[:200]!r}")
            json.loads(body)
        return time.perf_counter() - t, time.process_time() - cpu
    finally:
        conn.close()


def dockerd_cpu(pid: int | None) -> float:
    """CPU seconds the private dockerd has used (it serves other clients too: indicative only)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


# --- the run ---------------------------------------------------------------------------



async def run(args, stackmod, paths, state) -> dict:
    from bot.config import Settings
    from bot.wiring import build_services, close_services
    from handlers.dispatch import dispatch
    from handlers.context import Actor

    load_avg = os.getloadavg()
    images = Images(stackmod, paths, args.images, args.distinct_layers)
    actor = Actor(ADMIN, "bench-admin", via="slack", channel="CBENCH")
    tmp = tempfile.TemporaryDirectory(prefix="dockhand-bench-removal-")
    services = build_services(Settings(docker_host=state["docker_host"], state_dir=tmp.name,
                                       admins=frozenset({ADMIN}), host_label="bench"))
    samples: dict[str, list] = {k: [] for k in ("dockhand", "dockhand_cpu", "dockhand_plan", "docker_cli",
                                                  "docker_cli_cpu", "load")}
    api_version = (state.get("engine") or {}).get("api_version") or "1.41"
    dockerd = (state.get("pids") or {}).get("dockerd")
    rounds: list[dict] = []
    breakdown: list[dict] = []
    try:
        await dispatch("images", actor, services)  # warm: client, version negotiation, store

        async def one(side: str, n: int, counted: bool = True, timings: Timings | None = None) -> None:
            token, full_ids, load_s = images.make()
            # as `docker images -q` prints them (200 full IDs would pass Dockhand's 4,000-character line limit)
            ids = [i[7:19] for i in full_ids]
            entry = {"round": n, "side": side, "load_ms": ms(load_s), "counted": counted}
            engine_cpu = dockerd_cpu(dockerd)
            if side == "dockhand":
                if timings is not None:
                    timings.install(services)
                try:
                    plan_s, took, cpu_s, deleted, extra = await dockhand_rmi(services, actor, ids, timings)
                finally:
                    if timings is not None:
                        timings.remove()
                entry.update(plan_ms=ms(plan_s), **extra)
            elif side == "docker_cli":
                took, cpu_s, deleted = cli_rmi(images, ids)
            elif side.startswith("raw_docker_py"):  # breakdown only; full IDs, as Dockhand sends them
                took, cpu_s = raw_docker_py(state["docker_host"], full_ids, one_pool=side.endswith("one_pool"))
                deleted = list(full_ids)
            else:  # raw_http, breakdown only
                took, cpu_s = raw_http(state["docker_socket"], api_version, full_ids)
                deleted = list(full_ids)
            entry.update(ms=ms(took), client_cpu_ms=ms(cpu_s))
            entry["dockerd_cpu_ms"] = ms(dockerd_cpu(dockerd) - engine_cpu)
            left = images.ids(token)
            if left or not set(full_ids) <= set(deleted):
                raise SystemExit(f"round {n} ({side}): {len(left)} images left, {len(deleted)} reported deleted")
            if timings is not None:
                entry["calls"] = timings.reset()
            print(f"  {'' if counted else '(breakdown) '}round {n:>2} {side:<13} "
                  + "  ".join(f"{k} {v}" for k, v in entry.items() if k.endswith("ms")), flush=True)
            if counted:
                samples["load"].append(load_s)
                samples[side].append(took)
                samples[side + "_cpu"].append(cpu_s)
                if side == "dockhand":
                    samples["dockhand_plan"].append(plan_s)
                rounds.append(entry)
            else:
                breakdown.append(entry)

        if args.warmup:
            for side in ("dockhand", "docker_cli"):
                await one(side, 0, counted=False)
            breakdown.clear()
        for n in range(1, args.rounds + 1):
            order = ("dockhand", "docker_cli") if n % 2 else ("docker_cli", "dockhand")
            for side in order:
                await one(side, n)
        timings = Timings()
        for n in range(1, args.breakdown + 1):
            for side in BREAKDOWN_SIDES if n % 2 else reversed(BREAKDOWN_SIDES):
                await one(side, n, counted=False, timings=timings if side == "dockhand" else None)
    except BaseException:
        images.cleanup()
        raise
    finally:
        await close_services(services)
        tmp.cleanup()
    return {"samples": samples, "rounds": rounds, "breakdown": breakdown, "load_avg_at_start": load_avg}


def report(args, state, got: dict) -> dict:
    s = got["samples"]
    confirm, cli = statistics.median(s["dockhand"]), statistics.median(s["docker_cli"])
    ratio = confirm / cli
    out = {
        "benchmark": f"one confirmed removal of {args.images} images vs `docker rmi` of the same IDs",
        "command": "python bench/removal.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "engine": state.get("engine", {}).get("version"), "load_avg_at_start": got["load_avg_at_start"],
                    "load_avg_at_end": os.getloadavg()},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target_ratio": TARGET_RATIO,
        "dockhand_confirm": stats(s["dockhand"]),
        "dockhand_plan": stats(s["dockhand_plan"]),
        "docker_cli_rmi": stats(s["docker_cli"]),
        "docker_load": stats(s["load"]),
        "client_cpu": {"dockhand_confirm": stats(s["dockhand_cpu"]), "docker_cli_rmi": stats(s["docker_cli_cpu"])},
        "ratio_of_medians": round(ratio, 3),
        "ratio_per_pair": [round(a / b, 3) for a, b in zip(s["dockhand"], s["docker_cli"])],
        "target_met": ratio <= TARGET_RATIO,
        "rounds": got["rounds"],
    }
    if got["breakdown"]:
        out["breakdown"] = breakdown_summary(got["breakdown"])
        out["breakdown_rounds"] = got["breakdown"]
    return out


def breakdown_summary(entries: list[dict]) -> dict:
    """Medians per side, and for the instrumented confirmations the median
    time awaited in each kind of call and what is left (work on the event loop)."""
    out: dict = {}
    for side in BREAKDOWN_SIDES:
        mine = [e for e in entries if e["side"] == side]
        if not mine:
            continue
        out[side] = {"n": len(mine), "median_ms": round(statistics.median(e["ms"] for e in mine), 1),
                     "client_cpu_median_ms": round(statistics.median(e["client_cpu_ms"] for e in mine), 1),
                     "dockerd_cpu_median_ms": round(statistics.median(e["dockerd_cpu_ms"] for e in mine), 1)}
    confirms = [e for e in entries if e["side"] == "dockhand"]
    if confirms:
        names = sorted({k for e in confirms for k in e["calls"]})
        calls = {k: {"n": confirms[0]["calls"].get(k, {}).get("n", 0),
                     "median_total_ms": round(statistics.median(e["calls"].get(k, {}).get("total_ms", 0.0)
                                                                for e in confirms), 1)} for k in names}
        rest = [e["ms"] - sum(c["total_ms"] for c in e["calls"].values()) for e in confirms]
        calls["rest (event loop: re-plan, fingerprint, reply)"] = {"n": 1, "median_total_ms":
                                                                   round(statistics.median(rest), 1)}
        out["dockhand_confirm_calls"] = calls
    return out


def print_report(r: dict) -> None:
    def row(name, st):
        return f"  {name:<34} n={st['n']:<3} median {st['median_ms']:>8.1f} ms   min {st['min_ms']:>8.1f}   max {st['max_ms']:>8.1f}"

    print(f"\nRemoving {r['params']['images']} images, {r['params']['rounds']} alternating rounds per side, "
          f"{r['machine']['cpus']} CPUs, engine {r['machine']['engine']}")
    print(row("dockhand confirm (click -> reply)", r["dockhand_confirm"]))
    print(row("docker rmi (spawn -> exit)", r["docker_cli_rmi"]))
    print(row("dockhand plan (not in the ratio)", r["dockhand_plan"]))
    print(row("docker load (setup)", r["docker_load"]))
    print(row("CPU: dockhand process, confirm", r["client_cpu"]["dockhand_confirm"]))
    print(row("CPU: docker CLI process", r["client_cpu"]["docker_cli_rmi"]))
    print(f"ratio of medians dockhand/cli: {r['ratio_of_medians']:.2f}  per pair: {r['ratio_per_pair']}")
    print(f"target <= {r['target_ratio']}: {'met' if r['target_met'] else 'MISSED'}")
    b = r.get("breakdown")
    if b:
        print("breakdown rounds (not in the ratio; medians):")
        for side in BREAKDOWN_SIDES:
            if side in b:
                x = b[side]
                print(f"  {side:<22} n={x['n']:<3} wall {x['median_ms']:>8.1f} ms   client CPU {x['client_cpu_median_ms']:>7.1f}"
                      f" ms   dockerd CPU {x['dockerd_cpu_median_ms']:>7.1f} ms")
        print("  time awaited per kind of call in one confirmation:")
        for k, v in b.get("dockhand_confirm_calls", {}).items():
            print(f"    {k:<48} x{v['n']:<4} {v['median_total_ms']:>8.1f} ms")


async def main_async(args) -> int:
    stackmod, paths, state = load_stack()
    got = await run(args, stackmod, paths, state)
    r = report(args, state, got)
    print_report(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"removal-{args.label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(r, indent=2) + "\n")
    print(f"written: {path.relative_to(ROOT)}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="rounds per side (they alternate)")
    p.add_argument("--images", type=int, default=200, help="images removed per round")
    p.add_argument("--distinct-layers", action="store_true",
                   help="give every image a layer of its own (docker load then takes ~65 ms per image)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the uncounted first round of each side")
    p.add_argument("--breakdown", type=int, default=0, metavar="N",
                   help="then N uncounted rounds of: dockhand with per-call timings, raw docker-py (also with one "
                        "connection pool), raw http.client, docker CLI")
    p.add_argument("--label", help="names the result file (default: shared-layer or distinct-layers)")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.label = args.label or ("distinct-layers" if args.distinct_layers else "shared-layer")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

"""Shell front end vs the docker CLI, on the same private engine, same run.

Measures wall time of `dockhand shell -c CMD` against `docker CMD` (process
start included: that is what a person waits for), the in-process cost of
dispatch() against one raw docker-py call, and the peak RSS of each process.
Reports ratios; the machine is shared and noisy, so absolute numbers vary.

    python3 tests/stack/stack.py up
    .venv/bin/python bench/shell_vs_cli.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stack_state() -> dict:
    subprocess.run([sys.executable, str(ROOT / "tests/stack/stack.py"), "up"], check=True,
                   stdout=subprocess.DEVNULL)
    env_out = subprocess.run([sys.executable, str(ROOT / "tests/stack/stack.py"), "env"], check=True,
                             capture_output=True, text=True).stdout  # the checkout's own stack dir
    d = next(line.split("=", 1)[1] for line in env_out.splitlines() if line.startswith("export DOCKHAND_STACK_DIR="))
    return json.loads(Path(shlex.split(d)[0], "state.json").read_text())


def timed(argv, env, runs):
    """Wall times of ``runs`` runs, and the peak RSS (KiB) of the process itself (wait4)."""
    times, rss = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - t)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} exited {proc.returncode}")
        rss = max(rss, usage.ru_maxrss)
    return times, rss


def summary(times):
    return {"median_ms": round(statistics.median(times) * 1000, 1),
            "p90_ms": round(sorted(times)[int(len(times) * 0.9) - 1] * 1000, 1)}


async def in_process(state, runs):
    import docker

    from bot.engine import DockerEngine
    from handlers.dispatch import dispatch
    from handlers.context import Actor, Services

    engine = DockerEngine(state["docker_host"])
    services = Services(engine=engine)
    actor = Actor("bench")
    await dispatch("images", actor, services)  # warm: client creation, version negotiation
    raw = docker.APIClient(base_url=state["docker_host"], version="auto")
    t_dispatch, t_raw = [], []
    for _ in range(runs):
        t = time.perf_counter()
        await dispatch("images", actor, services)
        t_dispatch.append(time.perf_counter() - t)
        t = time.perf_counter()
        raw.images()
        t_raw.append(time.perf_counter() - t)
    await engine.close()
    raw.close()
    return t_dispatch, t_raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    state = stack_state()
    env = {**os.environ, "DOCKER_HOST": state["docker_host"], "DOCKER_CONFIG": state["docker_config"]}
    env = {k: v for k, v in env.items() if not k.startswith("SLACK_")}
    cli = state.get("docker_cli") or "docker"
    dockhand = str(Path(sys.executable).with_name("dockhand"))
    results = {"runs": args.runs, "engine": state.get("engine", {})}
    for name, cmd in (("images", "images"), ("info", "info"), ("search", f"search {state['index']}/ubuntu")):
        ours, ours_rss = timed([dockhand, "shell", "-c", cmd], env, args.runs)
        theirs, their_rss = timed([cli, *cmd.split()], env, args.runs)
        results[name] = {"dockhand": summary(ours), "docker_cli": summary(theirs),
                         "ratio_median": round(statistics.median(ours) / statistics.median(theirs), 2),
                         "peak_rss_kib": {"dockhand": ours_rss, "docker_cli": their_rss}}
    # The floor for any Python front end on docker-py: start the interpreter, import the SDK.
    floor, floor_rss = timed([sys.executable, "-c", "import docker, asyncio"], env, args.runs)
    results["floor_python_import_docker"] = {**summary(floor), "peak_rss_kib": floor_rss}
    d, r = asyncio.run(in_process(state, args.runs * 5))
    results["in_process_images"] = {"dispatch": summary(d), "raw_docker_py": summary(r),
                                    "ratio_median": round(statistics.median(d) / statistics.median(r), 2)}
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results" / "shell_vs_cli.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

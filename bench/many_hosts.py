"""`/images @all` across 4 engines against `/images` on one, same run; then
the same with one of the four frozen (SIGSTOP).

Four private engines on unix sockets: the stack's own and three more started
here (tests/stack/stack.py's start_dockerd), each given the same number of
images. Dockhand's services are built from settings as `dockhand` builds them
(DOCKHAND_HOSTS_FILE, one per-host timeout), and `dispatch()` is timed in
process: that is what a Slack reply or a shell command costs after start-up.
Runs alternate (one host, then all four) so load on the shared machine hits
both alike. With one engine frozen, the fan-out's `emit` gives each answer as
it comes: the time until the three answering hosts' sections are out is
compared with the normal fan-out; the whole reply waits for the frozen host's
timeout, and names it.

    .venv/bin/python bench/many_hosts.py [--runs 30] [--images 20] [--timeout 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import load_stack, ms, stats  # noqa: E402

NAMES = ("one", "two", "three", "four")


def docker(stack, host: str, *args: str, input: bytes | None = None) -> None:
    env = stack.clean_env()
    env["DOCKER_HOST"] = host
    subprocess.run([stack.docker_cli(), *args], input=input, env=env, check=True, capture_output=True, timeout=120)


async def measure(args, stack, hosts: dict[str, str]) -> dict:
    from bot.config import load_settings
    from bot.wiring import build_services, close_services
    from handlers.dispatch import dispatch
    from handlers.context import Actor
    from handlers.replies import HostHeading

    root = Path(tempfile.mkdtemp(prefix="dh-bench-hosts-"))
    hosts_file = root / "hosts.toml"
    hosts_file.write_text(f"timeout = {args.timeout}\n" + "".join(
        f'[hosts.{n}]\nurl = "{u}"\n' for n, u in hosts.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKHAND_", "SLACK_"))}
    env.update(DOCKHAND_HOSTS_FILE=str(hosts_file), DOCKHAND_STATE_DIR=str(root / "state"))
    services = build_services(load_settings(env, slack=False))
    actor = Actor("bench", "bench", via="shell")
    try:
        for line in ("images", "images @all"):  # warm: connections, engine versions
            await dispatch(line, actor, services)
        one, many = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            r = await dispatch("images", actor, services)
            one.append(time.perf_counter() - t)
            assert r.ok
            t = time.perf_counter()
            r = await dispatch("images @all", actor, services)
            many.append(time.perf_counter() - t)
            assert r.ok and len([p for p in r.parts if isinstance(p, HostHeading)]) == 4
        result = {"one_host": stats(one), "four_hosts": stats(many),
                  "ratio_of_medians": round(statistics.median(many) / statistics.median(one), 3)}
        # the control: the engines' own listing, four at once against one (docker-py in threads, no
        # Dockhand): what the machine allows before any of Dockhand's work
        engines = [s.engine for s in services.fleet.targets.values()]
        raw_one, raw_many = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            await engines[0].list_images()
            raw_one.append(time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.gather(*(e.list_images() for e in engines))
            raw_many.append(time.perf_counter() - t)
        result["engines_alone"] = {"one": stats(raw_one), "four": stats(raw_many), "ratio_of_medians": round(
            statistics.median(raw_many) / statistics.median(raw_one), 3)}

        frozen_pid = int(Path(stack_paths[NAMES[-1]].dockerd_pid).read_text().strip())
        os.kill(frozen_pid, signal.SIGSTOP)
        others, whole, named = [], [], []
        try:
            for _ in range(args.frozen_runs):
                first_three: list[float] = []
                t = time.perf_counter()

                async def emit(interim, t=t, out=first_three):
                    heads = [p for p in interim.parts if isinstance(p, HostHeading)]
                    if not out and sum(1 for h in heads if not h.pending) == 3:
                        out.append(time.perf_counter() - t)

                r = await dispatch("images @all", actor, services, emit=emit)
                whole.append(time.perf_counter() - t)
                others.append(first_three[0] if first_three else float("nan"))
                last = [p for p in r.parts if isinstance(p, HostHeading)][-1]
                named.append(f"{last.host}: {last.detail}")
        finally:
            os.kill(frozen_pid, signal.SIGCONT)
        result["one_frozen"] = {"three_answers_out": stats(others), "whole_reply": stats(whole),
                                "frozen_host_said": sorted(set(named)),
                                "three_answers_vs_normal_fan_out": round(
                                    statistics.median(others) / statistics.median(many), 3)}
        return result
    finally:
        await close_services(services)
        shutil.rmtree(root, ignore_errors=True)


stack_paths: dict = {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--frozen-runs", type=int, default=6)
    p.add_argument("--images", type=int, default=20, help="images put on each engine")
    p.add_argument("--timeout", type=float, default=2.0, help="each host's fan-out timeout (s)")
    p.add_argument("--latency", type=float, default=0.0,
                   help="ms each engine's answers are delayed by (bench/latency_proxy.py): hosts across a network")
    args = p.parse_args()
    stack, paths, state = load_stack()
    root = Path(tempfile.mkdtemp(prefix="dh-bh-", dir="/tmp"))  # short: containerd's socket path
    extra = [stack.Paths(str(root / n)) for n in NAMES[1:]]
    hosts = {NAMES[0]: state["docker_host"]}
    stack_paths[NAMES[0]] = paths
    repo = f"dockhand-bench-hosts/img-{os.getpid()}"
    proxies: list[subprocess.Popen] = []
    try:
        for n, p_ in zip(NAMES[1:], extra):
            os.makedirs(p_.root)
            stack.start_dockerd(p_)
            hosts[n] = p_.docker_host
            stack_paths[n] = p_
        for n, url in hosts.items():
            for i in range(args.images):
                docker(stack, url, "import", "-", f"{repo}:{i}", input=stack.rootfs_tar({"i": f"{n}{i}".encode()}))
        if args.latency:
            for n, url in list(hosts.items()):
                sock = str(root / f"{n}-delayed.sock")
                proxies.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "latency_proxy.py"), sock,
                                                 url[len("unix://"):], str(args.latency)]))
                for _ in range(100):
                    if os.path.exists(sock):
                        break
                    time.sleep(0.05)
                hosts[n] = "unix://" + sock
        result = asyncio.run(measure(args, stack, hosts))
    finally:
        for proc in proxies:
            proc.kill()
            proc.wait()
        for i in range(args.images):
            subprocess.run([stack.docker_cli(), "-H", state["docker_host"], "rmi", "-f", f"{repo}:{i}"],
                           capture_output=True, env=stack.clean_env())
        for p_ in extra:
            stack.stop_dockerd(p_)
        shutil.rmtree(root, ignore_errors=True)
    result.update(engines=len(hosts), images_per_engine=args.images, timeout_s=args.timeout, runs=args.runs,
                  latency_ms=args.latency, cpus=os.cpu_count(),
                  load_average=os.getloadavg(), at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    kind = f"latency-{args.latency:g}ms" if args.latency else "local"
    out = ROOT / "bench" / "results" / f"many_hosts-{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    f = result["one_frozen"]
    print(f"images on one host:   median {result['one_host']['median_ms']} ms")
    print(f"images @all (4):      median {result['four_hosts']['median_ms']} ms "
          f"(ratio {result['ratio_of_medians']}, target <= 1.3)")
    raw = result["engines_alone"]
    print(f"engines alone (control): one {raw['one']['median_ms']} ms, four at once {raw['four']['median_ms']} ms "
          f"(ratio {raw['ratio_of_medians']})")
    print(f"one engine frozen:    three answers out after median {f['three_answers_out']['median_ms']} ms "
          f"({f['three_answers_vs_normal_fan_out']} x the normal fan-out); whole reply "
          f"{f['whole_reply']['median_ms']} ms; {f['frozen_host_said']}")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

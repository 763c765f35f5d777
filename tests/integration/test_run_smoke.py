"""`docker run` as a smoke test on the private engine: the tutorial's
`docker run hello-world` through `dockhand shell --yes -c`, a missing image
pulled first, the sandbox seen from inside and from the engine, the time
limit, a cancelled or failing run, and never a container left behind."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace

import pytest

from bot.config import Settings
from bot.wiring import build_services, close_services
from handlers.dispatch import dispatch
from handlers.context import Actor
from tests.integration.shell_helpers import STATE_DIR, dockhand, dockhand_env

SHELL = Actor("root", "root", via="shell")
RUN_LABEL = "org.dockhand.run"


def containers(stack) -> set[str]:
    """Every container on the engine, whatever its state."""
    return set(stack.docker("ps", "-a", "-q", "--no-trunc").stdout.split())


def last_audit_record() -> dict:
    with open(os.path.join(STATE_DIR, "audit.jsonl"), encoding="utf-8") as f:
        return json.loads(f.read().splitlines()[-1])


def run_containers(docker_client) -> list[dict]:
    return docker_client.api.containers(all=True, filters={"label": RUN_LABEL})


@pytest.fixture
async def services(stack, tmp_path):
    made = []

    def make(**settings):
        s = build_services(replace(Settings(docker_host=stack.docker_host, state_dir=str(tmp_path / "state")),
                                   **settings))
        made.append(s)
        return s

    yield make
    for s in made:
        await close_services(s)


def test_the_tutorials_docker_run_hello_world(stack):
    before = containers(stack)
    hello = stack.seed("hello_world")
    r = dockhand("shell", "--yes", "-c", f"docker run {hello}", stack=stack)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello from Dockhand!\n")
    assert "Exit code 0." in r.stdout and "the container was removed" in r.stdout
    assert "no network, read-only root filesystem" in r.stdout
    assert "Unable to find image" not in r.stdout  # it was there: not pulled
    assert containers(stack) == before
    record = last_audit_record()
    assert record["event"] == "done" and record["command"] == f"docker run {hello}"
    assert record["detail"]["result"] == "exit code 0" and record["detail"]["image_id"].startswith("sha256:")


def test_a_missing_image_is_pulled_first_then_run(stack, make_image):
    img = make_image(push=True, cmd=("/bin/cat", "/etc/dockhand-throwaway"))
    stack.docker("rmi", img.ref)
    before = containers(stack)
    r = dockhand("shell", "--yes", "-c", f"docker run {img.ref}", stack=stack)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Unable to find image '{img.ref}' locally"
    assert lines[1] == f"{img.tag}: Pulling from {img.repo.split('/', 1)[1]}"
    assert any(line.startswith("Status: Downloaded newer image for") for line in lines)
    assert f"{img.ref} " in r.stdout  # the image's own file, printed by the container
    assert "Exit code 0." in r.stdout
    assert stack.docker("image", "inspect", img.ref).returncode == 0  # the pull stays, as with the CLI
    assert containers(stack) == before


def test_the_sandbox_from_inside(stack):
    """No network interface but lo, a read-only root, a writable /tmp, the
    memory, CPU and process limits, no capabilities, no new privileges."""
    script = ("echo NET; cat /proc/net/dev; echo END; "
              "touch /probe 2>&1 || echo ROOT-READ-ONLY; "  # one stream: the order is kept
              "touch /tmp/probe && echo TMP-WRITABLE; "
              "echo MEM; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "echo PIDS; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; "
              "echo CPU; cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
              "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    before = containers(stack)
    env = dockhand_env(stack, DOCKHAND_RUN_MEMORY="64m", DOCKHAND_RUN_CPUS="0.5", DOCKHAND_RUN_PIDS="40")
    r = dockhand("shell", "--yes", "-c", f"docker run {stack.seed('busybox_latest')} sh -c \"{script}\"", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()

    def after(marker: str) -> str:
        return lines[lines.index(marker) + 1]

    net = lines[lines.index("NET") + 3:lines.index("END")]  # after /proc/net/dev's two header lines
    assert [line.split(":")[0].strip() for line in net] == ["lo"]
    assert "ROOT-READ-ONLY" in lines and "touch: /probe: Read-only file system" in lines
    assert "TMP-WRITABLE" in lines
    assert after("MEM") == str(64 * 1024 * 1024)
    assert after("PIDS") == "40"
    assert after("CPU").split()[0] == "50000"  # half of the 100000 µs period (v1: quota; v2: "50000 100000")
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines
    assert "64MiB memory, 0.5 CPU, 40 processes" in r.stdout
    assert containers(stack) == before


async def test_the_sandbox_as_the_engine_sees_it_while_it_runs(stack, docker_client, services):
    s = services(run_timeout=20.0, run_memory=96 * 1024 * 1024, run_cpus=0.25, run_pids=33)
    before = containers(stack)
    task = asyncio.create_task(dispatch(f"docker run {stack.seed('busybox_latest')} sleep 2", SHELL, s))
    found = []
    for _ in range(100):
        found = await asyncio.to_thread(run_containers, docker_client)
        if found:
            break
        await asyncio.sleep(0.05)
    assert found, "the run's container never showed"
    info = await asyncio.to_thread(docker_client.api.inspect_container, found[0]["Id"])
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and info["Config"].get("NetworkDisabled") is True
    assert info["NetworkSettings"]["Networks"].keys() <= {"none"}
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 96 * 1024 * 1024 and host["MemorySwap"] == 96 * 1024 * 1024
    assert host["NanoCpus"] == 250_000_000 and host["PidsLimit"] == 33
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["AutoRemove"] is False and not host.get("Binds") and not host.get("PortBindings")
    assert info["Name"].startswith("/dockhand-run-")
    reply = await task
    assert reply.ok and reply.meta["exit_code"] == 0
    assert reply.meta["image_id"] == info["Image"]  # the record names what really ran
    assert containers(stack) == before


def test_a_run_past_its_time_limit_is_killed_and_removed(stack):
    before = containers(stack)
    env = dockhand_env(stack, DOCKHAND_RUN_TIMEOUT="2")
    started = time.monotonic()
    r = dockhand("shell", "--yes", "-c", f"docker run {stack.seed('busybox_latest')} sh -c 'echo started; sleep 600'",
                 env=env)
    elapsed = time.monotonic() - started
    assert r.returncode == 1
    assert "was still running after 2 s, its time limit: it was killed and removed" in r.stderr
    assert "started" in r.stdout + r.stderr  # what it printed before it was killed
    assert elapsed < 30
    assert containers(stack) == before
    record = last_audit_record()
    assert record["event"] == "failed" and record["detail"]["result"].endswith("exit code 137")


async def test_a_cancelled_run_removes_its_container(stack, docker_client, services):
    s = services(run_timeout=60.0)
    before = containers(stack)
    task = asyncio.create_task(dispatch(f"docker run {stack.seed('busybox_latest')} sleep 600", SHELL, s))
    for _ in range(100):
        if await asyncio.to_thread(run_containers, docker_client):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the run's container never showed")
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 15
    assert containers(stack) == before and run_containers(docker_client) == []
    interrupted = await s.store.in_state("interrupted")
    assert [op.command for op in interrupted] == [f"docker run {stack.seed('busybox_latest')} sleep 600"]


def test_a_run_that_fails_to_start_is_removed_and_said_so(stack):
    before = containers(stack)
    r = dockhand("shell", "--yes", "-c",
                 f"docker run --entrypoint /no/such/program {stack.seed('busybox_latest')}", stack=stack)
    # the engine refuses to start it (400: a bad argument, as the CLI's exit status 2 for usage)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Error response from daemon" in r.stderr and "/no/such/program" in r.stderr
    assert containers(stack) == before


def test_exit_codes_and_refused_flags_through_the_shell(stack):
    before = containers(stack)
    busybox = stack.seed("busybox_latest")
    failed = dockhand("shell", "--yes", "-c", f"docker run {busybox} sh -c 'echo bad >&2; exit 3'", stack=stack)
    assert failed.returncode == 1 and "The container exited with code 3." in failed.stderr
    assert "bad" in failed.stderr  # stderr of the container is in its output
    for line, flag in ((f"docker run -v /:/host {busybox} ls /host", "-v"),
                       (f"docker run --network host {busybox}", "--network"),
                       (f"docker run --privileged {busybox}", "--privileged"),
                       (f"docker run -d {busybox} sleep 60", "-d"),
                       (f"docker run -p 8080:80 {busybox}", "-p"),
                       (f"docker run -e SECRET=1 {busybox}", "-e")):
        refused = dockhand("shell", "--yes", "-c", line, stack=stack)
        assert refused.returncode == 2, line
        assert f"flag {flag} is not supported by Dockhand" in refused.stderr
    assert containers(stack) == before


def test_stale_runs_of_a_dead_dockhand_are_swept(stack, docker_client):
    """A run container past its deadline (its Dockhand died mid-run) is removed by the next run."""
    busybox = stack.seed("busybox_latest")
    stale = docker_client.api.create_container(busybox, ["sleep", "600"], name=f"dockhand-run-stale{int(time.time())}",
                                               labels={RUN_LABEL: "smoke-test", f"{RUN_LABEL}.deadline": "1"},
                                               host_config=docker_client.api.create_host_config(network_mode="none"))
    try:
        r = dockhand("shell", "--yes", "-c", f"docker run {busybox} true", stack=stack)
        assert r.returncode == 0, r.stderr
        assert run_containers(docker_client) == []
    finally:
        stack.docker("rm", "-f", stale["Id"], check=False)

"""`scripts/run`, as a new user runs it: which engine it uses, and never the sample engine by surprise.

The default socket is pointed elsewhere with DOCKHAND_DEFAULT_DOCKER_HOST (the
tests never touch /var/run/docker.sock); the sample engine is the session's
private stack (DOCKHAND_STACK_DIR).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN = str(ROOT / "scripts" / "run")
NOWHERE = "unix:///tmp/dockhand-test-no-engine-here.sock"
SAMPLE_NOTE = "[Dockhand's sample engine"


def run_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKHAND_", "SLACK_"))}
    env.update(DOCKHAND_HISTORY=os.devnull, DOCKHAND_STATE_DIR=tempfile.mkdtemp(prefix="dh-run-state-"),
               DOCKHAND_DEFAULT_DOCKER_HOST=NOWHERE)
    env.update(extra)
    return env


def scripts_run(*args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([RUN, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/tmp")


def unused_stack_dir() -> str:
    d = tempfile.mkdtemp(prefix="dh-run-nostack-")
    os.rmdir(d)
    return d


def test_help_and_version_answer_without_starting_an_engine():
    d = unused_stack_dir()
    env = run_env(DOCKHAND_STACK_DIR=d)
    h = scripts_run("--help", env=env)
    assert h.returncode == 0, h.stderr
    assert "Usage: scripts/run" in h.stdout and "usage: dockhand" in h.stdout
    v = scripts_run("--version", env=env)
    assert v.returncode == 0 and v.stdout.startswith("dockhand "), v.stdout + v.stderr
    a = scripts_run("audit", "verify", env=env)  # the audit log needs no engine either
    assert a.returncode == 1 and "there is no audit log at" in a.stderr, a.stdout + a.stderr  # a fresh state dir
    assert "sample" not in (h.stderr + v.stderr + a.stderr).lower()
    assert not os.path.exists(d)  # no stack was started, or even prepared


@pytest.mark.parametrize("host", [NOWHERE, "tcp://127.0.0.1:9"])
@pytest.mark.parametrize("mode", [["shell", "-c", "images"], ["slack"]])
def test_docker_host_set_but_silent_is_an_error_never_the_sample_engine(host, mode):
    d = unused_stack_dir()
    r = scripts_run(*mode, env=run_env(DOCKER_HOST=host, DOCKHAND_STACK_DIR=d,
                                       SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="s"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"no Docker Engine answers at DOCKER_HOST={host}" in r.stderr
    assert "fix DOCKER_HOST" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == "" and not os.path.exists(d)


def test_default_engine_that_answers_is_used_and_no_stack_starts(stack):
    d = unused_stack_dir()
    r = scripts_run("shell", "-c", "version", env=run_env(DOCKHAND_DEFAULT_DOCKER_HOST=stack.docker_host,
                                                          DOCKHAND_STACK_DIR=d))
    assert r.returncode == 0, r.stderr
    assert "Server:" in r.stdout and "starting Dockhand's private SAMPLE engine" not in r.stderr
    assert not os.path.exists(d)


def test_nothing_answers_and_no_docker_host_starts_the_sample_engine_and_says_so(stack):
    r = scripts_run("shell", "-c", "images", env=run_env(DOCKHAND_STACK_DIR=stack.dir))
    assert r.returncode == 0, r.stderr
    assert "starting Dockhand's private SAMPLE engine" in r.stderr
    assert f"sample engine at DOCKER_HOST={stack.docker_host}" in r.stderr
    assert "# eval" not in r.stdout + r.stderr  # scripts/run already did it
    assert "REPOSITORY" in r.stdout and f"{stack.registry}/dockhand/busybox" in r.stdout
    assert SAMPLE_NOTE in r.stderr  # the reply itself says where it comes from


def test_docker_host_from_dotenv_counts_as_set():
    """dockhand reads .env in the checkout; so does scripts/run's choice of engine."""
    dotenv = ROOT / ".env"
    if dotenv.exists():
        pytest.skip("this checkout has its own .env")
    d = unused_stack_dir()
    dotenv.write_text(f"DOCKER_HOST={NOWHERE}\n")
    try:
        r = scripts_run("shell", "-c", "images", env=run_env(DOCKHAND_STACK_DIR=d,
                                                             DOCKHAND_DEFAULT_DOCKER_HOST="unix:///tmp/x.sock"))
    finally:
        dotenv.unlink()
    assert r.returncode == 1 and f"no Docker Engine answers at DOCKER_HOST={NOWHERE}" in r.stderr, r.stderr
    assert not os.path.exists(d)

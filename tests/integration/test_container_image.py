"""Dockhand's container image, built and run on the private engine.

`scripts/image build --debian-base` assembles (or reuses) a Debian base with
Python offline, makes the wheels outside the build and builds the Dockerfile
with `docker build --network none`; the containers then run with the settings
of compose.yaml, translated to `docker run` flags (every key it has; a key this
file does not know fails the test), always with `--network none` and the
private engine's socket mounted where compose.yaml mounts the host's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.integration.shell_helpers import table

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image"
SIGNING_SECRET = "dockhand-image-test-signing-secret"
# The first test also waits for the image: debootstrap (about 1.5 min cold, once
# per stack: the base stays in the engine, its tarball under <stack>/cache) and
# the build (about 1 min).
pytestmark = pytest.mark.timeout(900)


def _version() -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def socket_path(stack) -> str:
    path = stack.docker_host.removeprefix("unix://")
    assert path != "/var/run/docker.sock" and os.path.exists(path)
    return path


@pytest.fixture(scope="module")
def socket_gid(socket_path) -> str:
    return str(os.stat(socket_path).st_gid)


@pytest.fixture(scope="module")
def image(stack, socket_gid):
    """The image, built by scripts/image on the Debian base (assembled offline once, then cached)."""
    tag = f"dockhand-test/image:{uuid.uuid4().hex[:8]}"
    env = dict(stack.env, DOCKER_BUILDKIT="0")  # the legacy builder: no buildx on these machines
    argv = [sys.executable, str(SCRIPT), "build", "--debian-base", "--cache", os.path.join(stack.dir, "cache"),
            "--docker-gid", socket_gid, "--tag", tag]  # fmt: skip
    bases = lambda: set(stack.docker("images", "-q", "--no-trunc", "dockhand-base").stdout.split())  # noqa: E731
    had = bases()
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=900)
    assert r.returncode == 0, f"scripts/image build failed:\n{r.stderr[-4000:]}"
    assert r.stdout.strip() == tag
    print(f"\nimage built in {time.monotonic() - t0:.0f}s:\n{r.stderr}", file=sys.stderr)
    try:
        yield tag
    finally:
        # The engine is left as it was: a base this build imported goes too
        # (its root filesystem stays cached under <stack>/cache: 4 s to import again).
        stack.docker("rmi", "--force", tag, *(bases() - had), check=False)


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(ROOT / "compose.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _interpolate(value, variables: dict):
    """Compose's `${VAR}` / `${VAR:-default}` in strings, recursively."""
    if isinstance(value, str):
        def sub(m):
            name, default = m.group(1), m.group(3)
            return variables.get(name) or (default if default is not None else "")
        return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, value)
    if isinstance(value, list):
        return [_interpolate(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, variables) for k, v in value.items()}
    return value


def _duration(value: str) -> str:
    assert re.fullmatch(r"\d+(ms|s|m|h)", value), value
    return value


class ComposeRun:
    """compose.yaml's `dockhand` service as `docker run` flags on the private engine."""

    def __init__(self, compose: dict, *, image: str, socket: str, gid: str, env_file: Path, volume: str):
        variables = {"DOCKER_SOCKET": socket, "DOCKER_GID": gid}
        self.service = _interpolate(compose["services"]["dockhand"], variables)
        self.volume_name = volume
        self.named_volumes = set((compose.get("volumes") or {}).keys())
        self.image, self.env_file = image, env_file
        self.healthcheck: dict = {}
        self.restart = "no"
        self.containers: list[str] = []  # removed (with their anonymous volumes) in teardown

    def flags(self, *, fast_health: bool = False) -> list[str]:
        """The flags; `fast_health`: the health check every second, a 1 s start period (0 would mean the image's)."""
        s = self.service
        out = ["--network", "none"]  # compose's default network is a bridge: never here
        for key, value in s.items():
            if key in ("image", "build", "command"):
                continue  # the image is the one built above; command: see argv()
            elif key == "env_file":
                out += ["--env-file", str(self.env_file)]
            elif key == "environment":
                items = value.items() if isinstance(value, dict) else (v.split("=", 1) for v in value)
                for k, v in items:
                    out += ["-e", f"{k}={v}"]
            elif key == "volumes":
                for v in value:
                    src, dst = v.split(":", 1)
                    if src in self.named_volumes:
                        src = self.volume_name
                    out += ["-v", f"{src}:{dst}"]
            elif key == "group_add":
                out += [a for g in value for a in ("--group-add", str(g))]
            elif key == "hostname":
                out += ["--hostname", str(value)]
            elif key == "user":
                out += ["--user", str(value)]
            elif key == "read_only":
                out += ["--read-only"] if value else []
            elif key == "tmpfs":
                out += [a for t in value for a in ("--tmpfs", t)]
            elif key == "cap_drop":
                out += [a for c in value for a in ("--cap-drop", c)]
            elif key == "security_opt":
                out += [a for o in value for a in ("--security-opt", o)]
            elif key == "restart":
                self.restart = value  # for detached containers only (not with --rm)
            elif key == "stop_grace_period":
                out += ["--stop-timeout", str(int(_duration(value).rstrip("s")))]
            elif key == "ports":
                pass  # no network here, so nothing to publish; the port is the image's EXPOSE
            elif key == "healthcheck":
                self.healthcheck = value
                out += ["--health-interval", "1s" if fast_health else _duration(value["interval"]),
                        "--health-timeout", _duration(value["timeout"]),
                        "--health-start-period", "1s" if fast_health else _duration(value["start_period"]),
                        "--health-retries", str(value["retries"])]  # fmt: skip
            elif key == "logging":
                out += ["--log-driver", value["driver"]]
                out += [a for k, v in value.get("options", {}).items() for a in ("--log-opt", f"{k}={v}")]
            else:
                pytest.fail(f"compose.yaml's service has `{key}`, which this test does not translate to docker run")
        return out

    def command(self) -> list[str]:
        return list(self.service.get("command") or [])


@pytest.fixture()
def compose_run(compose, image, socket_path, socket_gid, tmp_path, stack):
    env_file = tmp_path / ".env"
    # What a user puts in .env (the README's Deploy section); no Slack tokens
    # unless a test adds them.
    env_file.write_text("DOCKHAND_LOG_LEVEL=INFO\nDOCKHAND_HOST_LABEL=image-test\n", encoding="utf-8")
    volume = f"dockhand-test-state-{uuid.uuid4().hex[:8]}"
    run = ComposeRun(compose, image=image, socket=socket_path, gid=socket_gid, env_file=env_file, volume=volume)
    try:
        yield run
    finally:
        for c in run.containers:
            stack.docker("rm", "--force", "--volumes", c, check=False)
        stack.docker("volume", "rm", "--force", volume, check=False)


def _docker_run(stack, run: ComposeRun, *args: str, entrypoint: str | None = None, timeout: float = 120):
    argv = ["run", "--rm", *run.flags()]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    return stack.docker(*argv, run.image, *args, check=False, timeout=timeout)


def test_version_in_the_image(stack, image):
    r = stack.docker("run", "--rm", "--network", "none", image, "--version")
    assert r.stdout.strip() == f"dockhand {_version()}"


def test_image_is_small_non_root_and_declares_its_contract(stack, image, socket_gid):
    info = json.loads(stack.docker("image", "inspect", image).stdout)[0]
    config = info["Config"]
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["dockhand"] and config["Cmd"] == ["slack"]
    assert config["Healthcheck"]["Test"] == ["CMD", "dockhand", "shell", "-c", "version"]
    assert "/var/lib/dockhand" in config["Volumes"]
    assert "DOCKHAND_STATE_DIR=/var/lib/dockhand" in config["Env"]
    assert info["Size"] < 200e6, f"the image grew to {info['Size'] / 1e6:.0f} MB"
    # The build ran without network on the private engine: no stage image left behind.
    left = stack.docker("images", "-q", "--filter", "dangling=true", "--filter", "label=org.dockhand.stage=build")
    assert left.stdout.strip() == ""
    # The docker GID given at build time is a group of the user in /etc/group.
    r = stack.docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-G")
    assert socket_gid in r.stdout.split(), r.stdout


def test_compose_settings_run_as_non_root_in_the_socket_group(stack, compose_run, socket_gid):
    probe = ("import os, json; print(json.dumps({'uid': os.getuid(), 'groups': os.getgroups(), "
             "'rootfs_writable': os.access('/', os.W_OK), 'state_writable': os.access('/var/lib/dockhand', os.W_OK)}))")
    r = _docker_run(stack, compose_run, "-c", probe, entrypoint="python3")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["uid"] == 10001
    assert int(socket_gid) in got["groups"]
    assert got["rootfs_writable"] is False and got["state_writable"] is True


def test_images_in_the_container_match_docker_images(stack, compose_run):
    ours = _docker_run(stack, compose_run, "shell", "-c", "docker images")
    theirs = stack.docker("images")
    assert ours.returncode == 0, ours.stderr
    h1, r1 = table(ours.stdout)
    h2, r2 = table(theirs.stdout)
    assert h1 == h2 == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    created = h1.index("CREATED")
    rows = lambda rs: Counter(tuple(c for i, c in enumerate(r) if i != created) for r in rs)  # noqa: E731
    assert rows(r1) == rows(r2), f"\nin the container:\n{ours.stdout}\ndocker images:\n{theirs.stdout}"
    assert any(r[0] == compose_run.image.split(":")[0] for r in r1)  # the container sees its own image


def test_shell_writes_the_audit_log_to_the_state_volume(stack, compose_run, make_image):
    img = make_image()
    r = _docker_run(stack, compose_run, "shell", "--yes", "-c", f"rmi {img.ref}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stack.docker("image", "inspect", img.ref, check=False).returncode != 0  # really removed
    verify = _docker_run(stack, compose_run, "audit", "verify")
    assert verify.returncode == 0 and "the hash chain verifies" in verify.stdout, verify.stdout + verify.stderr
    show = _docker_run(stack, compose_run, "audit", "show", "-n", "5")
    assert img.ref.split("/")[-1].split(":")[0] in show.stdout


# A fake Slack inside the container (its loopback: the container has no
# network), so that `dockhand slack`, the image's command, starts as PID 1.
# It prints every call it receives on stdout (`docker logs`), one JSON line each.
FAKE_SLACK = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, "/fakes")
    from slack_api import FakeSlack
    fake = FakeSlack(bot_token="xoxb-image-test").start_in_thread()
    with open("/tmp/slack-port.part", "w") as f:
        f.write(str(fake.port))
    os.rename("/tmp/slack-port.part", "/tmp/slack-port")
    seen = 0
    while True:
        calls = list(fake.calls)
        for c in calls[seen:]:
            print(json.dumps({"fake_slack": c.kind, "name": c.name, "body": c.body}), flush=True)
        seen = len(calls)
        time.sleep(0.2)
""")

SLASH = textwrap.dedent("""
    import hashlib, hmac, sys, time, urllib.parse, urllib.request
    port = open("/tmp/slack-port").read()
    body = urllib.parse.urlencode({"command": "/docker", "text": "images", "user_id": "UALICE",
        "user_name": "alice", "channel_id": "CIMAGE", "team_id": "T0DOCKHAND", "trigger_id": "t" + str(time.time()),
        "response_url": f"http://127.0.0.1:{port}/response/r1"}).encode()
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(sys.argv[1].encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request("http://127.0.0.1:3000/slack/events", data=body, headers={
        "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig,
        "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status)
""")


def _health(stack, name: str) -> dict:
    return json.loads(stack.docker("inspect", "--format", "{{json .State}}", name).stdout)


def test_slack_mode_runs_with_the_compose_settings_and_is_healthy(stack, compose_run, tmp_path):
    fakes = ROOT / "tests" / "fakes"
    compose_run.env_file.write_text(compose_run.env_file.read_text() + textwrap.dedent(f"""\
        SLACK_BOT_TOKEN=xoxb-image-test
        SLACK_SIGNING_SECRET={SIGNING_SECRET}
    """), encoding="utf-8")
    name = f"dockhand-test-slack-{uuid.uuid4().hex[:8]}"
    compose_run.containers.append(name)
    # PID 1 is `dockhand slack` (the compose command), once the fake Slack answers.
    start = ("python3 -c \"$FAKE\" & while [ ! -s /tmp/slack-port ]; do sleep 0.1; done; "
             "SLACK_API_URL=http://127.0.0.1:$(cat /tmp/slack-port)/api/ exec dockhand \"$@\"")
    flags = compose_run.flags(fast_health=True)
    argv = ["run", "--detach", "--name", name, "--restart", compose_run.restart, *flags,
            "-v", f"{fakes}:/fakes:ro", "-e", f"FAKE={FAKE_SLACK}", "--entrypoint", "sh",
            compose_run.image, "-c", start, "sh", *compose_run.command()]  # fmt: skip
    stack.docker(*argv)
    deadline = time.monotonic() + 90
    state = _health(stack, name)
    while time.monotonic() < deadline:
        state = _health(stack, name)
        if not state["Running"] or state["Health"]["Status"] == "healthy":
            break
        time.sleep(0.5)
    logs = stack.docker("logs", name, check=False)
    assert state["Running"], f"the container stopped: {state}\n{logs.stdout}{logs.stderr}"
    assert state["Health"]["Status"] == "healthy", json.dumps(state["Health"], indent=1)
    last = state["Health"]["Log"][-1]
    assert last["ExitCode"] == 0 and "Server" in last["Output"], last
    top = stack.docker("top", name, "-o", "pid,uid,args").stdout
    assert re.search(r"^\s*\d+\s+10001\s+.*dockhand slack", top, re.M), top
    assert not re.search(r"^\s*\d+\s+0\s", top, re.M), top  # nothing runs as root
    # The running bot answers a signed slash command on its HTTP port (inside the container).
    r = stack.docker("exec", name, "python3", "-c", SLASH, SIGNING_SECRET, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "200", r.stdout + r.stderr
    # ... and its reply (the engine's images, read through the mounted socket) reaches the response_url.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = stack.docker("logs", name)
        replies = [json.loads(line) for line in logs.stdout.splitlines() if line.startswith('{"fake_slack": "response"')]
        if replies:
            break
        time.sleep(0.5)
    assert replies, logs.stdout + logs.stderr
    assert replies[0]["name"] == "r1"
    reply = json.dumps(replies[0]["body"])
    assert stack.seed("busybox_136").rsplit(":", 1)[0] in reply and "1.36" in reply, reply
    assert "listening on http://0.0.0.0:3000/slack/events" in logs.stderr, logs.stderr
    # The state directory on the volume holds the bot's store.
    ls = stack.docker("exec", name, "ls", "/var/lib/dockhand").stdout.split()
    assert "state.db" in ls, ls


def test_health_check_fails_without_the_engine(stack, compose_run):
    """The health check is not a formality: with no engine behind the socket it fails."""
    name = f"dockhand-test-noengine-{uuid.uuid4().hex[:8]}"
    compose_run.containers.append(name)
    flags = compose_run.flags(fast_health=True)
    # Same settings without the socket: nothing answers at /var/run/docker.sock.
    i = next(i for i, f in enumerate(flags) if f.endswith(":/var/run/docker.sock"))
    del flags[i - 1:i + 1]
    stack.docker("run", "--detach", "--name", name, *flags, "--entrypoint", "sleep", compose_run.image, "600")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = _health(stack, name)
        if state["Health"]["Status"] == "unhealthy":
            break
        time.sleep(0.5)
    assert state["Health"]["Status"] == "unhealthy", json.dumps(state["Health"], indent=1)
    assert state["Health"]["Log"][-1]["ExitCode"] != 0

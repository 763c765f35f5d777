"""The README's cheat sheet, run line by line on a sample engine of its own.

Every command of the cheat sheet's first column goes, in the README's order,
through `dockhand shell -c` (with `--yes` for what asks a confirmation) to a
private stack started with only its Docker Hub mirror seeded, holding
`busybox` and `ubuntu:22.04` pulled from that mirror by the real docker CLI
(as a tutorial reader's host would). Each line must succeed, and its effect is
checked with the real CLI. A README line without a check here fails the test.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from handlers.argv import DESTRUCTIVE
from handlers.dispatch import effect_of
from tests.conftest import Stack, run_stack
from tests.integration.shell_helpers import dockhand, dockhand_env

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SAMPLE_NOTE = "[Dockhand's sample engine"


def cheat_sheet_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### The tutorial's cheat sheet", 1)[1].split("\n## ", 1)[0]
    commands = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split(" | ", 1)[0]
        commands += re.findall(r"`([^`]+)`", first)
    return commands


@pytest.fixture(scope="module")
def tutorial_engine():
    """A third stack next to the session's: only the mirror's images, cleaned away after."""
    d = tempfile.mkdtemp(prefix="dh-tut-", dir="/tmp")
    env = dict(os.environ, DOCKHAND_STACK_DIR=d)
    try:
        r = run_stack("up", "--mirror-only", "--no-env-hint", env=env)
        assert r.returncode == 0, r.stderr
        assert "# eval" not in r.stdout
        s = Stack(d)
        for ref in ("busybox", "ubuntu:22.04"):  # from the mirror, by the real CLI
            s.docker("pull", ref, timeout=60)
        yield s
    finally:
        r = run_stack("purge", env=env)
        assert r.returncode == 0, r.stderr
        shutil.rmtree(d, ignore_errors=True)


def local_refs(s: Stack) -> set[str]:
    out = s.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return set(out)


def check_help(s, out):
    assert out.startswith("\nUsage:") or out.startswith("Usage:"), out[:200]
    assert "images" in out and "Run 'docker COMMAND --help'" in out


def check_images_help(s, out):
    assert "Usage:  docker images [OPTIONS] [REPOSITORY[:TAG]]" in out, out[:300]


def check_short_version(s, out):
    cli = s.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert re.fullmatch(rf"Docker version {re.escape(cli)}, build \w+", out.strip()), out


def check_version(s, out):
    assert "Server:" in out and s.docker("version", "--format", "{{.Server.Version}}").stdout.strip() in out


def check_info(s, out):
    assert "Server Version: 20.10" in out and "Images: 2" in out  # busybox, ubuntu:22.04


def check_run_hello(s, out):
    assert "Hello from Docker!" in out and "sample" in out  # the sample image says what it is
    assert "hello-world:latest" in local_refs(s)  # pulled from the mirror first
    assert s.docker("ps", "-aq").stdout.strip() == ""  # the container was removed


def check_listing(s, out):
    rows = {tuple(line.split()[:2]) for line in out.splitlines()[1:]}
    assert {("hello-world", "latest"), ("busybox", "latest"), ("ubuntu", "22.04")} <= rows, out
    assert out.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]


def check_rmi_hello(s, out):
    assert "Untagged: hello-world:latest" in out and "Deleted:" in out
    assert "hello-world:latest" not in local_refs(s)


def check_rmi_f_busybox(s, out):
    assert "busybox:latest" not in local_refs(s) and "ubuntu:22.04" in local_refs(s)


def check_rmi_all(s, out):
    assert "Untagged: ubuntu:22.04" in out
    assert s.docker("images", "-q").stdout.strip() == ""


def check_search(s, out):
    first = out.splitlines()[1].split()
    assert out.split()[:4] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"] and first[0] == "ubuntu"
    assert len(out.splitlines()) == 26  # the daemon's default limit, 25, and the header


def check_search_official(s, out):
    rows = out.splitlines()[1:]
    assert rows and all(r.rstrip().endswith("[OK]") for r in rows), out


def check_pull_hello(s, out):
    assert "Status: Downloaded newer image for hello-world:latest" in out
    assert "hello-world:latest" in local_refs(s)


def check_pull_ubuntu_1604(s, out):
    assert "Status: Downloaded newer image for ubuntu:16.04" in out
    release = s.docker("run", "--rm", "--network", "none", "ubuntu:16.04", "cat", "/etc/os-release").stdout
    assert 'VERSION_ID="16.04"' in release and "sample" in release


CHECKS = {
    "docker help": check_help,
    "docker images --help": check_images_help,
    "docker --version": check_short_version,
    "docker version": check_version,
    "docker info": check_info,
    "docker run hello-world": check_run_hello,
    "docker image ls": check_listing,
    "docker images": check_listing,
    "docker rmi hello-world": check_rmi_hello,
    "docker rmi -f busybox": check_rmi_f_busybox,
    "docker rmi -f $(docker images -q)": check_rmi_all,
    "docker search ubuntu": check_search,
    'docker search --filter "is-official=true" ubuntu': check_search_official,
    "docker pull hello-world": check_pull_hello,
    "docker pull ubuntu:16.04": check_pull_ubuntu_1604,
}


def test_every_cheat_sheet_line_has_a_check():
    commands = cheat_sheet_commands()
    assert commands, "no cheat sheet found in README.md"
    assert sorted(set(commands)) == sorted(CHECKS), "README cheat sheet and CHECKS differ"


def test_cheat_sheet_runs_as_written_on_the_sample_engine(tutorial_engine, tmp_path):
    s = tutorial_engine
    env = dockhand_env(s, DOCKHAND_STATE_DIR=str(tmp_path))
    for command in cheat_sheet_commands():
        flags = ["--yes"] if effect_of(command) == DESTRUCTIVE else []
        r = dockhand("shell", *flags, "-c", command, env=env, timeout=120)
        assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert SAMPLE_NOTE in r.stderr, f"{command}: no sample-engine note\n{r.stderr}"
        CHECKS[command](s, r.stdout)


def test_a_pull_the_mirror_cannot_serve_fails_at_once_and_says_why(tutorial_engine, tmp_path):
    env = dockhand_env(tutorial_engine, DOCKHAND_STATE_DIR=str(tmp_path))
    r = dockhand("shell", "-c", "pull nginx:1.25", env=env, timeout=60)
    assert r.returncode == 1
    assert "Hint: This is Dockhand's sample engine: it reaches no registry on the internet" in r.stderr
    assert "hello-world:latest" in r.stderr and "host's network or proxy" not in r.stderr
    assert "nginx" not in " ".join(local_refs(tutorial_engine))
    cli = tutorial_engine.docker("pull", "nginx:1.25", check=False, timeout=60)
    assert cli.returncode != 0 and "127.0.0.1:9" in cli.stderr  # the dead proxy: Docker Hub never reached

"""The real docker CLI on the same private daemon is the oracle: Dockhand's
shell must print the same rows for the same command."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.integration.shell_helpers import dockhand, table

_UNIT = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}


def _created_close(a: str, b: str) -> bool:
    """CREATED is relative to 'now' and the two commands run a moment apart."""
    if a == b:
        return True
    def secs(s):
        if s.startswith("Less than a second"):
            return 0
        if s.startswith("About a minute"):
            return 60
        if s.startswith("About an hour"):
            return 3600
        m = re.match(r"(\d+) (\w+) ago", s)
        return int(m.group(1)) * _UNIT.get(m.group(2), 10**9) if m else None
    sa, sb = secs(a), secs(b)
    return sa is not None and sb is not None and abs(sa - sb) <= 61


def _compare_tables(ours: str, theirs: str, created_col: str | None = "CREATED"):
    h1, r1 = table(ours)
    h2, r2 = table(theirs)
    assert h1 == h2
    assert len(r1) == len(r2), f"\nours:\n{ours}\ncli:\n{theirs}"
    if created_col in h1:
        i = h1.index(created_col)
        strip = lambda rows: Counter(tuple(c for j, c in enumerate(r) if j != i) for r in rows)  # noqa: E731
        assert strip(r1) == strip(r2), f"\nours:\n{ours}\ncli:\n{theirs}"
        key = lambda r: tuple(c for j, c in enumerate(r) if j != i)  # noqa: E731
        for a, b in zip(sorted(r1, key=key), sorted(r2, key=key)):
            assert _created_close(a[i], b[i]), (a, b)
    else:
        assert Counter(map(tuple, r1)) == Counter(map(tuple, r2))


def image_variants(stack):
    r = stack.registry
    return [
        [], ["-a"], ["--digests"], ["--no-trunc"], ["--digests", "--no-trunc"],
        ["-f", "dangling=true"], ["-f", "dangling=false"],
        ["-f", f"reference={r}/dockhand/busybox"], ["-f", "reference=*/dockhand/b*:1.3*"],
        ["-f", "label=org.dockhand.seed=labelled"], ["-f", "label=org.dockhand.seed"],
        ["-f", f"before={r}/dockhand/big:latest"], ["-f", f"since={r}/dockhand/hello-world"],
        [f"{r}/dockhand/busybox"], [f"{r}/dockhand/busybox:1.36"], ["nothing-matches-this"],
        ["-a", "-f", "dangling=true", "--digests"],
    ]


@pytest.mark.parametrize("i", range(17))
def test_images_rows_match_docker_cli(stack, i):
    args = image_variants(stack)[i]
    for form in ("/images", "docker image ls"):
        ours = dockhand("shell", "-c", " ".join([form] + [f"'{a}'" for a in args]), stack=stack)
        assert ours.returncode == 0, ours.stderr
        theirs = stack.docker("images", *args)
        _compare_tables(ours.stdout, theirs.stdout)


@pytest.mark.parametrize("args", [["-q"], ["-aq"], ["-q", "--no-trunc"], ["-q", "-f", "dangling=true"]])
def test_images_quiet_matches_docker_cli(stack, args):
    ours = dockhand("shell", "-c", "images " + " ".join(args), stack=stack)
    theirs = stack.docker("images", *args)
    assert ours.returncode == 0
    assert Counter(ours.stdout.split()) == Counter(theirs.stdout.split())
    assert ours.stdout.strip()


def test_images_layout_is_the_cli_layout(stack):
    """Not only the rows: the header line and column alignment are the CLI's."""
    ours = dockhand("shell", "-c", f"images {stack.registry}/dockhand/busybox", stack=stack).stdout.splitlines()
    theirs = stack.docker("images", f"{stack.registry}/dockhand/busybox").stdout.splitlines()
    assert ours[0] == theirs[0]
    assert sorted(line.split()[1] for line in ours[1:]) == ["1.35", "1.36", "latest"]


def _counts(text: str) -> dict:
    keys = {"Containers": " Containers: ", "Running": "  Running: ", "Paused": "  Paused: ",
            "Stopped": "  Stopped: ", "Images": " Images: ", "CPUs": " CPUs: ", "Server Version": " Server Version: ",
            "Storage Driver": " Storage Driver: "}
    out = {}
    for line in text.splitlines():
        for k, prefix in keys.items():
            if line.startswith(prefix) and k not in out:
                out[k] = line[len(prefix):].strip()
    return out


def test_info_counts_match_docker_cli(stack):
    ours = dockhand("shell", "-c", "/docker info", stack=stack)
    theirs = stack.docker("info")
    assert ours.returncode == 0, ours.stderr
    a, b = _counts(ours.stdout), _counts(theirs.stdout)
    assert set(a) == {"Containers", "Running", "Paused", "Stopped", "Images", "CPUs", "Server Version", "Storage Driver"}
    assert a == b


def test_search_rows_match_docker_cli(stack):
    for args in ([], ["--limit", "5"], ["--filter", "is-official=true"], ["--filter", "stars=50"], ["--no-trunc"]):
        ours = dockhand("shell", "-c", " ".join(["docker search", *args, "ubuntu"]), stack=stack)
        assert ours.returncode == 0, ours.stderr
        theirs = stack.docker("search", *args, f"{stack.index}/ubuntu")
        _compare_tables(ours.stdout, theirs.stdout, created_col=None)


def test_version_one_liner_matches_engine(stack):
    ours = dockhand("shell", "-c", "docker --version", stack=stack).stdout.strip()
    server = stack.docker("version", "--format", "{{.Server.Version}} {{.Server.GitCommit}}").stdout.split()
    assert ours == f"Docker version {server[0]}, build {server[1]}"

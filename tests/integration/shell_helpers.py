"""Run the `dockhand` console script exactly as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DOCKHAND = str(Path(sys.executable).with_name("dockhand"))
STATE_DIR = tempfile.mkdtemp(prefix="dockhand-shell-state-")


def dockhand_env(stack=None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DOCKHAND_"))}
    if stack is not None:
        env.update(DOCKER_HOST=stack.docker_host, DOCKER_CONFIG=stack.docker_config,
                   DOCKHAND_SEARCH_INDEX=stack.index)
    env["DOCKHAND_HISTORY"] = os.devnull
    env["DOCKHAND_STATE_DIR"] = STATE_DIR  # confirmations and the audit log of the test session
    env.update(extra)
    return env


def dockhand(*args: str, stack=None, input: str | None = None, env: dict | None = None, cwd=None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKHAND, *args], capture_output=True, text=True, input=input,
                          env=env if env is not None else dockhand_env(stack), timeout=timeout,
                          cwd=cwd or "/tmp", stdin=None if input is not None else subprocess.DEVNULL)


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """Split CLI table output into (header, rows) by the header's column starts."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s{2}))\S", header)]
    def cut(line):
        return [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
    return cut(header), [cut(line) for line in lines[1:]]

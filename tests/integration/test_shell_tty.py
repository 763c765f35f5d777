"""The interactive shell on a real terminal (a pty): prompt, line editing and
history recall work as a person types."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.integration.shell_helpers import DOCKHAND, dockhand_env


def _read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"did not see {needle!r}; got:\n{buf.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_prompt_line_editing_and_history(stack, tmp_path):
    history = tmp_path / "history"
    env = dockhand_env(stack, DOCKHAND_HISTORY=str(history), TERM="xterm")
    master, slave = pty.openpty()
    proc = subprocess.Popen([DOCKHAND, "shell"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=str(tmp_path), close_fds=True)
    os.close(slave)
    try:
        _read_until(master, b"dockhand> ")
        # type "imagse -q", fix the typo with the cursor keys: left x3, backspace x2, retype
        os.write(master, b"imagse -q" + b"\x1b[D" * 3 + b"\x7f\x7f" + b"es\r")
        out = _read_until(master, b"dockhand> ")
        ids = [line for line in out.decode(errors="replace").splitlines() if len(line.strip()) == 12]
        assert ids, out
        # up-arrow recalls the last command
        os.write(master, b"\x1b[A\r")
        again = _read_until(master, b"dockhand> ")
        assert b"images -q" in again
        os.write(master, b"exit\r")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert "images -q" in history.read_text()


def test_python_dash_m_bot_is_the_same_command(stack):
    r = subprocess.run([sys.executable, "-m", "bot", "shell", "-c", "docker --version"], capture_output=True,
                       text=True, env=dockhand_env(stack), cwd="/tmp", timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("Docker version ")

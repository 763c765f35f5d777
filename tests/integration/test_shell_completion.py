"""Tab completion in ``dockhand shell`` on a real terminal (a pty), as a
person presses Tab: commands, subcommands and flags with their descriptions,
image references from the private engine, and a slow engine that must not
freeze the prompt."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import socketserver
import struct
import subprocess
import termios
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler

import pytest

from handlers.units import truncate_id
from tests.integration.shell_helpers import DOCKHAND, dockhand_env

TAB = b"\t"
KILL_LINE = b"\x01\x0b"  # Ctrl-A, Ctrl-K: empty the line
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(raw: bytes) -> list[str]:
    """The lines a terminal shows for ``raw``, as far as readline draws them:
    text, CR, LF, backspace, cursor left/right and erase to end of line."""
    text = raw.decode(errors="replace")
    lines: list[str] = []
    cur: list[str] = []
    col = i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            m = _CSI.match(text, i)
            if m:
                n = int(m.group(1)) if m.group(1).isdigit() else 1
                if m.group(2) == "K":
                    del cur[col:]
                elif m.group(2) == "C":
                    col += n
                elif m.group(2) == "D":
                    col = max(0, col - n)
                i = m.end()
            else:
                i += 2  # ESC =, ESC > (keypad modes)
            continue
        if ch == "\n":
            lines.append("".join(cur))
            cur, col = [], 0
        elif ch == "\r":
            col = 0
        elif ch == "\b":
            col = max(0, col - 1)
        elif ch >= " ":
            cur.extend(" " * (col - len(cur)))
            if col < len(cur):
                cur[col] = ch
            else:
                cur.append(ch)
            col += 1
        i += 1
    lines.append("".join(cur))
    return lines


class Terminal:
    """``dockhand shell`` on a 200-column pseudo-terminal."""

    def __init__(self, env: dict, cwd):
        env = dict(env, TERM="xterm", INPUTRC=os.devnull)  # readline's defaults, whatever the user's inputrc
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen([DOCKHAND, "shell"], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=str(cwd), close_fds=True)
        os.close(slave)
        self.raw = b""
        self.mark = 0  # screen lines before this one were matched already

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def _wait_for(self, find, what: str, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            found = find(screen(self.raw))
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"did not see {what}; screen:\n" + "\n".join(screen(self.raw)[self.mark:]))
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the shell ended before {what}; screen:\n" +
                                         "\n".join(screen(self.raw)[self.mark:]))
                self.raw += chunk

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match:
        """Wait for ``pattern`` (a multi-line regex) on the screen below what was matched before."""
        rx = re.compile(pattern, re.M)

        def find(lines):
            text = "\n".join(lines[self.mark:])
            m = rx.search(text)
            if m:
                self.mark += text.count("\n", 0, m.end())
            return m

        return self._wait_for(find, repr(pattern), timeout)

    def line(self, expected: str, timeout: float = 20.0) -> None:
        """Wait until the line being edited reads exactly ``expected``."""
        def find(lines):
            if lines[-1] == expected and self.proc.poll() is None:
                self.mark = len(lines) - 1
                return True
            return False

        self._wait_for(find, f"the line {expected!r}", timeout)

    def prompt(self, timeout: float = 20.0) -> None:
        self.line("dockhand> ", timeout)

    def close(self) -> int | None:
        try:
            if self.proc.poll() is None:
                self.write(KILL_LINE + b"exit\r")
                try:
                    return self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            return self.proc.poll()
        finally:
            os.close(self.master)


# the stack's engine is Dockhand's sample engine: each reply is followed by its note (stderr)
SAMPLE_NOTE = r"(?:\[Dockhand's sample engine[^\n]*\]\n)?"


@pytest.fixture
def shell(stack, tmp_path):
    term = Terminal(dockhand_env(stack), tmp_path)
    try:
        term.prompt()
        yield term
    finally:
        term.close()


def test_tab_completes_a_command_and_double_tab_lists_them_with_descriptions(shell):
    shell.write(b"ima" + TAB)
    shell.line("dockhand> image")  # the common part of image and images
    shell.write(TAB + TAB)
    shell.expect(r"^image\s+-- Manage images\nimages\s+-- List images\ndockhand> image$")
    shell.line("dockhand> image")  # prompt and line drawn again under the list
    shell.write(b"s\r")  # the line is now "images": it runs
    shell.expect(r"^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$")
    shell.prompt()


def test_double_tab_after_a_management_command_lists_its_subcommands(shell):
    shell.write(b"image " + TAB + TAB)
    block = shell.expect(r"^((?:\S+\s+-- .*\n)+)dockhand> image $").group(1)
    assert re.search(r"^ls\s+-- List images$", block, re.M)
    assert re.search(r"^prune\s+-- Remove unused images$", block, re.M)
    assert re.search(r"^rm\s+-- Remove one or more images$", block, re.M)
    assert re.search(r"^pull\s+-- Download an image from a registry$", block, re.M)
    shell.write(b"pr" + TAB)  # one candidate: completed, with the space after it
    shell.line("dockhand> image prune ")
    shell.write(b"--help\r")
    shell.expect(r"^Usage:\s+docker image prune \[OPTIONS\]$")
    shell.prompt()


def test_flags_complete_and_double_tab_lists_them_with_descriptions(shell):
    shell.write(b"images --" + TAB + TAB)
    block = shell.expect(r"^((?:\S+\s+-- .*\n)+)dockhand> images --$").group(1)
    assert re.search(r"^--all\s+-- Show all images", block, re.M)
    assert re.search(r"^--quiet\s+-- Only show image IDs$", block, re.M)
    assert re.search(r"^--format\s+-- .*\(not supported by Dockhand\)$", block, re.M)
    shell.write(b"qu" + TAB)
    shell.line("dockhand> images --quiet ")
    shell.write(b"\r")
    shell.expect(r"^dockhand> images --quiet \n(?:[0-9a-f]{12}\n)+" + SAMPLE_NOTE + r"dockhand> $")


def test_filter_values_complete(shell):
    shell.write(b"images --filter dang" + TAB)
    shell.line("dockhand> images --filter dangling=")
    shell.write(b"t" + TAB)
    shell.line("dockhand> images --filter dangling=true ")
    shell.write(b"-q\r")
    shell.expect(r"^dockhand> images --filter dangling=true -q\n(?:[0-9a-f]{12}\n)*" + SAMPLE_NOTE + r"dockhand> $")


def test_rmi_completes_an_image_reference_from_the_engine(shell, make_image):
    img = make_image(f"tabdone-{uuid.uuid4().hex[:10]}")
    repo = img.repo  # 127.0.0.1:P/dockhand-test/tabdone-…
    shell.write(b"rmi " + repo[:-6].encode() + TAB)
    shell.line(f"dockhand> rmi {repo}")  # the rest of the unique name, no space: a tag may follow
    shell.write(b":" + TAB)
    shell.line(f"dockhand> rmi {repo}:latest ")
    # run the completed reference read-only, as `images REF`: Ctrl-A, Meta-d (kill "rmi"), "images"
    shell.write(b"\x01\x1bdimages\r")
    row = shell.expect(re.escape(repo) + r"\s+latest\s+([0-9a-f]{12})\s")
    assert row.group(1) == truncate_id(img.id)


# --------------------------------------------------------------- a slow engine


class _SlowDocker(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_SlowDocker"

    def log_message(self, *args):
        pass

    def _json(self, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Api-Version", "1.41")
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        self.server.requests.append((time.monotonic(), path))
        if path.endswith("/_ping"):
            data = b"OK"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.send_header("Api-Version", "1.41")
            self.end_headers()
            self.wfile.write(data)
        elif path.endswith("/version"):
            self._json({"Version": "24.0.0", "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux",
                        "Arch": "amd64", "KernelVersion": "6.1", "GoVersion": "go1.20", "GitCommit": "fake",
                        "Components": [{"Name": "Engine", "Version": "24.0.0", "Details": {}}]})
        elif path.endswith("/images/json"):
            self.server.release.wait(self.server.delay)  # the slow part
            self._json([])
        else:
            self.send_error(404)


@pytest.fixture
def slow_engine(tmp_path):
    path = str(tmp_path / "slow-docker.sock")
    server = _SlowDocker(path, _Handler)
    server.requests = []
    server.delay = 15.0
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"unix://{path}"
    finally:
        server.release.set()  # answer the pending list so the shell can close
        server.shutdown()
        server.server_close()


def test_a_slow_engine_does_not_freeze_the_prompt(slow_engine, tmp_path):
    server, host = slow_engine
    term = Terminal(dockhand_env(None, DOCKER_HOST=host), tmp_path)
    try:
        term.prompt()
        start = time.monotonic()
        term.write(b"rmi " + TAB)  # asks the engine for its images: no answer for 15 s
        term.write(KILL_LINE + b"help\r")  # typed right away; runs once Tab gave up
        term.expect(r"^Management Commands:$", timeout=server.delay)
        elapsed = time.monotonic() - start
        term.prompt()
        asked = [t for t, p in server.requests if p.endswith("/images/json")]
        assert asked, f"Tab never asked the engine for images: {server.requests}"
        assert elapsed < 3.0, f"the prompt waited {elapsed:.1f} s for the engine"
        # Tab again while that list is still pending: gives up again, asks nothing new
        start = time.monotonic()
        term.write(b"rmi " + TAB + TAB)
        term.write(KILL_LINE + b"version\r")
        term.expect(r"^Server:", timeout=server.delay)
        assert time.monotonic() - start < 3.0
        assert len([p for _, p in server.requests if p.endswith("/images/json")]) == 1
        term.prompt()
    finally:
        server.release.set()
        assert term.close() == 0

"""A private test registry (Debian's docker-registry, distribution 2.8): its
config.yml (loopback only, filesystem storage, deletes allowed, plus what a
test adds under ``http:`` (TLS) or as its ``auth:`` section), and the
registry itself, started and stopped around a block."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

_BASE = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def registry_config(storage, port: int, *, http: str = "", auth: str = "") -> str:
    """``http``: YAML lines for the ``http:`` section (e.g. ``tls:``);
    ``auth``: the body of an ``auth:`` section (``htpasswd:`` or ``token:``)."""
    text = _BASE.format(storage=storage, port=port)
    if http:
        text += textwrap.indent(textwrap.dedent(http).strip() + "\n", "  ")
    if auth:
        text += "auth:\n" + textwrap.indent(textwrap.dedent(auth).strip() + "\n", "  ")
    return text


@contextlib.contextmanager
def running_registry(root: Path, *, ready: int, what: str, http: str = "", auth: str = ""):
    """Debian's docker-registry with :func:`registry_config` under ``root``
    (config.yml, storage, registry.log) on a free loopback port, until the
    block ends. Ready when ``GET http://ADDRESS/v2/`` answers ``ready`` (401
    behind authentication, 400 from a port that speaks only TLS). Yields
    (address, the headers of that answer, the log's path)."""
    stackmod = sys.modules["dockhand_test_stack"]  # loaded by tests/conftest.py
    exe = stackmod.which_any("docker-registry")
    if not exe:
        pytest.fail("docker-registry not found (Debian package docker-registry: scripts/setup --engine)")
    port = stackmod.free_port()
    address = f"127.0.0.1:{port}"
    config = root / "config.yml"
    config.write_text(registry_config(root / "storage", port, http=http, auth=auth))
    log_path = root / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=stackmod.safety_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while True:
                status, headers, _ = stackmod.http_request(f"http://{address}/v2/", timeout=2.0)
                if status == ready:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the {what} did not start: {log_path.read_text()[-800:]}")
                time.sleep(0.05)
            yield address, headers, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

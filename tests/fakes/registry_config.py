"""The config.yml of a private test registry (Debian's docker-registry,
distribution 2.8): loopback only, filesystem storage, deletes allowed, plus
what a test adds under ``http:`` (TLS) or as its ``auth:`` section."""

from __future__ import annotations

import textwrap

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

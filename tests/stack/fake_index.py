#!/usr/bin/env python3
"""Fake Docker Hub v1 index for Dockhand's integration tests (stdlib only).

The private dockerd searches the index named in a term such as
``127.0.0.1:PORT/ubuntu``: it sends ``GET /v1/_ping`` (HTTPS first, then HTTP)
and then ``GET /v1/search?q=ubuntu&n=25``.  This server answers in Docker Hub's
JSON shape::

    {"num_pages", "num_results", "page_size", "page", "query",
     "results": [{"name", "description", "star_count", "is_official",
                  "is_automated"}]}

Matching: case-insensitive substring of name or description; ``n`` limits the
page size (default 25), ``page`` is 1-based.  Data comes from index_data.json.

Test hooks, selected by the query term:
  * ``slow-<seconds>`` or ``slow-<seconds>-<term>``: sleep, then answer for
    ``<term>`` (nothing matches when there is no term);
  * ``error-500`` (any ``error-<status>``): answer that HTTP status;
  * ``bulk``: 150 generated entries ``bulk/image-001`` .. ``bulk/image-150``.

Usage: fake_index.py [--host 127.0.0.1] [--port 0] [--data FILE] [--port-file FILE]
With ``--port 0`` a free port is chosen; ``--port-file`` receives the port once
the server listens.  Every request is logged to stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "index_data.json")
DEFAULT_LIMIT = 25
MAX_SLEEP = 600.0
BULK_COUNT = 150


def load_entries(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    entries = data["results"] if isinstance(data, dict) else data
    out = []
    for e in entries:
        out.append(
            {
                "name": str(e["name"]),
                "description": str(e.get("description", "")),
                "star_count": int(e.get("star_count", 0)),
                "is_official": bool(e.get("is_official", False)),
                "is_automated": bool(e.get("is_automated", False)),
            }
        )
    return out


def bulk_entries() -> list[dict]:
    return [
        {
            "name": f"bulk/image-{i:03d}",
            "description": f"Generated bulk entry number {i} for limit tests",
            "star_count": (i * 37) % 1000,
            "is_official": False,
            "is_automated": i % 2 == 0,
        }
        for i in range(1, BULK_COUNT + 1)
    ]


def match(entries: list[dict], term: str) -> list[dict]:
    t = term.lower()
    return [e for e in entries if t in e["name"].lower() or t in e["description"].lower()]


def paginate(results: list[dict], query: str, n: int, page: int) -> dict:
    total = len(results)
    start = (page - 1) * n
    return {
        "num_pages": max(1, math.ceil(total / n)) if n else 1,
        "num_results": total,
        "page_size": n,
        "page": page,
        "query": query,
        "results": results[start : start + n],
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "DockhandFakeIndex/1.0"
    protocol_version = "HTTP/1.1"
    entries: list[dict] = []

    def log_message(self, fmt: str, *args) -> None:  # to stderr with a timestamp
        msg = fmt % args
        # The daemon tries HTTPS first: keep the TLS handshake bytes readable.
        msg = "".join(c if " " <= c <= "~" else "\\x%02x" % (ord(c) & 0xFF) for c in msg)
        if len(msg) > 200:
            msg = msg[:200] + "..."
        sys.stderr.write("%s fake-index %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), self.address_string(), msg))
        sys.stderr.flush()

    def _send_json(self, status: int, payload, extra_headers: dict | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if path in ("/v1/_ping", "/_ping"):
            self._send_json(
                200,
                {"standalone": True, "version": "dockhand-fake-index"},
                {"X-Docker-Registry-Version": "0.6.3", "X-Docker-Registry-Standalone": "true"},
            )
            return
        if path == "/v1/search":
            self._search(parse_qs(url.query))
            return
        self._send_json(404, {"error": f"not found: {url.path}"})

    def _search(self, qs: dict) -> None:
        query = qs.get("q", [""])[0]
        try:
            n = int(qs.get("n", [str(DEFAULT_LIMIT)])[0] or DEFAULT_LIMIT)
            page = int(qs.get("page", ["1"])[0] or 1)
        except ValueError:
            self._send_json(400, {"error": "n and page must be integers"})
            return
        if n <= 0:
            n = DEFAULT_LIMIT
        n = min(n, 100)
        page = max(page, 1)

        term = query
        low = term.lower()
        if low.startswith("slow-"):
            rest = term[5:]
            secs_txt, _, term = rest.partition("-")
            try:
                secs = min(max(float(secs_txt), 0.0), MAX_SLEEP)
            except ValueError:
                secs = 0.0
            self.log_message("slow hook: sleeping %.1fs", secs)
            time.sleep(secs)
            if not term:
                self._send_json(200, paginate([], query, n, page))
                return
            low = term.lower()
        if low.startswith("error-"):
            try:
                status = int(low[6:9])
            except ValueError:
                status = 500
            if not 400 <= status <= 599:
                status = 500
            self._send_json(status, {"error": f"fake index error hook ({status})"})
            return
        if low == "bulk":
            results = bulk_entries()
        else:
            results = match(self.entries, term)
        self._send_json(200, paginate(results, query, n, page))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fake Docker Hub v1 search index")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--port-file", default=None)
    args = ap.parse_args(argv)

    Handler.entries = load_entries(args.data)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    sys.stderr.write(
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} fake-index listening on {args.host}:{port} "
        f"({len(Handler.entries)} entries from {args.data}) pid {os.getpid()}\n"
    )
    sys.stderr.flush()
    try:
        httpd.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A Docker Registry v2 token server for tests: what a real registry with
``auth: token:`` sends clients to (distribution's token specification).

It runs on 127.0.0.1 (a free port) in a thread of its own, with a key pair
and a self-signed certificate it makes with the ``openssl`` command line
tool (no Python crypto package needed):

* ``GET /token?service=…&scope=…&scope=…[&account=…]`` with Basic
  credentials (what Docker Engine and Dockhand send), or ``POST /token``
  with the OAuth2 form ``grant_type=password`` (username, password,
  service, scope): right credentials -> ``{"token", "access_token",
  "expires_in", "issued_at"}``; wrong ones -> 401; none -> an anonymous
  token that grants nothing (as the spec allows).
* ``offline_token=true`` (what ``docker login`` asks for) with right
  credentials adds a ``refresh_token``; the CLI stores it as the
  ``identitytoken`` of its config.json, and later clients trade it with
  ``POST /token`` ``grant_type=refresh_token`` (unknown one -> 401).
* The token is a JWT signed RS256 (``openssl dgst -sha256 -sign``), with
  the certificate in the header's ``x5c`` (what distribution 2.8 checks
  against its ``rootcertbundle``) and the claims ``iss``, ``sub``, ``aud``
  (the service), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``: for each
  requested scope, exactly the actions the user is entitled to (rules of
  ``(type, name pattern, actions)``; ``*`` in a pattern as ``fnmatch``).

Every request is recorded in :attr:`TokenServer.requests` (who, which
scopes, what was granted, the status), never with the password.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Grant", "TokenRequest", "TokenServer", "parse_scope"]


@dataclass(frozen=True)
class Grant:
    """What a user may do: ``type`` (repository, registry), a name pattern, actions."""

    type: str
    name: str
    actions: tuple[str, ...]


@dataclass
class TokenRequest:
    method: str
    user: str  # "" when anonymous
    service: str
    scopes: list[str]
    status: int
    access: list[dict] = field(default_factory=list)  # the claims granted
    jti: str = ""
    at: float = 0.0


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:team/app:pull,push`` -> ("repository", "team/app", ["pull", "push"]).
    The name may itself hold colons (type is before the first, actions after the last)."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, [a for a in actions.split(",") if a]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    def __init__(self, root: Path, *, users: dict[str, tuple[str, list[Grant]]], service: str,
                 issuer: str, ttl: int = 300, audience: str | None = None, refresh_tokens: bool = True):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.service = service
        self.issuer = issuer
        self.audience = audience if audience is not None else service
        self.ttl = ttl
        self.requests: list[TokenRequest] = []
        self.refresh_tokens = refresh_tokens
        self._refresh: dict[str, str] = {}  # refresh token -> user
        self._lock = threading.Lock()
        self.key = self.root / "token-key.pem"
        self.cert = self.root / "token-cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=dockhand test token issuer"],
                       check=True, capture_output=True, timeout=60)
        pem = self.cert.read_text()
        der_b64 = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        self._x5c = [der_b64]
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    self._send(404, {"error": "not found"})
                    return
                query = urllib.parse.parse_qs(url.query)
                user, password = "", None
                header = self.headers.get("Authorization", "")
                if header.lower().startswith("basic "):
                    try:
                        pair = base64.b64decode(header.split(" ", 1)[1]).decode()
                    except Exception:  # noqa: BLE001 - a bad header is a refusal
                        pair = ":"
                    user, _, password = pair.partition(":")
                self._answer("GET", user, password, query.get("service", [""])[0], query.get("scope", []),
                             offline=query.get("offline_token", [""])[0] == "true")

            def do_POST(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
                if url.path != "/token":
                    self._send(404, {"error": "not found"})
                    return
                grant = form.get("grant_type", [""])[0]
                scopes = [s for joined in form.get("scope", []) for s in joined.split(" ") if s]
                service = form.get("service", [""])[0]
                offline = form.get("access_type", [""])[0] == "offline"
                if grant == "password":
                    self._answer("POST", form.get("username", [""])[0], form.get("password", [""])[0], service,
                                 scopes, offline=offline)
                elif grant == "refresh_token":
                    refresh = form.get("refresh_token", [""])[0]
                    with server._lock:
                        user = server._refresh.get(refresh)
                    if user is None:
                        with server._lock:
                            server.requests.append(TokenRequest("POST refresh_token", "?", service, scopes, 401,
                                                                at=time.time()))
                        self._send(401, {"error": "invalid_grant"})
                        return
                    self._answer("POST refresh_token", user, server.users[user][0], service, scopes, offline=offline)
                else:
                    self._send(400, {"error": "unsupported_grant_type"})

            def _answer(self, method, user, password, service, scopes, offline=False):
                status, body, record = server._issue(method, user, password, service, scopes)
                if status == 200 and offline and server.refresh_tokens and user:
                    body["refresh_token"] = "rt-" + uuid.uuid4().hex
                    with server._lock:
                        server._refresh[body["refresh_token"]] = user
                with server._lock:
                    server.requests.append(record)
                headers = {"WWW-Authenticate": 'Basic realm="dockhand test token server"'} if status == 401 else {}
                self._send(status, body, headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.realm = f"http://{self.address}/token"
        self._thread = threading.Thread(target=self.server.serve_forever, name="token-server", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- tokens

    def entitled(self, user: str, kind: str, name: str, wanted: list[str]) -> list[str]:
        grants = self.users.get(user, ("", []))[1] if user else []
        allowed: set[str] = set()
        for g in grants:
            if g.type == kind and fnmatch.fnmatchcase(name, g.name):
                allowed.update(g.actions)
        return [a for a in wanted if a in allowed]

    def _issue(self, method, user, password, service, scopes):
        record = TokenRequest(method, user, service, list(scopes), 0, at=time.time())
        if user or password is not None:
            known = self.users.get(user)
            if known is None or password != known[0]:
                record.status = 401
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "wrong user name or password"}]}, record
        if service != self.service:
            record.status = 400
            return 400, {"errors": [{"code": "DENIED", "message": "unknown service"}]}, record
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            actions = self.entitled(user, kind, name, wanted)
            if actions:
                access.append({"type": kind, "name": name, "actions": actions})
        now = int(time.time())
        jti = uuid.uuid4().hex
        claims = {"iss": self.issuer, "sub": user, "aud": self.audience, "exp": now + self.ttl, "nbf": now - 1,
                  "iat": now, "jti": jti, "access": access}
        token = self.sign(claims)
        record.status, record.access, record.jti = 200, access, jti
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return 200, {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}, record

    def sign(self, claims: dict, header: dict | None = None) -> str:
        head = {"typ": "JWT", "alg": "RS256", "x5c": self._x5c, **(header or {})}
        signing_input = f"{_b64url(json.dumps(head).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), capture_output=True, check=True, timeout=30).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def seen(self, user: str | None = None) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if user is None or r.user == user]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

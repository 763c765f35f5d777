"""A small Docker Registry HTTP API v2 client: the catalog and tag lists.

What ``search`` falls back to when a private registry has no v1 search
endpoint (``handlers/search.py``). Only two read-only calls:

* ``GET /v2/_catalog?n=…``, following ``Link: <…>; rel="next"`` pagination
  on the same registry, at most :data:`MAX_PAGES` pages and ``limit``
  repositories;
* ``GET /v2/<name>/tags/list?n=…``, at most ``limit`` tags.

Authentication is done the way registries ask for it: a 401 with
``WWW-Authenticate: Basic`` is answered with Basic credentials; ``Bearer
realm=…,service=…,scope=…`` with a token fetched from the realm (Basic
credentials, or an identity token as a refresh token). Credentials come from
:class:`bot.credentials.CredentialStore`, looked up for every call, and are
sent to nobody else: a realm must be HTTPS (or loopback HTTP for a loopback
registry). HTTPS is tried first; plain HTTP only for registries the engine
treats as insecure by default (loopback: 127.0.0.0/8, ::1, localhost).

Whatever a registry answers is data: bodies are read up to a bound, names
and tags that do not follow the distribution grammar are dropped, and no
registry text, header or credential goes into an error or a log record.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import re
import ssl
import urllib.parse
from typing import Mapping


from handlers.errors import EngineError, RegistryUnauthorized, RegistryUnreachable

__all__ = ["RegistryClient", "MAX_PAGES", "MAX_REPOSITORIES", "MAX_TAGS"]

log = logging.getLogger("dockhand.registry")

TIMEOUT = 10.0  # seconds for each HTTP request
MAX_BODY = 2 * 1024 * 1024  # bytes of one answer
MAX_PAGES = 5  # catalog pages followed
MAX_REPOSITORIES = 1000
MAX_TAGS = 200
PAGE = 200  # repositories asked for per catalog page

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                      r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?")
_LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.I)
_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]*))')
_CODE_RE = re.compile(r"[A-Z_]{1,40}")


def is_insecure(registry: str) -> bool:
    """Does the engine talk plain HTTP to this registry by default? (loopback)"""
    host = urllib.parse.urlsplit(f"//{registry}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` -> ("bearer", {realm, service, …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


class _Unauthorized(Exception):
    pass


def _aiohttp():
    """aiohttp, imported on first use: it costs a one-shot `dockhand shell -c`
    about 130 ms of start-up, and most commands never list a registry."""
    import aiohttp

    return aiohttp


class RegistryClient:
    """Implements :class:`handlers.ports.RegistryCatalog` over HTTP(S)."""

    def __init__(self, credentials=None, *, timeout: float = TIMEOUT, max_body: int = MAX_BODY,
                 ssl_context: ssl.SSLContext | None = None, lane=None):
        self._credentials = credentials
        # ``lane(owner, registry)``: an async context manager, one slot of the
        # host's fair registry lane (bot/registry_lane.py), held for each call so
        # catalog and tag listings share it with pulls and searches
        self._lane = lane
        self._timeout = float(timeout)
        self._max_body = int(max_body)
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._scheme: dict[str, str] = {}  # registry -> the scheme that answered

    def __repr__(self) -> str:
        return f"RegistryClient(credentials={self._credentials!r})"

    # ---------------------------------------------------------------- public

    async def catalog(self, registry: str, *, limit: int = MAX_REPOSITORIES, owner: str = "") -> list[str]:
        registry = self._check_registry(registry)
        limit = max(1, min(int(limit), MAX_REPOSITORIES))
        names: list[str] = []
        path = f"/v2/_catalog?n={min(PAGE, limit)}"
        async with self._slot(owner, registry), self._session() as session:
            for _ in range(MAX_PAGES):
                data, headers = await self._get_json(session, registry, path, "registry:catalog:*")
                for name in (data.get("repositories") or []) if isinstance(data, dict) else []:
                    if isinstance(name, str) and _REPOSITORY_RE.fullmatch(name) and len(name) <= 255:
                        names.append(name)
                if len(names) >= limit:
                    break
                path = self._next_page(headers.get("Link", ""))
                if not path:
                    break
        return list(dict.fromkeys(names))[:limit]

    async def tags(self, registry: str, repository: str, *, limit: int = MAX_TAGS, owner: str = "") -> list[str]:
        registry = self._check_registry(registry)
        if not _REPOSITORY_RE.fullmatch(repository or "") or len(repository) > 255:
            raise EngineError(f"invalid repository name for registry {registry}")
        limit = max(1, min(int(limit), MAX_TAGS))
        async with self._slot(owner, registry), self._session() as session:
            data, _ = await self._get_json(session, registry, f"/v2/{repository}/tags/list?n={limit}",
                                           f"repository:{repository}:pull")
        tags = (data.get("tags") or []) if isinstance(data, dict) else []
        return list(dict.fromkeys(t for t in tags if isinstance(t, str) and _TAG_RE.fullmatch(t)))[:limit]

    async def close(self) -> None:
        """Nothing stays open between calls."""

    # --------------------------------------------------------------- helpers

    def _slot(self, owner: str, registry: str):
        return self._lane(owner, registry) if self._lane is not None else contextlib.nullcontext()

    def _session(self):
        aiohttp = _aiohttp()
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=False)

    @staticmethod
    def _check_registry(registry: str) -> str:
        registry = (registry or "").strip().lower()
        if not _HOST_RE.fullmatch(registry):
            raise EngineError("invalid registry address: expected host[:port]")
        return registry

    @staticmethod
    def _next_page(link: str) -> str:
        m = _LINK_RE.search(link or "")
        if not m:
            return ""
        target = urllib.parse.urlsplit(m.group(1))
        if target.scheme or target.netloc or target.path != "/v2/_catalog":
            return ""  # only the same registry's catalog
        return f"{target.path}?{target.query}" if target.query else target.path

    async def _auth(self, registry: str):
        if self._credentials is None:
            return None
        return await asyncio.to_thread(self._credentials.lookup_registry, registry)

    def _schemes(self, registry: str) -> list[str]:
        known = self._scheme.get(registry)
        if known:
            return [known]
        return ["https", "http"] if is_insecure(registry) else ["https"]

    async def _get_json(self, session, registry: str, path: str, scope: str) -> tuple[object, Mapping[str, str]]:
        auth = await self._auth(registry)
        schemes = self._schemes(registry)
        last: Exception | None = None
        for scheme in schemes:
            try:
                result = await self._get_with_auth(session, scheme, registry, path, scope, auth)
            except (_aiohttp().ClientConnectionError, asyncio.TimeoutError, ssl.SSLError) as exc:
                last = exc
                log.debug("registry %s: %s over %s failed (%s)", registry, path.split("?")[0], scheme,
                          type(exc).__name__)
                continue
            self._scheme[registry] = scheme
            return result
        self._scheme.pop(registry, None)
        why = "timed out" if isinstance(last, asyncio.TimeoutError) else "connection failed"
        raise RegistryUnreachable(f"cannot reach registry {registry} ({' and '.join(s.upper() for s in schemes)}: {why})")

    async def _get_with_auth(self, session, scheme, registry, path, scope, auth):
        url = f"{scheme}://{registry}{path}"
        status, headers, body = await self._request(session, "GET", url, {})
        if status == 401:
            challenge = headers.get("WWW-Authenticate", "")
            kind, params = parse_challenge(challenge)
            creds = auth.auth if auth is not None and auth.auth else None
            header = ""
            if kind == "basic" and creds and creds.get("username") and creds.get("password"):
                pair = f"{creds['username']}:{creds['password']}".encode("utf-8")
                header = "Basic " + base64.b64encode(pair).decode("ascii")
            elif kind == "bearer":
                token = await self._token(session, registry, params, scope, creds)
                header = f"Bearer {token}" if token else ""
            if header:
                status, headers, body = await self._request(session, "GET", url, {"Authorization": header})
        if status in (401, 403):
            self._refused(registry, auth, status)
        if status == 404:
            raise EngineError(f"registry {registry} has no {path.split('?')[0]} (404{self._code(body)})")
        if status != 200:
            raise EngineError(f"registry {registry} answered {path.split('?')[0]} with HTTP {status}{self._code(body, ': ')}")
        try:
            return json.loads(body.decode("utf-8")), headers
        except (ValueError, UnicodeDecodeError):
            raise EngineError(f"registry {registry} answered {path.split('?')[0]} with something that is not JSON") from None

    async def _token(self, session, registry, params, scope, creds) -> str:
        realm = params.get("realm", "")
        target = urllib.parse.urlsplit(realm)
        loopback_ok = is_insecure(registry) and target.scheme == "http" and is_insecure(target.netloc)
        if not (target.scheme == "https" or loopback_ok) or not target.netloc:
            log.warning("registry %s: token realm is not HTTPS; not asking it", registry)
            self._refused(registry, None, 401)
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        headers: dict[str, str] = {}
        if creds and creds.get("identitytoken"):
            form = dict(query, grant_type="refresh_token", refresh_token=creds["identitytoken"], client_id="dockhand")
            status, _, body = await self._request(session, "POST", realm, {}, data=form)
        else:
            if creds and creds.get("username") and creds.get("password"):
                pair = f"{creds['username']}:{creds['password']}".encode("utf-8")
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            sep = "&" if target.query else "?"
            status, _, body = await self._request(session, "GET", realm + sep + urllib.parse.urlencode(query), headers)
        if status != 200:
            return ""
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return ""
        token = (data.get("token") or data.get("access_token") or "") if isinstance(data, dict) else ""
        return token if isinstance(token, str) and token.isascii() and token.isprintable() and len(token) < 16384 else ""

    async def _request(self, session, method, url, headers, data=None):
        async with session.request(method, url, headers={"Accept": "application/json", **headers}, data=data,
                                   allow_redirects=False, ssl=self._ssl if url.startswith("https:") else None) as resp:
            chunks, size = [], 0
            while True:
                chunk = await resp.content.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self._max_body:
                    raise EngineError(f"a registry answer was larger than {self._max_body} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            hdrs = {"WWW-Authenticate": resp.headers.get("WWW-Authenticate", ""), "Link": resp.headers.get("Link", "")}
            return resp.status, hdrs, body

    @staticmethod
    def _code(body: bytes, prefix: str = ", ") -> str:
        """The registry's error code (``NAME_UNKNOWN``), nothing else of its text."""
        try:
            errors = json.loads(body.decode("utf-8")).get("errors") or []
            code = str(errors[0].get("code") or "")
        except Exception:  # noqa: BLE001 - registry text is data; no code then
            return ""
        return f"{prefix}{code}" if _CODE_RE.fullmatch(code) else ""

    @staticmethod
    def _refused(registry: str, auth, status: int):
        hint = auth.unauthorized_hint() if auth is not None else None
        raise RegistryUnauthorized(f"registry {registry} refused to list its repositories (HTTP {status})", hint)

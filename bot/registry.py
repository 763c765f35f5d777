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
credentials, or an identity token as a refresh token) for exactly the scope
the call needs (``registry:catalog:*``, ``repository:NAME:pull``).
Credentials come from :class:`bot.credentials.CredentialStore`, looked up
for every call. A registry's challenge is remembered, so later calls send
their credentials at once; tokens are kept until shortly before they expire
(:mod:`bot.registry_tokens`), per registry, scope and credentials, and a
token the registry refuses is fetched once more.

Which scheme: as the engine decides (:mod:`bot.insecure_registries`, from
the engine's ``--insecure-registry`` settings in ``docker info``): HTTPS with
a verified certificate for a secure registry; for an insecure one, HTTPS
without checking the certificate, then plain HTTP. Credentials are sent to
nobody else: a token realm must be HTTPS, or plain HTTP only when the engine
treats both the registry and the realm's host as insecure.

Whatever a registry answers is data: bodies are read up to a bound, names
and tags that do not follow the distribution grammar are dropped, and no
registry text, header or credential goes into an error or a log record.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import ssl
import time
import urllib.parse
from typing import Mapping

from bot.insecure_registries import DEFAULT_CONFIG, EngineRegistrySecurity, is_insecure as _engine_insecure
from bot.registry_tokens import TokenCache
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


CHALLENGE_TTL = 600.0  # seconds a registry's WWW-Authenticate challenge is remembered
MAX_REGISTRIES = 256  # registries whose scheme and challenge are remembered (people name registries)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` -> ("bearer", {realm, service, …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def _bound(remembered: dict) -> None:
    """Forget the oldest entries beyond :data:`MAX_REGISTRIES`."""
    while len(remembered) > MAX_REGISTRIES:
        del remembered[next(iter(remembered))]


def _aiohttp():
    """aiohttp, imported on first use: it costs a one-shot `dockhand shell -c`
    about 130 ms of start-up, and most commands never list a registry."""
    import aiohttp

    return aiohttp


class RegistryClient:
    """Implements :class:`handlers.ports.RegistryCatalog` over HTTP(S)."""

    def __init__(self, credentials=None, *, timeout: float = TIMEOUT, max_body: int = MAX_BODY,
                 ssl_context: ssl.SSLContext | None = None, lane=None, security=None,
                 tokens: TokenCache | None = None, clock=time.monotonic):
        self._credentials = credentials
        # ``lane(owner, registry)``: an async context manager, one slot of the
        # host's fair registry lane (bot/registry_lane.py), held for each call so
        # catalog and tag listings share it with pulls and searches
        self._lane = lane
        # ``await security.insecure(registry)``: does the engine treat it as
        # insecure (bot/insecure_registries.py)? Without one, the engine's
        # defaults: only 127.0.0.0/8
        self._security = security if security is not None else EngineRegistrySecurity(None)
        self._timeout = float(timeout)
        self._max_body = int(max_body)
        # made on first use: loading the system's CAs costs a one-shot command ~40 ms
        self._ssl_given = ssl_context
        self._ssl_default: ssl.SSLContext | None = None
        self._scheme: dict[str, str] = {}  # registry -> the scheme that answered
        self._challenges: dict[str, tuple[str, dict[str, str], float]] = {}  # registry -> (kind, params, until)
        self._tokens = tokens if tokens is not None else TokenCache(clock=clock)
        self._clock = clock

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
                data, headers = await self._get_json(session, registry, path, "registry:catalog:*",
                                                     "list its repositories")
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
                                           f"repository:{repository}:pull", f"list the tags of {repository}")
        tags = (data.get("tags") or []) if isinstance(data, dict) else []
        return list(dict.fromkeys(t for t in tags if isinstance(t, str) and _TAG_RE.fullmatch(t)))[:limit]

    async def close(self) -> None:
        """No connection stays open between calls; cached tokens are forgotten."""
        self._tokens.clear()

    # --------------------------------------------------------------- helpers

    def _slot(self, owner: str, registry: str):
        return self._lane(owner, registry) if self._lane is not None else contextlib.nullcontext()

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_given is not None:
            return self._ssl_given
        if self._ssl_default is None:
            self._ssl_default = ssl.create_default_context()
        return self._ssl_default

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

    async def _insecure(self, host: str) -> bool:
        try:
            return bool(await self._security.insecure(host))
        except Exception:  # noqa: BLE001 - a failed decision must not open plain HTTP: the defaults
            log.warning("registry %s: cannot tell whether the engine treats it as insecure", host, exc_info=True)
            return await _engine_insecure(DEFAULT_CONFIG, host)

    async def _schemes(self, registry: str) -> list[tuple[str, bool]]:
        """(scheme, verify the certificate) in the order the engine tries them."""
        if await self._insecure(registry):
            schemes = [("https", False), ("http", False)]
        else:
            schemes = [("https", True)]
        known = self._scheme.get(registry)
        return [s for s in schemes if s[0] == known] or schemes

    async def _get_json(self, session, registry: str, path: str, scope: str,
                        what: str) -> tuple[object, Mapping[str, str]]:
        auth = await self._auth(registry)
        schemes = await self._schemes(registry)
        last: Exception | None = None
        for scheme, verify in schemes:
            try:
                result = await self._get_with_auth(session, scheme, verify, registry, path, scope, auth, what)
            except (_aiohttp().ClientConnectionError, asyncio.TimeoutError, ssl.SSLError) as exc:
                last = exc
                log.debug("registry %s: %s over %s failed (%s)", registry, path.split("?")[0], scheme,
                          type(exc).__name__)
                continue
            self._scheme[registry] = scheme
            _bound(self._scheme)
            return result
        self._scheme.pop(registry, None)
        why = "timed out" if isinstance(last, asyncio.TimeoutError) else "connection failed"
        names = " and ".join(s.upper() for s, _ in schemes)
        raise RegistryUnreachable(f"cannot reach registry {registry} ({names}: {why})")

    def _challenge(self, registry: str) -> tuple[str, dict[str, str]] | None:
        known = self._challenges.get(registry)
        if known is None or self._clock() >= known[2]:
            self._challenges.pop(registry, None)
            return None
        return known[0], known[1]

    async def _get_with_auth(self, session, scheme, verify, registry, path, scope, auth, what):
        url = f"{scheme}://{registry}{path}"
        creds = auth.auth if auth is not None and auth.auth else None
        sent, problem = "", ""
        known = self._challenge(registry)
        if known is not None:  # the registry said before how it wants credentials: send them at once
            sent, problem = await self._authorization(session, registry, known, scope, creds, fresh=False)
        status, headers, body = await self._request(session, "GET", url, {"Authorization": sent} if sent else {},
                                                    verify)
        if status == 401:
            kind, params = parse_challenge(headers.get("WWW-Authenticate", ""))
            if kind in ("basic", "bearer"):
                self._challenges[registry] = (kind, params, self._clock() + CHALLENGE_TTL)
                _bound(self._challenges)
            if sent.startswith("Bearer "):
                log.debug("registry %s: a kept token for %s was refused; asking for a new one", registry, scope)
            if problem and known == (kind, params):
                header = ""  # the same challenge whose token was just refused: do not ask again
            else:
                header, problem = await self._authorization(session, registry, (kind, params), scope, creds,
                                                            fresh=sent.startswith("Bearer "))
            if header and header != sent:
                status, headers, body = await self._request(session, "GET", url, {"Authorization": header}, verify)
        if status in (401, 403):
            self._refused(registry, auth, status, what, problem)
        if status == 404:
            raise EngineError(f"registry {registry} has no {path.split('?')[0]} (404{self._code(body)})")
        if status != 200:
            raise EngineError(f"registry {registry} answered {path.split('?')[0]} with HTTP {status}{self._code(body, ': ')}")
        try:
            return json.loads(body.decode("utf-8")), headers
        except (ValueError, UnicodeDecodeError):
            raise EngineError(f"registry {registry} answered {path.split('?')[0]} with something that is not JSON") from None

    async def _authorization(self, session, registry, challenge, scope, creds, *, fresh: bool) -> tuple[str, str]:
        """The Authorization header for ``challenge`` ("" when there is none to
        send), and what went wrong getting it ("" when nothing did)."""
        kind, params = challenge
        if kind == "basic":
            if creds and creds.get("username") and creds.get("password"):
                pair = f"{creds['username']}:{creds['password']}".encode("utf-8")
                return "Basic " + base64.b64encode(pair).decode("ascii"), ""
            return "", ""
        if kind != "bearer":
            return "", ""
        key = self._tokens.key(registry, params.get("realm", ""), params.get("service", ""), scope, creds)
        if fresh:
            self._tokens.drop(key)
        token = self._tokens.get(key)
        if token is None:
            async with self._tokens.lock(key):  # one fetch for every call that needs this token
                token = self._tokens.get(key)
                if token is None:
                    token, expires_in, problem = await self._token(session, registry, params, scope, creds)
                    if not token:
                        return "", problem
                    self._tokens.put(key, token, expires_in)
                    log.debug("registry %s: new token for %s (%d kept)", registry, scope, len(self._tokens))
        return f"Bearer {token}", ""

    async def _token(self, session, registry, params, scope, creds) -> tuple[str, object, str]:
        """(token, expires_in, problem): a token for ``scope`` from the challenge's realm."""
        realm = params.get("realm", "")
        target = urllib.parse.urlsplit(realm)
        where = target.netloc if _HOST_RE.fullmatch(target.netloc or "") else "its realm"
        if target.scheme == "https" and target.netloc:
            verify = not await self._insecure(target.netloc)
        elif target.scheme == "http" and target.netloc and await self._insecure(registry) \
                and await self._insecure(target.netloc):
            verify = False
        else:
            log.warning("registry %s: token realm is neither HTTPS nor a host the engine treats as insecure; "
                        "not asking it", registry)
            return "", None, f"its token service ({where}) is not HTTPS, so Dockhand sent it no credentials"
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        headers: dict[str, str] = {}
        if creds and creds.get("identitytoken"):
            form = dict(query, grant_type="refresh_token", refresh_token=creds["identitytoken"], client_id="dockhand")
            status, _, body = await self._request(session, "POST", realm, {}, verify, data=form)
        else:
            if creds and creds.get("username") and creds.get("password"):
                pair = f"{creds['username']}:{creds['password']}".encode("utf-8")
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
                query["account"] = creds["username"]
            sep = "&" if target.query else "?"
            status, _, body = await self._request(session, "GET", realm + sep + urllib.parse.urlencode(query),
                                                  headers, verify)
        if status in (401, 403):
            return "", None, f"its token service ({where}) refused the credentials (HTTP {status})"
        if status != 200:
            return "", None, f"its token service ({where}) answered HTTP {status}"
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            data = None
        token = (data.get("token") or data.get("access_token") or "") if isinstance(data, dict) else ""
        if not (isinstance(token, str) and token and token.isascii() and token.isprintable() and len(token) < 16384):
            return "", None, f"its token service ({where}) sent no usable token"
        return token, data.get("expires_in"), ""

    async def _request(self, session, method, url, headers, verify=True, data=None):
        tls = (self._ssl() if verify else False) if url.startswith("https:") else None
        async with session.request(method, url, headers={"Accept": "application/json", **headers}, data=data,
                                   allow_redirects=False, ssl=tls) as resp:
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
    def _refused(registry: str, auth, status: int, what: str = "list its repositories", problem: str = ""):
        hint = auth.unauthorized_hint() if auth is not None else None
        why = f": {problem}" if problem else f" (HTTP {status})"
        raise RegistryUnauthorized(f"registry {registry} refused to {what}{why}", hint)

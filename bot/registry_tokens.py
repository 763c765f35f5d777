"""Bearer tokens for registry calls, kept until they expire.

A registry with ``auth: token`` (distribution's token specification) answers
a request without a token with ``401`` and ``WWW-Authenticate: Bearer
realm=…,service=…``; the client asks the realm for a token for one *scope*
(``registry:catalog:*``, ``repository:NAME:pull``) and sends it as
``Authorization: Bearer …``. A token is good for its scope until it expires
(``expires_in`` seconds; 60 when the server does not say, as the
specification says). Asking for a new token before every request would
cost the token server (often an identity provider with its own rate limits)
one call per catalog page and per tag list, so :class:`TokenCache` keeps
each token for the registry, realm, service, scope and *credentials* it was
issued for, and hands it out until a margin before it expires. A token the
registry refuses is dropped and fetched once more (it may have been
revoked). Concurrent calls for one key wait for one fetch
(:meth:`TokenCache.lock`). The credentials are part of the key only as a
keyed hash (random key per process), so a rotated password gets a new
token and the cache holds no secret but the tokens themselves, which never
leave it except in the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from typing import Callable, Mapping

__all__ = ["DEFAULT_LIFETIME", "MAX_TOKENS", "TokenCache"]

DEFAULT_LIFETIME = 60  # seconds, when the token server gives no expires_in (the specification's default)
MAX_LIFETIME = 3600  # seconds a token is kept at most, whatever the server says
MAX_TOKENS = 512  # tokens kept at most (oldest dropped first)

Key = tuple[str, str, str, str, str]


def usable_for(lifetime: float) -> float:
    """How long a token issued for ``lifetime`` seconds is handed out: a
    tenth of it (at least 5 s) is kept back so a request made near the end
    does not arrive with an expired token."""
    return max(0.0, lifetime - max(5.0, lifetime / 10))


class TokenCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_tokens: int = MAX_TOKENS):
        self._clock = clock
        self._max = int(max_tokens)
        self._tokens: OrderedDict[Key, tuple[str, float]] = OrderedDict()  # key -> (token, usable until)
        self._locks: dict[Key, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
        self._pepper = os.urandom(32)

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"

    def __len__(self) -> int:
        return len(self._tokens)

    def key(self, registry: str, realm: str, service: str, scope: str, creds: Mapping[str, str] | None) -> Key:
        who = ""
        if creds:
            material = json.dumps({k: creds.get(k, "") for k in ("username", "password", "identitytoken")},
                                  sort_keys=True).encode("utf-8")
            who = hmac.new(self._pepper, material, hashlib.sha256).hexdigest()
        return (registry, realm, service, scope, who)

    def get(self, key: Key) -> str | None:
        entry = self._tokens.get(key)
        if entry is None:
            return None
        token, until = entry
        if self._clock() >= until:
            del self._tokens[key]
            return None
        return token

    def put(self, key: Key, token: str, expires_in: object = None) -> None:
        lifetime = DEFAULT_LIFETIME
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            lifetime = min(float(expires_in), MAX_LIFETIME)
        until = self._clock() + usable_for(lifetime)
        self._tokens[key] = (token, until)
        self._tokens.move_to_end(key)
        while len(self._tokens) > self._max:
            self._tokens.popitem(last=False)

    def drop(self, key: Key, token: str | None = None) -> None:
        """Forget the token of ``key`` (only if it is still ``token``, when given)."""
        entry = self._tokens.get(key)
        if entry is not None and (token is None or entry[0] == token):
            del self._tokens[key]

    def lock(self, key: Key) -> asyncio.Lock:
        """One fetch per key at a time: the others wait and take its token."""
        loop = asyncio.get_running_loop()
        held = self._locks.get(key)
        if held is not None and held[0] is loop:
            return held[1]
        if len(self._locks) > 4 * self._max:  # forget idle locks
            for k in [k for k, (_, v) in self._locks.items() if not v.locked()]:
                del self._locks[k]
        lock = asyncio.Lock()  # a lock belongs to one event loop: a new one for a new loop
        self._locks[key] = (loop, lock)
        return lock

    def clear(self) -> None:
        self._tokens.clear()

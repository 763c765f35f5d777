"""Bearer tokens kept per registry, scope and credentials (bot/registry_tokens.py);
the real token flow is in tests/integration/test_token_registry.py."""

from __future__ import annotations

import asyncio

from bot.registry_tokens import MAX_LIFETIME, TokenCache, usable_for

ALICE = {"username": "alice", "password": "pw-1"}


def test_a_token_is_handed_out_until_a_margin_before_it_expires():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    key = cache.key("reg:5000", "https://auth/token", "reg", "repository:a:pull", ALICE)
    cache.put(key, "t1", 300)
    now[0] = usable_for(300) - 0.1
    assert usable_for(300) == 270 and cache.get(key) == "t1"
    now[0] = 270
    assert cache.get(key) is None and len(cache) == 0


def test_lifetimes_the_server_does_not_give_or_gives_oddly():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    for expires_in, kept in ((None, 54), ("300", 54), (True, 54), (-5, 54), (10, 5), (10**9, MAX_LIFETIME * 0.9)):
        key = cache.key("r", "", "", f"s{expires_in}", None)
        cache.put(key, "t", expires_in)
        now[0] = kept - 0.01
        assert cache.get(key) == "t", expires_in
        now[0] = kept
        assert cache.get(key) is None, expires_in
        now[0] = 0.0


def test_other_credentials_scope_or_realm_are_other_keys_and_hold_no_secret():
    cache = TokenCache()
    base = cache.key("r", "realm", "svc", "registry:catalog:*", ALICE)
    assert base == cache.key("r", "realm", "svc", "registry:catalog:*", dict(ALICE))
    others = [cache.key("r", "realm", "svc", "registry:catalog:*", {"username": "alice", "password": "pw-2"}),
              cache.key("r", "realm", "svc", "registry:catalog:*", None),
              cache.key("r", "realm", "svc", "repository:a:pull", ALICE),
              cache.key("r", "realm2", "svc", "registry:catalog:*", ALICE),
              cache.key("r2", "realm", "svc", "registry:catalog:*", ALICE)]
    assert base not in others and len(set(others)) == len(others)
    assert "pw-1" not in repr(base) and "pw-1" not in repr(cache)


def test_drop_only_the_token_that_was_refused():
    cache = TokenCache()
    key = cache.key("r", "", "", "s", None)
    cache.put(key, "new", 60)
    cache.drop(key, "old")  # another call already replaced it
    assert cache.get(key) == "new"
    cache.drop(key)
    assert cache.get(key) is None


def test_bounded():
    cache = TokenCache(max_tokens=3)
    keys = [cache.key("r", "", "", f"s{i}", None) for i in range(5)]
    for k in keys:
        cache.put(k, "t", 60)
    assert len(cache) == 3 and cache.get(keys[0]) is None and cache.get(keys[4]) == "t"


async def test_one_fetch_per_key_at_a_time():
    cache = TokenCache()
    key = cache.key("r", "", "", "s", None)
    fetched = []

    async def need():
        async with cache.lock(key):
            token = cache.get(key)
            if token is None:
                await asyncio.sleep(0.01)
                fetched.append(1)
                cache.put(key, "t", 60)
                token = "t"
        return token

    assert await asyncio.gather(*(need() for _ in range(5))) == ["t"] * 5
    assert fetched == [1]

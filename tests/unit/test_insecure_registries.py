"""The engine's insecure-registry decision (moby's isSecureIndex) on
RegistryConfig answers written here; the real engine's answers are checked
in tests/integration/test_engine_insecure_registries.py."""

from __future__ import annotations

import pytest

from bot.insecure_registries import (DEFAULT_CONFIG, EngineRegistrySecurity, RegistrySecurityConfig, is_insecure,
                                     split_host)

INFO = {"RegistryConfig": {
    "InsecureRegistryCIDRs": ["10.99.0.0/16", "127.0.0.0/8", "fd00:99::/64", "not a cidr"],
    "IndexConfigs": {
        "docker.io": {"Name": "docker.io", "Secure": True, "Official": True, "Mirrors": []},
        "myreg.test:5000": {"Name": "myreg.test:5000", "Secure": False, "Official": False, "Mirrors": []},
        # configured secure although its address is in an insecure CIDR: the entry wins
        "10.99.0.7:443": {"Name": "10.99.0.7:443", "Secure": True, "Official": False, "Mirrors": []},
    },
    "Mirrors": []}}

NAMES = {"registry.internal": ["10.99.1.2"], "public.example": ["203.0.113.9"], "loop.example": ["127.0.1.1"],
         "dual.example": ["203.0.113.9", "10.99.8.8"], "v6.example": ["fd00:99::5"]}


async def fake_resolve(host: str) -> list[str]:
    return NAMES.get(host, [host] if host[:1].isdigit() or ":" in host else [])


@pytest.mark.parametrize("registry, insecure", [
    ("myreg.test:5000", True),  # named in --insecure-registry
    ("MyReg.Test:5000", True),  # a host name's case does not matter
    ("myreg.test:5001", False),  # another port is another registry
    ("myreg.test", False),
    ("10.99.3.4:5000", True),  # in a CIDR
    ("10.98.0.1:5000", False),
    ("10.99.0.7:443", False),  # its IndexConfigs entry says secure
    ("registry.internal:5000", True),  # a name whose address is in a CIDR
    ("dual.example", True),  # one of its addresses is
    ("public.example:443", False),
    ("unknown.example:5000", False),  # does not resolve: secure
    ("127.0.0.1:5000", True),
    ("loop.example:80", True),
    ("[fd00:99::1]:5000", True),
    ("v6.example:5000", True),
    ("[::1]:5000", False),  # not in this engine's CIDRs (dockerd 20.10 lists only 127.0.0.0/8)
    ("docker.io", False),
    ("index.docker.io", False),
])
async def test_decision_follows_the_engine(registry, insecure):
    config = RegistrySecurityConfig.from_info(INFO)
    assert await is_insecure(config, registry, resolver=fake_resolve) is insecure


async def test_defaults_are_the_engines_own_loopback_range():
    assert await is_insecure(DEFAULT_CONFIG, "127.0.0.1:5000")
    assert await is_insecure(DEFAULT_CONFIG, "localhost:5000")  # resolved, as the engine does
    assert not await is_insecure(DEFAULT_CONFIG, "10.99.3.4:5000")
    assert not await is_insecure(DEFAULT_CONFIG, "docker.io")
    assert RegistrySecurityConfig.from_info({"no": "RegistryConfig"}) is DEFAULT_CONFIG


def test_split_host():
    assert [split_host(r) for r in ("a.b:5000", "a.b", "[::1]:5000", "10.0.0.1")] == ["a.b", "a.b", "::1", "10.0.0.1"]


async def test_the_engine_is_asked_once_and_its_answer_kept():
    now = [0.0]
    calls = []

    async def info():
        calls.append(now[0])
        return INFO

    sec = EngineRegistrySecurity(info, ttl=300, clock=lambda: now[0], resolver=fake_resolve)
    assert await sec.insecure("myreg.test:5000") and not await sec.insecure("public.example")
    now[0] = 299
    assert await sec.insecure("registry.internal:5000")
    assert calls == [0.0]
    now[0] = 301  # kept TTL seconds: a daemon reload is seen within that
    await sec.insecure("myreg.test:5000")
    assert calls == [0.0, 301]


async def test_an_engine_that_cannot_be_asked_means_its_defaults_for_a_while():
    now = [0.0]
    answers = [RuntimeError("engine down"), INFO]

    async def info():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sec = EngineRegistrySecurity(info, retry=15, clock=lambda: now[0], resolver=fake_resolve)
    assert not await sec.insecure("myreg.test:5000")  # never plain HTTP on a guess
    assert await sec.insecure("127.0.0.1:5000")
    now[0] = 16
    assert await sec.insecure("myreg.test:5000")
    assert answers == []

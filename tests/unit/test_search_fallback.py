"""`search REGISTRY/TERM` on a registry without a v1 search endpoint: the
handler falls back to the registry's v2 catalog and tag lists (a fake
catalog here; the real registry in tests/integration/test_search_registry_catalog.py)."""

from __future__ import annotations

import pytest

from bot.render.text import render
from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.errors import EngineError, EngineUnreachable, RegistryUnauthorized
from handlers.replies import ErrorPart, Notice, Status, Table
from tests.unit.fake_engine import FakeEngine, result

ME = Actor("u1", "me", via="shell")
REG = "127.0.0.1:5000"
NO_V1 = EngineError("Error response from daemon: Unexpected status code 404")


class FakeCatalog:
    def __init__(self, repos=(), tags=None, fail=None, tags_fail=None):
        self.repos = list(repos)
        self.tag_map = dict(tags or {})
        self.fail = fail
        self.tags_fail = tags_fail
        self.calls = []

    async def catalog(self, registry, *, limit=1000, owner=""):
        self.calls.append(("catalog", registry, limit))
        if self.fail:
            raise self.fail
        return self.repos[:limit]

    async def tags(self, registry, repository, *, limit=200, owner=""):
        self.calls.append(("tags", registry, repository))
        if self.tags_fail:
            raise self.tags_fail
        return self.tag_map.get(repository, [])[:limit]


def services(catalog, fail=NO_V1, results=()):
    return Services(engine=FakeEngine(results=results, fail=fail), catalog=catalog, search_index="127.0.0.1:9")


def table_of(reply) -> Table:
    return next(p for p in reply.parts if isinstance(p, Table))


def notices(reply) -> str:
    return " ".join(p.text for p in reply.parts if isinstance(p, Notice))


async def test_falls_back_to_the_catalog_with_tags_and_says_so():
    cat = FakeCatalog(["team/BusyBox-x", "team/busybox", "other/alpine", "team/busyboxes"],
                      {"team/busybox": ["latest", "1.36", "1.35"], "team/busyboxes": []})
    reply = await dispatch(f"search {REG}/busy", ME, services(cat))
    assert reply.status is Status.OK
    rows = table_of(reply).rows
    assert [r[0] for r in rows] == [f"{REG}/team/BusyBox-x", f"{REG}/team/busybox", f"{REG}/team/busyboxes"]
    assert rows[1] == (f"{REG}/team/busybox", "tags: 1.35, 1.36, latest", "0", "")
    assert rows[2][1] == "tags: (none)"
    assert "has no search endpoint" in notices(reply) and "catalog" in notices(reply)
    assert ("catalog", REG, 1000) in cat.calls
    # pulls come from that registry; an invalid name (upper case) gets no button
    assert [(a.label, a.command, a.group) for a in reply.actions] == [
        (f"{REG}/team/busybox", f"docker pull {REG}/team/busybox", "Pull an image…"),
        (f"{REG}/team/busyboxes", f"docker pull {REG}/team/busyboxes", "Pull an image…")]
    text = render(reply)
    assert "NAME" in text and "has no search endpoint" in text


async def test_limit_truncation_and_no_trunc():
    tags = [f"1.{i}" for i in range(30)]
    cat = FakeCatalog([f"app/svc-{i}" for i in range(10)], {f"app/svc-{i}": tags for i in range(10)})
    reply = await dispatch(f"search --limit 3 {REG}/svc", ME, services(cat))
    rows = table_of(reply).rows
    assert len(rows) == 3 and len(reply.actions) == 3
    assert rows[0][1].endswith("…") and len(rows[0][1]) <= 45
    full = await dispatch(f"search --no-trunc --limit 1 {REG}/svc", ME, services(cat))
    assert table_of(full).rows[0][1] == "tags: " + ", ".join(sorted(tags))


@pytest.mark.parametrize("flt", ["is-official=true", "stars=1", "is-automated=true"])
async def test_filters_no_catalog_entry_can_meet_give_nothing_and_say_so(flt):
    cat = FakeCatalog(["a/busybox"], {"a/busybox": ["latest"]})
    reply = await dispatch(f"search -f {flt} {REG}/busy", ME, services(cat))
    assert reply.status is Status.OK and table_of(reply).rows == ()
    assert "matches none" in notices(reply) and "has no search endpoint" in notices(reply)
    assert cat.calls == []


async def test_filters_every_entry_meets_keep_the_results():
    cat = FakeCatalog(["a/busybox"], {"a/busybox": ["latest"]})
    reply = await dispatch(f"search -f is-official=false -f stars=0 {REG}/busy", ME, services(cat))
    assert len(table_of(reply).rows) == 1


async def test_no_fallback_for_hub_terms_other_errors_or_without_a_catalog():
    cat = FakeCatalog(["a/busybox"])
    # a term without a registry goes to the configured index; its 404 is the engine's answer
    reply = await dispatch("search busy", ME, Services(engine=FakeEngine(fail=NO_V1), catalog=cat))
    assert reply.status is Status.FAILED and cat.calls == []
    down = await dispatch(f"search {REG}/busy", ME, services(cat, fail=EngineUnreachable("unix:///x")))
    assert down.status is Status.FAILED and cat.calls == []
    none = await dispatch(f"search {REG}/busy", ME, Services(engine=FakeEngine(fail=NO_V1)))
    assert none.status is Status.FAILED and "404" in none.parts[-1].message


async def test_a_registry_with_search_is_searched_as_before():
    cat = FakeCatalog(["a/busybox"])
    reply = await dispatch(f"search {REG}/busy", ME, services(cat, fail=None, results=[result("a/busybox", 2)]))
    assert table_of(reply).rows[0][0] == "a/busybox" and cat.calls == [] and "catalog" not in notices(reply)


async def test_catalog_refused_is_a_clear_error():
    cat = FakeCatalog(fail=RegistryUnauthorized(f"registry {REG} refused to list its repositories (HTTP 401)",
                                                "set DOCKHAND_REGISTRY_<NAME>_HOST"))
    reply = await dispatch(f"search {REG}/busy", ME, services(cat))
    assert reply.status is Status.FAILED
    err = next(p for p in reply.parts if isinstance(p, ErrorPart))
    assert "has no search endpoint" in err.message and "refused" in err.message
    assert "DOCKHAND_REGISTRY_" in err.hint


async def test_a_tag_list_that_fails_leaves_the_row():
    cat = FakeCatalog(["a/busybox"], tags_fail=EngineError("registry said no"))
    reply = await dispatch(f"search {REG}/busy", ME, services(cat))
    assert table_of(reply).rows[0][1] == "tags: (could not be listed)"

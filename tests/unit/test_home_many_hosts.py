"""The Home summary with many hosts (handlers/home.py), one person's view of it
with each host's own roles, and its Home tab view (bot/render/home.py)."""

from __future__ import annotations

import asyncio
import time

from bot.render.home import home_view
from handlers import home as home_mod
from handlers.access import Policy
from handlers.context import Actor, Services
from handlers.fleet import Fleet
from handlers.home import Home, HostSummary
from handlers.ports import ImageSummary
from tests.fakes.slack_views import view_problems, view_text
from tests.unit.fake_engine import FakeEngine

A, B = ("sha256:" + c * 64 for c in "ab")


class Frozen(FakeEngine):
    """An engine that never answers (SIGSTOPped dockerd)."""

    async def version(self):
        await asyncio.sleep(3600)

    async def list_images(self, *, all=False, filters=None):
        await asyncio.sleep(3600)

    async def disk_usage(self):
        await asyncio.sleep(3600)


class Audit:
    def __init__(self, records):
        self.records = records

    async def tail(self, n):
        return self.records[-n:]


def fleet_of(engines: dict, policies: dict | None = None, timeouts: dict | None = None, audit=None) -> Services:
    targets = {name: Services(engine=e, host_label=name, policy=(policies or {}).get(name), audit=audit)
               for name, e in engines.items()}
    fleet = Fleet(targets, next(iter(targets)), timeouts=timeouts or {})
    for s in targets.values():
        s.fleet = fleet
    return targets[fleet.default]


def slack(user: str) -> Actor:
    return Actor(user, user.lower(), via="slack")


async def test_every_host_read_at_once_a_frozen_one_costs_only_its_own_timeout():
    services = fleet_of({"alpha": FakeEngine([ImageSummary(A, ("a:1",))]), "bravo": Frozen(),
                         "charlie": FakeEngine([ImageSummary(A, ("a:1",)), ImageSummary(B, ("b:1",))])},
                        timeouts={"alpha": 5.0, "bravo": 0.3, "charlie": 5.0})
    started = time.monotonic()
    home = await home_mod.summary(services)
    took = time.monotonic() - started
    assert 0.3 <= took < 1.0, took  # bravo's timeout, not the others' 5 s nor an engine's 60 s
    assert [h.host for h in home.hosts] == ["alpha", "bravo", "charlie"] and home.default == "alpha"
    alpha, bravo, charlie = home.hosts
    assert alpha.reachable and alpha.images == 1 and charlie.images == 2
    assert not bravo.reachable and bravo.problems == ("bravo did not answer within 0.3 s.",)
    view = home_view(home)
    assert view_problems(view) == []
    text = view_text(view)
    assert ":red_circle: *Host* `bravo` · *unreachable*" in text and "bravo did not answer within 0.3 s." in text
    assert "(2 of 3 answering; unreachable: bravo)" in text
    assert text.index("`alpha`") < text.index("`bravo`") < text.index("`charlie`")


async def test_a_host_failing_unexpectedly_is_named_and_the_others_shown():
    class Broken(FakeEngine):
        async def version(self):
            raise RuntimeError("a bug")

    home = await home_mod.summary(fleet_of({"alpha": FakeEngine(), "bravo": Broken()}))
    assert home.hosts[0].reachable
    assert home.hosts[1].host == "bravo" and not home.hosts[1].reachable
    assert home.hosts[1].problems == ("Internal error reading this host (logged).",)


async def test_each_host_is_shown_by_its_own_roles_and_so_are_its_audit_records():
    records = [{"seq": i, "at": 0, "event": "done", "host": host, "actor": "U1", "command": f"docker pull x{i}"}
               for i, host in enumerate(["alpha", "charlie", "pair (bravo, charlie)", "bravo", "gone"])]
    prod = Policy(viewers=frozenset({"UPROD"}))  # charlie: only UPROD (and no operators)
    services = fleet_of({"alpha": FakeEngine(), "bravo": FakeEngine(), "charlie": FakeEngine()},
                        policies={"alpha": Policy(operators=frozenset({"UOPS"}), viewers=frozenset({"UOPS"})),
                                  "bravo": Policy(operators=frozenset({"UOPS"})), "charlie": prod},
                        audit=Audit(records))
    home = await home_mod.summary(services)
    assert home.audit_hosts == (("alpha",), ("charlie",), ("bravo", "charlie"), ("bravo",), ())

    ops = home_mod.for_actor(home, slack("UOPS"), services)
    assert [(h.host, h.role) for h in ops.hosts] == [("alpha", "operator"), ("bravo", "operator")]
    assert ops.hidden == ("charlie",)
    assert [r[5] for r in ops.audit] == ["docker pull x0", "docker pull x3", "docker pull x4"]
    text = view_text(home_view(ops))
    assert "you: operator" in text and "`charlie`" not in text and "x1" not in text
    assert "You have no role on charlie: it is not shown." in text

    prod_view = home_mod.for_actor(home, slack("UPROD"), services)
    assert [(h.host, h.role) for h in prod_view.hosts] == [("bravo", "viewer"), ("charlie", "viewer")]
    assert prod_view.hidden == ("alpha",)  # alpha names its viewers; bravo lets everyone view
    assert [r[5] for r in prod_view.audit] == ["docker pull x1", "docker pull x2", "docker pull x3",
                                               "docker pull x4"]

    nobody = home_mod.for_actor(home, slack("UNOBODY"), services)
    assert [h.host for h in nobody.hosts] == ["bravo"] and nobody.hidden == ("alpha", "charlie")


def test_hosts_named_reads_a_fan_outs_label():
    names = ("alpha", "bravo", "charlie")
    assert home_mod.hosts_named("bravo", names) == ("bravo",)
    assert home_mod.hosts_named("all (alpha, bravo, charlie)", names) == names
    assert home_mod.hosts_named("pair (charlie, zulu)", names) == ("charlie",)
    assert home_mod.hosts_named("unix:///x.sock", names) == ()


def test_many_hosts_fit_in_full_then_one_section_each_within_100_blocks():
    def host(i, up=True):
        return HostSummary(host=f"h{i:02d}", engine_version="20.10.24" if up else "", images=3 if up else None,
                           rows=3 if up else None, problems=() if up else (f"h{i:02d} did not answer within 3 s.",))

    few = home_view(Home(hosts=tuple(host(i, i != 1) for i in range(3)), default="h00"))
    assert view_problems(few) == []
    fields = [b for b in few["blocks"] if "fields" in b]
    assert len(fields) == 2  # an unreachable host shows its heading and why, not unknowns
    buttons = [b["accessory"] for b in few["blocks"] if "accessory" in b]
    assert [b["text"]["text"] for b in buttons] == ["Images on h00", "Images on h01", "Images on h02"]
    assert "These buttons run on the default host `h00`" in view_text(few)

    forty = home_view(Home(hosts=tuple(host(i, i % 7) for i in range(40)), default="h00"))
    assert view_problems(forty) == [] and len(forty["blocks"]) <= 100
    text = view_text(forty)
    assert all(f"`h{i:02d}`" in text for i in range(40)) and "not shown" not in text
    assert not [b for b in forty["blocks"] if "fields" in b]  # one section per host
    assert "h07 did not answer within 3 s." in text

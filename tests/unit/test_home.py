"""The Home summary (handlers/home.py) and its Home tab view (bot/render/home.py)."""

from __future__ import annotations

import asyncio
import dataclasses

from bot.render.home import home_view
from handlers import home as home_mod
from handlers.context import Services
from handlers.errors import EngineUnreachable
from handlers.home import DiskSummary, Home, HostSummary
from handlers.ports import ContainerRef, DiskUsage, ImageSummary, PullEvent
from handlers.pullhub import PullInFlight
from tests.fakes.slack_views import view_problems, view_text
from tests.unit.fake_engine import FakeEngine

A, B, C = ("sha256:" + c * 64 for c in "abc")


def _engine():
    images = [ImageSummary(A, ("r/a:1", "r/a:2"), size=100), ImageSummary(B, ("r/b:1",), size=50),
              ImageSummary(C, ("<none>:<none>",), size=30)]
    return FakeEngine(images=images, containers=[ContainerRef("c1", "web", "running", "r/a:1", A)])


class DfEngine(FakeEngine):
    async def disk_usage(self):
        # A: 100 bytes, 40 shared with B, used by a container; B and C unused
        return DiskUsage(layers_size=140, unique={A: 60, B: 10, C: 30}, containers={A: 1, B: 0, C: 0})


class Audit:
    def __init__(self, records=(), delay=0.0):
        self.records, self.delay = list(records), delay

    async def tail(self, n):
        await asyncio.sleep(self.delay)
        return self.records[-n:]


def test_reclaimable_is_the_clis_rule():
    du = DiskUsage(layers_size=140, unique={A: 60, B: 10, C: 30}, containers={A: 1, B: 0, C: 0})
    assert du.reclaimable == 80 and du.active == 1  # all layers less what the used images hold alone
    assert DiskSummary(total=3, active=1, size=140, reclaimable=80).reclaimable_percent == 57  # rounded down


async def test_summary_counts_images_as_docker_images_lists_them():
    engine = DfEngine(images=_engine().images)
    records = [{"seq": 1, "at": 0, "event": "done", "host": "h", "actor": "UALICE", "command": "docker pull x",
                "detail": {"digest": "sha256:1"}}]
    s = Services(engine=engine, host_label="prod-1", audit=Audit(records))
    home = await home_mod.summary(s)
    host = home.hosts[0]
    assert (host.host, host.engine_version, host.api_version) == ("prod-1", "20.10.24", "1.41")
    assert host.images == 3 and host.rows == 4  # a:1, a:2, b:1, <none>
    assert host.disk == DiskSummary(total=3, active=1, size=140, reclaimable=80)
    assert home.audit[0][2] == "done" and host.problems == () and home.problems == ()
    assert s.engine_version == "20.10.24"


async def test_a_failing_or_slow_engine_leaves_the_rest_and_says_why(monkeypatch):
    monkeypatch.setattr(home_mod, "CALL_TIMEOUT", 0.05)
    s = Services(engine=FakeEngine(fail=EngineUnreachable("Cannot connect to the Docker daemon at unix:///x")),
                 audit=Audit(delay=1))
    home = await home_mod.summary(s)
    host = home.hosts[0]
    assert host.images is None and not host.reachable
    # the reads failing alike: said once
    assert len(host.problems) == 1 and host.problems[0].startswith("Engine version, Images: Cannot connect")
    assert [p for p in home.problems if p.startswith("Audit log: the audit log did not answer within 0.05 s")]
    view = home_view(home)
    assert view_problems(view) == [] and "Cannot connect to the Docker daemon" in view_text(view)


async def test_pulls_in_flight_are_listed_with_their_progress():
    gate = asyncio.Event()

    class Slow(FakeEngine):
        async def pull(self, repository, tag, *, owner="", platform=""):
            yield PullEvent(status="Downloading", id="aaaaaaaaaaaa", current=25, total=100)
            await gate.wait()

    s = Services(engine=Slow())
    events = s.pulls.stream(s.engine, s.label, "docker.io/library/busybox", "1.36")
    first = await events.__anext__()
    assert first.current == 25
    host = (await home_mod.summary(s)).hosts[0]
    assert [(p.repository, p.tag, p.done, p.total) for p in host.pulls] == [("docker.io/library/busybox", "1.36", 25, 100)]
    text = view_text(home_view(Home(hosts=(host,))))
    assert "`docker.io/library/busybox:1.36` · 25% of 100B" in text
    gate.set()
    await events.aclose()


def test_the_view_keeps_slacks_limits_with_hostile_text_and_many_hosts():
    hostile = "<!channel> *bold* `tick` ```fence``` <https://evil|x>"
    pulls = tuple(PullInFlight("h", hostile, hostile, "linux/" + hostile, 3, 12.0, 1, 2) for _ in range(10))
    audit = tuple((str(i), "-", "done", hostile, hostile, hostile * 5, hostile * 5) for i in range(5))
    host = HostSummary(host=hostile, engine_version=hostile, api_version=hostile, os_arch=hostile, images=1, rows=1,
                       disk=DiskSummary(1, 0, 10**12, 10**11), pulls=pulls, problems=(hostile,) * 3,
                       read_at=0)
    view = home_view(Home(hosts=(host,), audit=audit))
    assert view_problems(view) == [] and len(view["blocks"]) <= 100
    text = view_text(view)
    assert "<!channel>" not in text and "<https://evil" not in text
    many = tuple(dataclasses.replace(host, host=f"h{i:03d}") for i in range(150))
    view = home_view(Home(hosts=many, audit=audit, default="h000"))
    assert view_problems(view) == [] and len(view["blocks"]) == 100
    text = view_text(view)
    assert "<!channel>" not in text and "<https://evil" not in text
    shown = [b for b in view["blocks"] if "accessory" in b]
    assert len(shown) < 150 and f"150 hosts: the first {len(shown)} (in the settings' order) fit" in text
    assert f"not shown: h{len(shown):03d}, " in text and "h149." in text  # every other host named


def test_someone_without_a_role_sees_only_why():
    view = home_view(Home(hosts=()), no_role="`docker` needs the viewer role; you have no role.")
    assert view_problems(view) == [] and "no role" in view_text(view)
    assert not [b for b in view["blocks"] if b["type"] == "actions"]

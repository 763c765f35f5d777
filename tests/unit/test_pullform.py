"""The pull form's neutral part: the command line it stands for (no field can
add a flag or an argument) and bounded suggestions that treat index and
registry text as data."""

from __future__ import annotations

import asyncio
import random
import string

import pytest

from bot.render.modals import options as render_options
from bot.render.modals import pull_form
from handlers import pullform
from handlers.context import Actor, Services
from handlers.dispatch import parse_command
from handlers.errors import EngineError
from handlers.ports import SearchResult
from tests.fakes.slack_views import options_problems, view_problems
from tests.unit.fake_engine import FakeEngine

ALICE = Actor("UALICE", via="slack")


class Catalog:
    def __init__(self, names=(), tags=(), delay=0.0, fail=None):
        self.names, self.tag_list, self.delay, self.fail = list(names), list(tags), delay, fail

    async def catalog(self, registry, *, limit=1000):
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return self.names[:limit]

    async def tags(self, registry, repository, *, limit=200):
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return self.tag_list[:limit]


class NoSearchEngine(FakeEngine):
    async def search(self, term, *, limit=25, filters=None, owner=""):
        self.calls.append(("search", term))
        raise EngineError("Unexpected status code 404")


@pytest.mark.parametrize("fields,line", [
    (("docker.io", "busybox", "", ""), "docker pull busybox"),
    (("docker.io", "library/ubuntu", "22.04", ""), "docker pull library/ubuntu:22.04"),
    (("127.0.0.1:5000", "team/app", "v1", "linux/arm64"), "docker pull --platform linux/arm64 127.0.0.1:5000/team/app:v1"),
    (("registry.example.com", "x", "", ""), "docker pull registry.example.com/x"),
])
def test_the_line_is_the_typed_pull(fields, line):
    built, errors = pullform.pull_line(*fields)
    assert errors == {} and built == line
    assert parse_command(built).parsed.spec.path == ("pull",)


@pytest.mark.parametrize("fields,field", [
    (("docker.io", "busybox --all-tags", "", ""), "repository"),
    (("docker.io", "-q", "", ""), "repository"),
    (("docker.io", "busybox", "1 --platform x", ""), "tag"),
    (("docker.io", "busybox", "-a", ""), "tag"),
    (("docker.io", "busybox", "", "linux/amd64 evil"), "platform"),
    (("docker.io", "busybox", "", "--all-tags"), "platform"),
    (("a.b;rm", "x", "", ""), "registry"),
    (("docker.io", "x\ny", "", ""), "repository"),
    (("docker.io", "$(docker images -q)", "", ""), "repository"),
    (("docker.io", "127.0.0.1:5000/x", "", ""), "repository"),
    (("127.0.0.1:5000", "x", "", ""), None),  # the control: valid
])
def test_no_field_adds_a_flag_or_an_argument(fields, field):
    line, errors = pullform.pull_line(*fields)
    if field is None:
        assert line and not errors
    else:
        assert line == "" and field in errors, errors


def test_random_fields_give_exactly_one_reference_or_errors():
    rng = random.Random(9)
    alphabet = string.ascii_letters + string.digits + " -_./:@$`'\"\\;|&<>\n\t"
    for _ in range(3000):
        fields = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(4)]
        if rng.random() < 0.5:
            fields[0] = rng.choice(["docker.io", "127.0.0.1:5000", "r.example.com"])
        line, errors = pullform.pull_line(*fields)
        if errors:
            assert line == "" and set(errors) <= set(pullform.FIELDS)
            continue
        parsed = parse_command(line).parsed
        assert parsed.spec.path == ("pull",) and len(parsed.args) == 1
        assert (parsed.opts.get("platform") or "") == fields[3].strip()
        assert not parsed.opts.get("all_tags") and not parsed.opts.get("quiet")


async def test_repository_suggestions_are_valid_names_only_and_bounded():
    hostile = [SearchResult("<!channel>"), SearchResult("ok/name", "*bold* <@U1> \u202e"),
               SearchResult("UPPER"), SearchResult("a" * 300)] + [SearchResult(f"n{i}") for i in range(200)]
    s = Services(engine=FakeEngine(results=hostile))
    found = await pullform.repositories(s, ALICE, "docker.io", "n")
    values = [c.value for c in found.choices]
    assert "<!channel>" not in values and "UPPER" not in values and ("a" * 300) not in values
    assert len(values) <= pullform.MAX_CHOICES
    desc = next(c.description for c in found.choices if c.value == "ok/name")
    assert "\u202e" not in desc  # direction overrides stripped; the rest is shown as plain text


async def test_a_registry_without_search_is_read_from_its_catalog_once_known():
    engine = NoSearchEngine()
    s = Services(engine=engine, catalog=Catalog(names=["team/app", "team/other", "else"]))
    memory: set[str] = set()
    found = await pullform.repositories(s, ALICE, "127.0.0.1:5000", "team", no_search=memory)
    assert [c.value for c in found.choices] == ["team", "team/app", "team/other"]  # as typed first
    assert memory == {"127.0.0.1:5000"}
    await pullform.repositories(s, ALICE, "127.0.0.1:5000", "app", no_search=memory)
    assert len([c for c in engine.calls if c[0] == "search"]) == 1, "known: straight to the catalog"


async def test_a_slow_registry_leaves_the_typed_value_and_says_why():
    s = Services(engine=FakeEngine(), catalog=Catalog(tags=["1"], delay=5))
    found = await pullform.tags(s, "127.0.0.1:5000", "team/app", "v2", timeout=0.05)
    assert [c.value for c in found.choices] == ["v2"] and "did not answer" in found.note


async def test_tags_latest_first_and_only_valid_ones():
    s = Services(engine=FakeEngine(), catalog=Catalog(tags=["1.0", "latest", "-bad", "x" * 200, "2.0"]))
    found = await pullform.tags(s, "127.0.0.1:5000", "team/app", "")
    assert [c.value for c in found.choices] == ["latest", "1.0", "2.0"]


def test_rendered_options_and_form_keep_slacks_limits():
    many = pullform.Choices(tuple(pullform.Choice("l" * 200, f"v{i}", "d" * 200) for i in range(300))
                            + (pullform.Choice("long", "x" * 151),))
    answer = render_options(many)
    assert options_problems(answer) == [] and len(answer["options"]) == 100
    form = pull_form(host="h" * 500, registry="docker.io", from_conversation=True)
    assert view_problems(form) == []


def test_an_answer_a_modal_cannot_hold_is_shown_as_text():
    from bot.render.modals import message_view

    message = {"text": "summary", "blocks": [{"type": "table", "rows": []}]}
    hostile = "\n".join(f"<!channel> ```row {i}``` " + "x" * 100 for i in range(2000))
    view = message_view("Images", message, text=hostile)
    assert view_problems(view) == [] and len(view["blocks"]) <= 21
    body = "".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert "<!channel>" not in body and "&lt;!channel&gt;" in body
    assert view["blocks"][-1]["type"] == "context"

"""The pull form with many hosts, its neutral part: which hosts and groups a
person may pull on (each host's roles), which one the form starts on, whose
engine suggests, and the line naming the host."""

from __future__ import annotations

import pytest

from bot.render.modals import ACTION_HOST, form_host, pull_form
from handlers import pullform
from handlers.access import Policy
from handlers.context import Actor, Services
from handlers.dispatch import parse_command
from handlers.fleet import Fleet
from tests.fakes.slack_views import view_problems
from tests.unit.fake_engine import FakeEngine

OPS = Actor("UOPS", "ops", via="slack", channel="C0OPS")


def fleet(*, channels_rule: frozenset = frozenset()) -> Services:
    def host(name: str, operators=frozenset({"UOPS"})) -> Services:
        return Services(engine=FakeEngine(), host_label=name,
                        policy=Policy(operators=operators, channels=channels_rule))

    targets = {"alpha": host("alpha"), "bravo": host("bravo"), "charlie": host("charlie", frozenset({"UOTHER"}))}
    f = Fleet(targets, "alpha", {"pair": ("bravo", "charlie"), "web": ("alpha", "bravo")},
              {"C0BRAVO": "bravo", "#web-ops": "web", "C0CHARLIE": "charlie"})
    for s in targets.values():
        s.fleet = f
    return targets["alpha"]


def values(choices: pullform.HostChoices) -> list[str]:
    return [c.value for c in choices.choices]


def test_the_hosts_and_groups_a_person_may_pull_on_each_by_its_roles():
    services = fleet()
    mine = pullform.host_choices(services, OPS, "C0BRAVO")
    assert values(mine) == ["alpha", "bravo", "web"] and mine.initial == "bravo"
    assert {c.value: c.description for c in mine.choices}["web"] == "group: alpha, bravo"
    assert pullform.host_choices(services, OPS, "C0X", "web-ops").initial == "web"
    assert pullform.host_choices(services, OPS, "C0X").initial == "alpha"  # the fleet's default
    assert pullform.host_choices(services, OPS, "C0CHARLIE").initial == "alpha"  # a host they may not pull on
    other = pullform.host_choices(services, Actor("UOTHER", via="slack"))
    assert values(other) == ["charlie"] and other.initial == "charlie"  # the only one allowed
    assert values(pullform.host_choices(services, Actor("UVIEW", via="slack"))) == []


def test_everyone_allowed_everywhere_gets_every_group_and_all():
    services = fleet()
    for s in services.fleet.targets.values():
        s.policy = Policy(operators=frozenset({"UOPS"}))
    assert values(pullform.host_choices(services, OPS)) == ["alpha", "bravo", "charlie", "pair", "web", "all"]


def test_a_channel_rule_refuses_the_form_elsewhere_but_suggestions_go_by_role():
    services = fleet(channels_rule=frozenset({"C0OPS"}))
    assert values(pullform.host_choices(services, OPS)) == ["alpha", "bravo", "web"]
    elsewhere = Actor("UOPS", via="slack", channel="C0ELSEWHERE")
    assert values(pullform.host_choices(services, elsewhere)) == []
    assert values(pullform.host_choices(services, elsewhere, any_channel=True)) == ["alpha", "bravo", "web"]


def test_whose_engine_suggests():
    services = fleet()
    f = services.fleet
    assert pullform.suggestions_from(services, "bravo") is f.services("bravo")
    assert pullform.suggestions_from(services, "pair") is f.services("bravo")  # a group: its first host
    assert pullform.suggestions_from(services, "all") is f.services("alpha")  # the default
    assert pullform.suggestions_from(services, "zulu") is None
    one = Services(engine=FakeEngine(), host_label="solo")
    assert pullform.suggestions_from(one, "") is one and pullform.suggestions_from(one, "other") is None


@pytest.mark.parametrize("host,line", [
    ("bravo", "docker pull @bravo 127.0.0.1:5000/x:1"),
    ("web", "docker pull @web 127.0.0.1:5000/x:1"),
    ("", "docker pull 127.0.0.1:5000/x:1"),
])
def test_the_line_names_the_host_as_a_typed_pull_does(host, line):
    got, errors = pullform.pull_line("127.0.0.1:5000", "x", "1", host=host)
    assert (got, errors) == (line, {})
    command = parse_command(got)
    assert command.target == (host or None) and command.parsed.args == ["127.0.0.1:5000/x:1"]


@pytest.mark.parametrize("host", ["-H", "a b", "--all-tags", "x\u202e", "@other"])
def test_no_host_adds_a_flag_an_argument_or_another_selector(host):
    line, errors = pullform.pull_line("127.0.0.1:5000", "x", "1", host=host)
    assert line == "" and "host" in errors


def test_the_form_gets_a_host_menu_only_with_many_hosts():
    services = fleet()
    view = pull_form(host="alpha", registry="docker.io", hosts=pullform.host_choices(services, OPS, "C0BRAVO"))
    assert view_problems(view) == []
    menu = next(b for b in view["blocks"] if b.get("block_id") == "host")["element"]
    assert menu["action_id"] == ACTION_HOST and menu["initial_option"]["value"] == "bravo"
    assert form_host(view) == "bravo"
    single = pull_form(host="solo", registry="docker.io")
    assert not any(b.get("block_id") == "host" for b in single["blocks"]) and form_host(single) == ""
    assert form_host({"private_metadata": "not json"}) == "" and form_host({"private_metadata": "[1]"}) == ""

"""The fake Slack refuses the views Slack would refuse (so tests of views can fail)."""

from __future__ import annotations

import time

import pytest

from bot.render.modals import pull_form
from tests.fakes.slack_views import Views, answer, options_problems, view_problems


def _modal(**kw):
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Pull an image"},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}
    view.update(kw)
    return view


@pytest.mark.parametrize("view,why", [
    (_modal(title={"type": "plain_text", "text": "x" * 25}), "view/title"),
    (_modal(title={"type": "mrkdwn", "text": "t"}), "view/title"),
    (dict(_modal(), title=None), "view/title"),
    (_modal(blocks=[{"type": "divider"}] * 101), "101 blocks"),
    (_modal(private_metadata="x" * 3001), "private_metadata"),
    (_modal(callback_id="x" * 256), "callback_id"),
    (_modal(blocks=[{"type": "input", "label": {"type": "plain_text", "text": "L"},
                     "element": {"type": "plain_text_input", "action_id": "a"}}]), "view/submit"),
    (_modal(submit={"type": "plain_text", "text": "x" * 25}), "view/submit"),
    (_modal(blocks=[{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}]), "fields"),
    (_modal(blocks=[{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]), "/text"),
    (_modal(blocks=[{"type": "actions", "elements": [
        {"type": "button", "action_id": "b", "text": {"type": "plain_text", "text": "x" * 76}}]}]), "/text"),
    (_modal(blocks=[{"type": "table"}]), "not allowed in a view"),
    (_modal(blocks=[{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]), "repeated"),
    ({"type": "home", "title": {"type": "plain_text", "text": "t"}, "blocks": []}, "not allowed in a home view"),
    (_modal(blocks=[{"type": "actions", "elements": [
        {"type": "conversations_select", "action_id": "c", "response_url_enabled": True}]}]), "response_url_enabled"),
])
def test_what_slack_refuses_is_refused(view, why):
    problems = view_problems(view)
    assert any(why in p for p in problems), problems


def test_dockhands_form_passes():
    assert view_problems(pull_form(host="h", registry="docker.io", from_conversation=True)) == []


def test_option_limits():
    assert options_problems({"options": [{"text": {"type": "plain_text", "text": "x"}, "value": "v" * 151}]})
    assert options_problems({"options": [{"text": {"type": "plain_text", "text": "x" * 76}, "value": "v"}]})
    assert options_problems({"options": [{"text": {"type": "plain_text", "text": "x"}, "value": "v"}] * 101})
    assert options_problems({"options": [{"text": {"type": "plain_text", "text": "x"}, "value": "v"}]}) == []


def test_trigger_ids_are_fresh_and_single_use():
    class Fake:
        pass

    fake = Fake()
    views = fake.views = Views()
    good = views.issue()
    opened = answer(fake, "views.open", {"trigger_id": good, "view": _modal()})
    assert opened["ok"] and opened["view"]["id"].startswith("V")
    assert answer(fake, "views.open", {"trigger_id": good, "view": _modal()})["error"] == "exchanged_trigger_id"
    assert answer(fake, "views.open", {"view": _modal()})["error"] == "invalid_trigger_id"
    stale = views.issue()
    views.triggers[stale] -= 3.5
    assert answer(fake, "views.open", {"trigger_id": stale, "view": _modal()})["error"] == "expired_trigger_id"
    old_format = f"7.{int(time.time()) - 30}.abcdef0123456789"  # a command's trigger, dated by its seconds
    assert answer(fake, "views.open", {"trigger_id": old_format, "view": _modal()})["error"] == "expired_trigger_id"
    refused = answer(fake, "views.open", {"trigger_id": views.issue(), "view": _modal(title=None)})
    assert refused["error"] == "invalid_arguments" and refused["response_metadata"]["messages"]
    assert answer(fake, "views.update", {"view_id": "VNOPE", "view": _modal()})["error"] == "not_found"
    assert answer(fake, "views.publish", {"user_id": "U1", "view": _modal()})["error"] == "invalid_arguments"

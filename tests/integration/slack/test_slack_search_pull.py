"""Search leads to a pull: a menu of the results, each going through the same
checks as a typed /pull (the chooser's role, the announcement in the channel)."""

from __future__ import annotations

from tests.fakes.slack_api import buttons, message_problems
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401


def _menu(body: dict) -> dict:
    return next(el for el in buttons(body) if el.get("type") == "static_select")


async def test_a_search_result_pulls_through_the_same_checks(slack_app, engine_services, stack):
    h = await slack_app(engine_services(operators=frozenset({"UOPS"})))
    reply = await h.reply(await h.command("/search", "--limit 5 ubuntu"))
    assert message_problems(reply.body) == []
    menu = _menu(reply.body)
    assert menu["placeholder"]["text"] == "Pull an image…"
    labels = [o["text"]["text"] for o in menu["options"]]
    assert labels[0] == "ubuntu" and len(labels) == 5
    chosen = {"action_id": menu["action_id"], "selected_option": menu["options"][0]}
    # a viewer may search but not pull
    denied = await h.reply(await h.click(chosen, user_id="UVIEW"))
    assert "needs the operator role" in denied.text
    assert not h.fake.api_calls("chat.postMessage")
    # an operator's choice is a pull, announced in the channel like a typed one
    await h.click(chosen, user_id="UOPS")
    announced = await h.fake.wait_for("api", "chat.postMessage", where=lambda c: "pulling" in c.text)
    assert f"`{stack.index}/ubuntu`" in announced[0].text and "<@UOPS>" in announced[0].text


async def test_shared_search_results_have_no_menu(slack_app, engine_services):
    h = await slack_app(engine_services())
    reply = await h.reply(await h.command("/search", "--limit 3 ubuntu"))
    share = next(b for b in buttons(reply.body) if b.get("action_id") == "dockhand.share")
    await h.click(share)
    posted = await h.fake.wait_for("api", "chat.postMessage")
    assert not [el for el in buttons(posted[0].body) if el.get("type") == "static_select"]

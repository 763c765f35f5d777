"""Buttons: help buttons run commands, Share in channel, Previous/Next pages
over a 2,000-image list on the private engine."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.render.blockkit import MESSAGE_BUDGET, block_chars
from tests.fakes.slack_api import SIGNING_SECRET as SECRET
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401
from tests.fakes.slack_api import action_body, buttons, message_problems, signed_headers

MANY = 2000


def button(body: dict, action_id: str) -> dict:
    found = [b for b in buttons(body) if b["action_id"] == action_id]
    assert found, f"no {action_id} button in {[b['action_id'] for b in buttons(body)]}"
    return found[0]


def table_rows(call, repo: str) -> list[str]:
    """The TAG of each row of the message's table: its data_table's cells, or
    the lines of its code blocks."""
    tables = [b for b in call.body.get("blocks") or [] if b.get("type") == "data_table"]
    if tables:
        return [row[1]["text"] for row in tables[0]["rows"][1:] if row[0]["text"] == repo]
    return re.findall(rf"^{re.escape(repo)}\s+(t\d{{4}})\s", call.text, re.M)


@pytest.fixture(scope="module")
def many_images(stack, docker_client):
    """One throwaway image tagged 2,000 times (removed afterwards)."""
    seed = stack.seed("hello_world")
    repo = f"{stack.registry}/dockhand-slack-many-{uuid.uuid4().hex[:8]}/img"
    container = docker_client.containers.create(seed, command=["/bin/true"], network_mode="none")
    try:
        image = container.commit(repository=repo, tag="t0000")
    finally:
        container.remove(force=True)
    tags = [f"t{i:04d}" for i in range(MANY)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: docker_client.api.tag(image.id, repo, tag=t), tags[1:]))
    try:
        yield repo, image.id, tags
    finally:
        _quiet_rmi(docker_client, image.id)  # forced: every tag at once
        left = docker_client.api.images(name=repo, quiet=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda ref: _quiet_rmi(docker_client, ref), left))
        assert not docker_client.api.images(name=repo), "teardown left tags behind"


def _quiet_rmi(client, ref):
    try:
        client.api.remove_image(ref, force=True)
    except Exception:  # noqa: BLE001 - best effort teardown
        pass


async def test_two_thousand_images_render_within_limits_and_paginate(slack_app, engine_services, many_images,
                                                                      docker_client):
    repo, image_id, tags = many_images
    h = await slack_app(engine_services())
    sent = await h.command("/images", repo)
    assert sent.status == 200 and sent.elapsed < 1.0
    first = await h.reply(sent, timeout=60)
    assert message_problems(first.body) == []
    assert len(first.body["blocks"]) <= 50
    assert sum(block_chars(b) for b in first.body["blocks"]) <= MESSAGE_BUDGET
    assert re.search(r"Rows 1–(\d+) of 2,000", first.text)
    shown = table_rows(first, repo)
    per_page = len(shown)
    assert 10 <= per_page < MANY
    assert not [b for b in buttons(first.body) if b["action_id"] == "dockhand.page.prev"]

    # Next: page 2, replacing the original ephemeral message.
    nxt = button(first.body, "dockhand.page.next")
    assert json.loads(nxt["value"])["p"] == 1 and len(nxt["value"]) <= 2000
    click = await h.click(nxt)
    assert click.status == 200 and click.elapsed < 1.0
    page2 = await h.reply(click, timeout=60)
    assert page2.body.get("replace_original") is True
    assert message_problems(page2.body) == []
    assert f"Rows {per_page + 1}–{2 * per_page} of 2,000" in page2.text
    rows2 = table_rows(page2, repo)
    assert len(rows2) == per_page and not set(rows2) & set(shown)
    assert "changed" not in page2.text

    # Previous goes back to exactly the first page.
    back = await h.reply(await h.click(button(page2.body, "dockhand.page.prev")), timeout=60)
    assert table_rows(back, repo) == shown

    # The list changes between two clicks: said so, and the new list is paged.
    await asyncio.to_thread(docker_client.api.tag, image_id, repo, "extra")
    changed = await h.reply(await h.click(button(page2.body, "dockhand.page.next")), timeout=60)
    assert "The list changed since the previous page" in changed.text
    assert "of 2,001" in changed.text
    assert message_problems(changed.body) == []


async def test_last_page_has_no_next(slack_app, engine_services, many_images):
    repo, _, _ = many_images
    h = await slack_app(engine_services())
    first = await h.reply(await h.command("/images", repo), timeout=60)
    value = json.loads(button(first.body, "dockhand.page.next")["value"])
    value["p"] = 10_000  # past the end: clamped to the last page
    last = await h.reply(await h.click({"action_id": "dockhand.page.next", "value": json.dumps(value)}), timeout=60)
    assert re.search(r"Rows [\d,]+–2,00\d of 2,00\d", last.text)
    ids = [b["action_id"] for b in buttons(last.body)]
    assert "dockhand.page.next" not in ids and "dockhand.page.prev" in ids


async def test_help_buttons_run_their_commands(slack_app, engine_services, stack):
    h = await slack_app(engine_services())
    help_reply = await h.reply(await h.command("/docker", "help"))
    run_buttons = [b for b in buttons(help_reply.body) if b["action_id"].startswith("dockhand.run.")]
    labels = {b["text"]["text"]: b for b in run_buttons}
    assert {"images", "info", "version"} <= set(labels)
    for label, expect in (("images", r"REPOSITORY\s+TAG"), ("version", r"Server: Docker Engine"),
                          ("info", r"Server Version")):
        click = await h.click(labels[label])
        assert click.status == 200 and click.elapsed < 1.0
        reply = await h.reply(click)
        assert re.search(expect, reply.text), reply.text[:500]
        assert reply.body.get("replace_original") is False  # a new ephemeral, help stays
        assert reply.body["response_type"] == "ephemeral"
        assert message_problems(reply.body) == []


async def test_share_in_channel_posts_for_everyone_naming_who_shared(slack_app, engine_services, fake_slack):
    h = await slack_app(engine_services())
    mine = await h.reply(await h.command("/images", "-a"))
    share = button(mine.body, "dockhand.share")
    click = await h.click(share, user_id="UBOB", user_name="bob")
    assert click.status == 200
    posted = (await fake_slack.wait_for("api", "chat.postMessage"))[0]
    assert posted.body["channel"] == "CDOCKHAND"
    assert "<@UBOB> shared `docker images -a`" in posted.text
    assert re.search(r"REPOSITORY\s+TAG", posted.text)
    assert not buttons(posted.body), "the channel copy is a record: no buttons"
    assert message_problems(posted.body) == []
    # A replay of the very same click (same action_ts) posts nothing more.
    body = action_body(click.payload)
    status, _, _ = await h.post(body, signed_headers(SECRET, body))
    assert status == 200
    await asyncio.sleep(0.5)
    assert len(fake_slack.api_calls("chat.postMessage")) == 1


async def test_share_where_the_bot_cannot_post_goes_through_the_response_url(slack_app, engine_services,
                                                                               fake_slack):
    fake_slack.fail_post["GPRIVATE"] = "channel_not_found"
    h = await slack_app(engine_services())
    mine = await h.reply(await h.command("/images", channel_id="GPRIVATE"))
    click = await h.click(button(mine.body, "dockhand.share"), channel_id="GPRIVATE")
    reply = await h.reply(click)
    assert reply.body["response_type"] == "in_channel"
    assert "<@UALICE> shared" in reply.text


async def test_out_of_date_button_value_is_explained(slack_app, engine_services):
    h = await slack_app(engine_services())
    reply = await h.reply(await h.click({"action_id": "dockhand.page.next", "value": "garbage"}))
    assert "out of date" in reply.text

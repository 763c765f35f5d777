"""Lists as Slack's data_table (sortable, filterable), the CLI's text one click
away, a refused table answered at once as code blocks, and the pull's
progress bar: all through signed requests to the running app, the fake Slack
checking every block against the documented limits, on the private engine."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid

import pytest

from tests.fakes.forwarder import Forwarder
from tests.fakes.slack_api import action_body, action_payload, buttons, message_problems, signed_headers
from tests.fakes.slack_harness import SECRET, clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

ADMIN = "UALICE"


def data_table(body: dict) -> dict:
    [table] = [b for b in body.get("blocks") or [] if b.get("type") == "data_table"]
    return table


def button(body: dict, action_id: str) -> dict:
    return next(b for b in buttons(body) if b["action_id"] == action_id)


def code_text(body: dict) -> str:
    return "\n".join(b["text"]["text"] for b in body.get("blocks") or []
                     if b.get("type") == "section" and "```" in b["text"]["text"])


async def test_images_is_a_data_table_sorted_by_real_sizes_and_ages(slack_app, engine_services, stack,
                                                                    docker_client):
    h = await slack_app(engine_services())
    sent = await h.command("/images")
    reply = await h.reply(sent)
    assert message_problems(reply.body) == []
    table = data_table(reply.body)
    header = [c["text"] for c in table["rows"][0]]
    assert header == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert table["caption"].startswith("docker images on ")
    engine = {i["Id"][7:19]: i for i in docker_client.api.images()}
    rows = table["rows"][1:]
    assert rows
    for row in rows:
        image = engine[row[2]["text"]]
        created, size = row[3], row[4]
        # sortable by the real value, showing the CLI's words
        assert created["type"] == size["type"] == "raw_number"
        assert size["value"] == image["Size"] and created["value"] == image["Created"]
        assert re.fullmatch(r"[\d.]+[kMG]?B", size["text"]) and created["text"].endswith("ago")
    # the CLI's text is the notification text
    assert re.search(r"^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$", reply.body["text"], re.M)

    # one click: the same list as the CLI prints it, for the clicker, next to the table
    click = await h.click(button(reply.body, "dockhand.cli"))
    assert click.status == 200 and click.elapsed < 1.0
    cli = await h.reply(click)
    assert cli.body["response_type"] == "ephemeral" and cli.body.get("replace_original") is False
    assert message_problems(cli.body) == []
    assert not [b for b in cli.body["blocks"] if b["type"] == "data_table"]
    shown = code_text(cli.body)
    assert re.search(r"REPOSITORY {3,}TAG {3,}IMAGE ID {3,}CREATED {3,}SIZE", shown)
    for row in rows:
        assert row[2]["text"] in shown
    share = button(cli.body, "dockhand.share")
    assert json.loads(share["value"])["v"] == "cli"  # sharing it shares the CLI's view


async def test_a_refused_table_costs_no_reply_and_is_logged_once_by_shape(slack_app, engine_services, caplog):
    h = await slack_app(engine_services())
    h.fake.refuse_block_types = {"data_table"}  # a workspace that does not know the block yet
    with caplog.at_level(logging.INFO, logger="dockhand.slack"):
        for n in range(2):
            sent = await h.command("/images")
            if n == 0:
                answers = await h.fake.wait_for("response", sent.rid, count=2)
                refused, answered = answers[0], answers[1]
                assert [b for b in refused.body["blocks"] if b["type"] == "data_table"]
            else:  # remembered: straight out as code blocks, no second refusal
                await h.fake.wait_for("response", sent.rid)
                await asyncio.sleep(0.3)
                [answered] = h.fake.responses(sent.rid)
            assert message_problems(answered.body) == []
            assert not [b for b in answered.body["blocks"] if b["type"] == "data_table"]
            assert re.search(r"REPOSITORY {3,}TAG {3,}IMAGE ID", code_text(answered.body))
            assert answered.body["response_type"] == "ephemeral"
    refusals = [r.getMessage() for r in caplog.records if "refused a message" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert "invalid_blocks" in refusals[0] and "data_table(rows=" in refusals[0]
    assert "dockhand/" not in refusals[0] and "busybox" not in refusals[0]  # the shape, never the content


async def test_the_setting_turns_native_tables_off(slack_app, engine_services):
    h = await slack_app(engine_services(), native_tables=False)
    reply = await h.reply(await h.command("/images"))
    assert message_problems(reply.body) == []
    assert not [b for b in reply.body["blocks"] if b["type"] == "data_table"]
    assert re.search(r"REPOSITORY {3,}TAG {3,}IMAGE ID", code_text(reply.body))
    assert "dockhand.cli" not in [b["action_id"] for b in buttons(reply.body)]


async def test_a_plan_is_a_data_table_its_cli_text_a_click_away_and_refused_it_still_asks(
        slack_app, engine_services, make_image, stack):
    img = make_image(extra_tags=["2"])
    h = await slack_app(engine_services(admins=frozenset({ADMIN})))
    sent = await h.command("/rmi", f"{img.repo}:{img.tag}", user_id=ADMIN)
    assert sent.status == 200
    post = (await h.fake.wait_for("api", "chat.postMessage"))[0]
    assert message_problems(post.body) == [] and post.response["ok"]
    table = data_table(post.body)
    assert [c["text"] for c in table["rows"][0]] == ["IMAGE", "IMAGE ID", "WILL", "CONTAINERS", "FREES"]
    assert table["rows"][1][4]["type"] == "raw_number"
    assert button(post.body, "dockhand.confirm") and button(post.body, "dockhand.cancel")
    assert "IMAGE ID" in post.body["text"] and "```" in post.body["text"]  # the CLI's text, for notifications

    # "As the CLI prints it" on a plan: its message's own text (never a second plan)
    cli = button(post.body, "dockhand.cli")
    assert json.loads(cli["value"]) == {"op": button(post.body, "dockhand.confirm")["value"]}
    rid = uuid.uuid4().hex[:12]
    payload = action_payload(cli, response_url=h.fake.response_url(rid), user_id="UVIEWER", is_ephemeral=False,
                             message_ts=post.response["ts"])
    payload["message"] = {"type": "message", "ts": post.response["ts"], "text": post.body["text"],
                          "blocks": post.body["blocks"]}
    body = action_body(payload)
    status, _, _ = await h.post(body, signed_headers(SECRET, body))
    assert status == 200
    shown = (await h.fake.wait_for("response", rid))[0]
    assert shown.body["response_type"] == "ephemeral" and message_problems(shown.body) == []
    assert re.search(r"IMAGE {3,}IMAGE ID {3,}WILL", code_text(shown.body))
    assert len(h.fake.api_calls("chat.postMessage")) == 1  # no new plan
    assert stack.docker("image", "inspect", img.ref, check=False).returncode == 0

    # the same plan in a workspace that refuses the block: posted at once as code blocks, with its buttons
    h.fake.refuse_block_types = {"data_table"}
    await h.command("/rmi", f"{img.repo}:{img.tag}", user_id=ADMIN)
    posts = await h.fake.wait_for("api", "chat.postMessage", count=3)
    refused, answered = posts[1], posts[2]
    assert refused.response["error"] == "invalid_blocks" and answered.response["ok"]
    assert re.search(r"IMAGE {3,}IMAGE ID {3,}WILL", code_text(answered.body))
    assert button(answered.body, "dockhand.confirm") and button(answered.body, "dockhand.cancel")
    assert "dockhand.cli" not in [b["action_id"] for b in buttons(answered.body)]


class ThrottledRegistry(Forwarder):
    """127.0.0.1:<port> in front of the stack's registry, sending its answers
    at ``rate`` bytes a second: a pull slow enough to watch."""

    def __init__(self, target: str, rate: int):
        super().__init__(target)
        self.rate = rate

    async def chunk(self, data: bytes, *, to_target: bool, conn: dict) -> None:
        if not to_target:
            await asyncio.sleep(len(data) / self.rate)


@pytest.fixture
async def slow_registry(stack):
    proxy = await ThrottledRegistry(stack.registry, rate=8_000_000).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_a_pull_shows_a_progress_bar_in_the_channel(slack_app, engine_services, make_image, stack,
                                                         slow_registry):
    img = make_image(f"slack-bar-{uuid.uuid4().hex[:8]}", push=True, size=40_000_000)
    stack.docker("rmi", img.ref)
    ref = img.ref.replace(stack.registry, slow_registry.address, 1)  # the same image, arriving slowly
    h = await slack_app(engine_services(operators=frozenset({ADMIN})))
    await h.command("/pull", ref)
    await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=120)
    updates = h.fake.api_calls("chat.update")
    progress, final = updates[:-1], updates[-1]
    assert len(progress) >= 3, "a pull of several seconds shows its progress"
    gaps = [b.at - a.at for a, b in zip(progress, progress[1:])]
    assert all(g >= 0.9 for g in gaps), gaps  # the bar moves at most about once a second (the rate budget)
    bar = re.compile(r"`[█░]{20}`  ((\*\d{1,3}%\*|_sizing layers…_) · layers \d+/\d+ · .*"
                     r"|_waiting for the registry…_) · \d+:\d\d elapsed")
    for update in progress:
        assert message_problems(update.body) == []
        assert bar.search(update.body["blocks"][1]["text"]["text"]), update.body["blocks"][1]
    during = [m.groups() for u in progress for m in [re.search(
        r"\*(\d{1,3})%\* · layers (\d+)/(\d+) · ([\d.]+[kMG]?B) / ([\d.]+[kMG]?B) · (\d+):(\d\d) elapsed", u.text)] if m]
    assert during, [u.body["blocks"][1]["text"]["text"] for u in progress]
    percents = [int(g[0]) for g in during]
    assert percents == sorted(percents) and percents[0] < 100  # it moves forward
    # the bytes to fetch: the layers as the registry sends them (40 MB of random data, compressed)
    totals = {g[4] for g in during}
    assert len(totals) == 1 and totals.pop().endswith("MB") and 40 <= float(during[0][4][:-2]) <= 42.5
    assert any(int(g[5]) * 60 + int(g[6]) >= 1 for g in during)
    # the CLI's lines stay under the bar
    assert any("Downloading" in u.body["blocks"][2]["text"]["text"] for u in progress if len(u.body["blocks"]) > 2)
    # the result as today: who, what, the CLI's lines, no bar
    assert ":white_check_mark: <@UALICE> pulled" in final.text and "Digest: sha256:" in final.text
    assert not re.search(r"`[█░]{20}`", final.text)

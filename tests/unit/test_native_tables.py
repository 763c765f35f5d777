"""Native tables (Slack's data_table block), the fake Slack's table validation,
the code-block fallback and the pull progress bar: pure functions, no I/O."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.render import blockkit, text as text_render  # noqa: E402
from bot.render.blockkit import ACTION_CLI, ACTION_NEXT, ACTION_SHARE, parse_value, render  # noqa: E402
from bot.slack import fallback  # noqa: E402
from handlers.replies import Confirmation, LayerProgress, Notice, Progress, Reply, Table  # noqa: E402
from handlers.textfmt import table_lines  # noqa: E402
from tests.fakes.slack_api import buttons, message_problems, table_problems  # noqa: E402

COLUMNS = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
HOSTILE = "*URGENT* re-auth at https://evil.example/login <!channel> <@UBOSS> _now_"


def images_reply(n: int, *, repo_width: int = 0) -> Reply:
    rows, values = [], []
    for i in range(n):
        repo = f"127.0.0.1:5000/dockhand/t{i:04d}" + "x" * repo_width
        rows.append((repo, "latest", f"{i:012x}", f"{i + 1} days ago", f"{(i + 1) * 1.5:.3g}MB"))
        values.append((None, None, None, 1_700_000_000.0 - i * 86400, (i + 1) * 1_500_000.0))
    return Reply("docker images", (Table(COLUMNS, tuple(rows), values=tuple(values)),), summary=f"{n} images",
                 host="unix:///tmp/s/docker.sock", engine_version="20.10.24")


def data_tables(message: dict) -> list[dict]:
    return [b for b in message["blocks"] if b["type"] == "data_table"]


def valid(message: dict) -> None:
    assert message_problems({"text": message["text"], "blocks": message["blocks"]}) == []
    if "fallback" in message:
        assert message_problems(message["fallback"]) == []
        assert not data_tables(message["fallback"])


# --- the data_table block ------------------------------------------------------

def test_a_list_is_one_data_table_sortable_by_real_values_showing_the_cli_words():
    reply = images_reply(30)
    message = render(reply, native=True, share=True)
    valid(message)
    [table] = data_tables(message)
    header, *rows = table["rows"]
    assert [c for c in header] == [{"type": "raw_text", "text": c} for c in COLUMNS]
    assert len(rows) == 30 and {len(r) for r in table["rows"]} == {5}
    assert table["caption"].startswith("docker images on unix:///tmp/s/docker.sock: 30 rows")
    assert table["page_size"] == blockkit.NATIVE_PAGE_SIZE
    first = rows[0]
    assert first[0] == {"type": "raw_text", "text": "127.0.0.1:5000/dockhand/t0000"}
    assert first[3] == {"type": "raw_number", "value": 1_700_000_000, "text": "1 days ago"}
    assert first[4] == {"type": "raw_number", "value": 1_500_000, "text": "1.5MB"}
    # every cell of a numeric column is raw_number (Slack sorts by value only then)
    assert all(r[3]["type"] == r[4]["type"] == "raw_number" for r in rows)
    assert not any(c["type"] == "rich_text" for r in table["rows"] for c in r)
    # one block holds it: no page buttons, but the CLI's text one click away
    ids = [b["action_id"] for b in buttons(message)]
    assert ACTION_NEXT not in ids and ACTION_CLI in ids and ACTION_SHARE in ids
    cli = parse_value(next(b["value"] for b in buttons(message) if b["action_id"] == ACTION_CLI))
    assert cli == {"c": "docker images", "p": 0, "f": reply.parts[0].fingerprint(), "v": "cli"}


def test_the_notification_text_is_the_cli_text_and_the_fallback_the_code_block_shape():
    reply = images_reply(5)
    message = render(reply, native=True)
    lines = table_lines(reply.parts[0])
    assert message["text"].startswith("5 images\n```\n")
    assert message["text"].split("\n")[2:-1] == lines
    assert message["fallback"] == render(reply)  # exactly today's code-block message
    # the shell is unchanged: the same words, the same layout
    assert text_render.render(reply) == "\n".join(lines)


def test_native_tables_off_or_a_cli_view_is_the_code_block_shape():
    reply = images_reply(5)
    assert render(reply, native=False) == render(reply)
    cli = render(reply, native=True, cli=True, share=True)
    assert not data_tables(cli) and "fallback" not in cli
    share = next(b for b in buttons(cli) if b["action_id"] == ACTION_SHARE)
    assert parse_value(share["value"])["v"] == "cli"  # sharing a CLI view shares the CLI view


def test_headerless_and_empty_tables_stay_code_blocks():
    quiet = Reply("docker images -q", (Table(("IMAGE ID",), (("abc",), ("def",)), headerless=True),))
    assert not data_tables(render(quiet, native=True))
    empty = Reply("docker images", (Table(COLUMNS, ()),))
    message = render(empty, native=True)
    assert not data_tables(message) and "(no rows)" in str(message["blocks"])


def test_a_list_longer_than_one_block_keeps_the_code_pages_and_their_buttons():
    reply = images_reply(230)
    layout = blockkit.TableLayout(reply.parts[0])
    assert layout.pages > 1
    seen = []
    for page in range(layout.pages):
        message = render(reply, page=page, native=True, share=True)
        valid(message)
        [table] = data_tables(message)
        names = [r[0]["text"] for r in table["rows"][1:]]
        # the same rows as the code-block page of the same number (and its fallback)
        code_names = [ln.split()[0] for ln in _code_lines(render(reply, page=page))[1:]]
        assert names == code_names
        assert _code_lines(message["fallback"]) == _code_lines(render(reply, page=page))
        seen += names
        ids = [b["action_id"] for b in buttons(message)]
        assert (ACTION_NEXT in ids) == (page < layout.pages - 1)
    assert seen == [r[0] for r in reply.parts[0].rows]


def test_a_table_too_wide_for_one_block_pages_within_the_cell_limit():
    reply = images_reply(100, repo_width=60)  # 100 rows but too many characters for one block
    message = render(reply, native=True)
    valid(message)
    [table] = data_tables(message)
    assert len(table["rows"]) - 1 < 100
    assert ACTION_NEXT in [b["action_id"] for b in buttons(message)]


def test_outside_text_is_raw_text_as_data_and_empty_cells_show_a_dash():
    rows = (("evil/x", HOSTILE, "3", ""), ("ok/y", "", "12", "[OK]"))
    reply = Reply("docker search x", (Table(("NAME", "DESCRIPTION", "STARS", "OFFICIAL"), rows,
                                             values=((None, None, 3.0, None), (None, None, 12.0, None))),))
    message = render(reply, native=True)
    valid(message)
    [table] = data_tables(message)
    evil, ok = table["rows"][1], table["rows"][2]
    assert evil[1] == {"type": "raw_text", "text": HOSTILE[:len(evil[1]["text"]) - 1] + "…"} or \
        evil[1] == {"type": "raw_text", "text": HOSTILE}
    assert evil[3] == {"type": "raw_text", "text": "-"} and ok[1] == {"type": "raw_text", "text": "-"}
    assert evil[2] == {"type": "raw_number", "value": 3, "text": "3"}
    # the notification text holds it escaped, in a code fence: no mention, no link
    assert "<!channel>" not in message["text"] and "&lt;!channel&gt;" in message["text"]


def test_text_cannot_reorder_itself_in_a_cell():
    rows = (("evil/\u202etxt.exe", "a\u2066b\u2069", "1", "x"),)
    reply = Reply("docker search x", (Table(("NAME", "DESCRIPTION", "STARS", "OFFICIAL"), rows),))
    [table] = data_tables(render(reply, native=True))
    assert [c["text"] for c in table["rows"][1]] == ["evil/ txt.exe", "a b ", "1", "x"]


def test_a_plans_cli_button_carries_the_operation_not_the_command():
    reply = Reply("rmi old:1", (Table(("IMAGE", "IMAGE ID", "WILL", "CONTAINERS", "FREES"),
                                      (("old:1", "abc", "untag", "-", "-"),),
                                      values=((None, None, None, None, 0.0),)),
                                Notice("1 image"), Confirmation("op123", "Remove?", 2e9, "the requester")),
                  summary="1 image")
    message = render(reply, native=True)
    valid(message)
    cli = next(b for b in buttons(message) if b["action_id"] == ACTION_CLI)
    assert cli["value"] == '{"op": "op123"}'
    shown = blockkit.cli_message(message["text"])
    assert message_problems(shown) == []
    assert "old:1" in shown["blocks"][1]["text"]["text"] and shown["blocks"][1]["text"]["text"].startswith("```")
    # text that comes back unescaped in a payload is escaped again: never a mention
    sneaky = blockkit.cli_message("plan <!channel>\n```\nIMAGE  <@UBOSS> &amp; x\n```")
    assert "<!channel>" not in str(sneaky) and "<@UBOSS>" not in str(sneaky)
    assert "&lt;@UBOSS&gt; &amp; x" in sneaky["blocks"][1]["text"]["text"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=80), st.text(max_size=30), st.integers(0, 10**12)),
                min_size=1, max_size=400),
       st.integers(0, 20))
def test_any_list_renders_a_message_slack_takes(rows, page):
    table = Table(("NAME", "DESCRIPTION", "SIZE"), tuple((a, b, str(n)) for a, b, n in rows),
                  values=tuple((None, None, float(n)) for _, _, n in rows))
    message = render(Reply("docker search q", (table,), summary="s"), page=page, native=True, share=True)
    valid(message)
    for t in data_tables(message):
        assert t["rows"][0][0]["type"] == "raw_text"


# --- the fake Slack refuses what Slack would -----------------------------------------

def _dt(rows, **kw) -> dict:
    return {"type": "data_table", "caption": "c", "rows": rows, **kw}


def _t(text: str) -> dict:
    return {"type": "raw_text", "text": text}


RICH = {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "x"}]}]}


@pytest.mark.parametrize("block, why", [
    (_dt([[_t("A"), _t("B")], [_t("1")]]), "unequal length"),
    (_dt([[_t("A")]]), "rows (2-101)"),
    (_dt([[_t("A")]] + [[_t("x")]] * 101), "rows (2-101)"),
    (_dt([[_t(str(i)) for i in range(21)], [_t("x")] * 21]), "cells (1-20)"),
    (_dt([[RICH], [_t("x")]]), "rich_text in the header"),
    ({"type": "data_table", "rows": [[_t("A")], [_t("x")]]}, "needs a caption"),
    (_dt([[_t("A")], [_t("x")]], page_size=0), "page_size"),
    (_dt([[_t("A")], [_t("x")]], page_size=101), "page_size"),
    (_dt([[_t("A")], [_t("")]]), "at least 1 character"),
    (_dt([[_t("A")], [{"type": "raw_number", "text": "1"}]]), "numeric value"),
    (_dt([[_t("A")], [{"type": "raw_number", "value": "1", "text": "1"}]]), "numeric value"),
    (_dt([[_t("A")], [{"type": "mrkdwn", "text": "*x*"}]]), "has type 'mrkdwn'"),
    (_dt([[_t("A")], [_t("x" * 10_001)]]), "characters in its cells"),
    ({"type": "table", "rows": [[_t("x")]] * 101}, "rows (1-100)"),
    ({"type": "table", "rows": [[_t("x")]], "column_settings": [{"align": "middle"}]}, "column_settings"),
])
def test_the_fake_refuses_tables_slack_would(block, why):
    problems, _ = table_problems(0, block)
    assert any(why in p for p in problems), problems
    assert message_problems({"text": "t", "blocks": [block]})[0].startswith("invalid_blocks")


def test_the_fake_takes_documented_tables_and_caps_cells_per_message():
    good = _dt([[_t("A"), _t("N")], [RICH, {"type": "raw_number", "value": 1.5, "text": "1.5"}]], page_size=100)
    assert message_problems({"text": "t", "blocks": [good]}) == []
    assert message_problems({"text": "t", "blocks": [{"type": "table", "rows": [[_t("a"), RICH]],
                                                      "column_settings": [None, {"align": "right"}]}]}) == []
    half = _dt([[_t("A")], [_t("x" * 6000)]])
    assert any("a message" in p for p in message_problems({"text": "t", "blocks": [half, half]}))


# --- the fallback ---------------------------------------------------------------------

class Refused(Exception):
    def __init__(self, error):
        self.response = {"error": error}


def test_a_refused_table_goes_again_as_code_blocks_and_is_logged_once_by_shape(caplog):
    message = render(images_reply(5), native=True)
    sent = []

    async def call(text, blocks):
        sent.append(blocks)
        if any(b["type"] == "data_table" for b in blocks):
            raise Refused("invalid_blocks")
        return "ok"

    fallback.forget()
    with caplog.at_level(logging.DEBUG, logger="dockhand.slack"):
        assert asyncio.run(fallback.send(call, message, where="chat.postMessage")) == "ok"
        # refused once: the next message with a data_table goes straight out as code blocks
        assert fallback.preferred(message) == message["fallback"]
        assert asyncio.run(fallback.send(call, message, where="chat.postMessage")) == "ok"
    assert sent == [message["blocks"], message["fallback"]["blocks"], message["fallback"]["blocks"]]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    logged = warnings[0].getMessage()
    assert "invalid_blocks" in logged and "data_table(rows=6 cols=5 cells=raw_numberx10,raw_textx20" in logged
    assert "dockhand/t0000" not in logged and "MB" not in logged  # the shape, never the content
    # ... for a while: then the table is tried again
    later = 1e12
    assert not fallback.recently_refused(message, now=later)
    fallback.forget()
    assert fallback.preferred(message) is message


def test_other_failures_are_not_retried_and_text_is_the_last_resort():
    fallback.forget()
    async def fails(text, blocks):
        raise Refused("channel_not_found")

    with pytest.raises(Refused):
        asyncio.run(fallback.send(fails, render(images_reply(2), native=True), where="x"))
    sent = []

    async def refuses_blocks(text, blocks):
        sent.append((text, blocks))
        if blocks:
            raise Refused("invalid_blocks")
        return "ok"

    assert asyncio.run(fallback.send(refuses_blocks, render(images_reply(2), native=True), where="x")) == "ok"
    assert sent[-1][1] == [] and sent[-1][0] == "2 images"
    fallback.forget()


# --- the progress bar -----------------------------------------------------------------

def _pull(*layers, elapsed=12.0) -> Progress:
    return Progress("Pulling 127.0.0.1:5000/big:latest", tuple(layers), elapsed=elapsed)


def test_the_bar_shows_layers_bytes_percent_and_elapsed():
    p = _pull(LayerProgress("a", "Pull complete", size=4_000_000, downloaded=4_000_000),
              LayerProgress("b", "Downloading", 1_000_000, 4_000_000, size=4_000_000, downloaded=1_000_000),
              LayerProgress("c", "Already exists"))
    assert p.fraction() == pytest.approx(5 / 8)
    bar = blockkit.progress_bar(p)
    assert bar.startswith("`" + "█" * 12 + "░" * 8 + "`")
    assert "*62%*" in bar and "layers 2/3" in bar and "5MB / 8MB" in bar and "0:12 elapsed" in bar
    message = render(Reply("docker pull big", (p,)), native=True)
    assert message_problems(message) == []
    assert bar in message["blocks"][0]["text"]["text"]
    # the CLI's lines stay under it, and the shell prints only them
    assert "b: Downloading" in str(message["blocks"][1:])
    assert text_render.render(Reply("docker pull big", (p,))).splitlines()[2] == "b: Downloading 1MB/4MB"


def test_before_every_size_is_known_no_percent_is_claimed():
    p = _pull(LayerProgress("a", "Downloading", 10, 100, size=100, downloaded=10),
              LayerProgress("b", "Waiting"), elapsed=3725)
    assert p.fraction() is None
    bar = blockkit.progress_bar(p)
    assert "%" not in bar and "sizing" in bar and "10B so far" in bar and "1:02:05 elapsed" in bar


def test_layer_bytes_follow_the_engine_events():
    from handlers.pull import _layer
    from handlers.ports import PullEvent

    seen = None
    for status, cur, tot in (("Pulling fs layer", 0, 0), ("Downloading", 50, 200), ("Downloading", 200, 200),
                             ("Verifying Checksum", 0, 0), ("Download complete", 0, 0),
                             ("Extracting", 100, 200), ("Pull complete", 0, 0)):
        seen = _layer(seen, PullEvent(id="abc", status=status, current=cur, total=tot))
        if status == "Downloading" and cur == 50:
            assert (seen.size, seen.downloaded) == (200, 50)
        if status == "Extracting":
            assert (seen.size, seen.downloaded) == (200, 200)  # extraction bytes are not download bytes
    assert seen.done and seen.downloaded == 200


def _code_lines(message: dict) -> list[str]:
    out = []
    for block in message["blocks"]:
        text = block.get("text", {}).get("text", "") if block["type"] == "section" else ""
        if text.startswith("```"):
            out += text[3:-3].strip("\n").split("\n")
    return out


def test_a_table_the_rest_of_the_message_leaves_no_room_for_is_the_code_block_shape():
    from handlers.replies import Action

    rows = tuple((f"library/image-number-{i}", f"A fairly long description of image {i} that…", str(i), "")
                 for i in range(100))
    table = Table(("NAME", "DESCRIPTION", "STARS", "OFFICIAL"), rows,
                  values=tuple((None, None, float(i), None) for i in range(100)))
    menu = tuple(Action(r[0], f"docker pull 127.0.0.1:5000/{r[0]}", group="Pull an image…") for r in rows)
    reply = Reply("docker search --limit 100 image", (table,), summary="100 results", actions=menu)
    message = render(reply, native=True, share=True)
    assert message == render(reply, share=True)  # never "1 more part did not fit"
    assert "did not fit" not in str(message["blocks"]) and "library/image-number-0" in str(message["blocks"])

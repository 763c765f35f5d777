"""bot/render/blockkit.py: every part type, and never a message Slack would refuse."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.render import blockkit  # noqa: E402
from bot.render.blockkit import (  # noqa: E402
    ACTION_NEXT,
    ACTION_PREV,
    ACTION_SHARE,
    MESSAGE_BUDGET,
    block_chars,
    page_count,
    parse_value,
    render,
    table_fingerprint,
)
from handlers.replies import (  # noqa: E402
    Action,
    ErrorPart,
    LayerProgress,
    Notice,
    Preformatted,
    Progress,
    Reply,
    Status,
    Table,
)
from handlers.textfmt import table_lines  # noqa: E402
from tests.fakes.slack_api import buttons, message_problems  # noqa: E402

COLUMNS = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")


def images_reply(n: int, **kw) -> Reply:
    rows = tuple((f"127.0.0.1:5000/dockhand/t{i:04d}", "latest", f"{i:012x}", "2 days ago", "4.26MB")
                 for i in range(n))
    return Reply("docker images", (Table(COLUMNS, rows),), summary=f"{n} images",
                 host="unix:///tmp/dockhand-stack/docker.sock", engine_version="20.10.24", **kw)


def assert_valid(message: dict) -> None:
    """What Slack would check, and Dockhand's own stricter budget."""
    assert set(message) == {"text", "blocks"}
    assert message["text"].strip(), "a plain text fallback is always there"
    assert message_problems(message) == []
    assert sum(block_chars(b) for b in message["blocks"]) <= MESSAGE_BUDGET
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
    for b in buttons(message):
        assert len(b["value"]) <= 2000 and len(b["text"]["text"]) <= 75
    json.dumps(message)


def code_lines(message: dict) -> list[str]:
    """The lines inside every ``` block, in order."""
    out = []
    for block in message["blocks"]:
        text = block.get("text", {}).get("text", "") if block["type"] == "section" else ""
        if text.startswith("```"):
            out += text[3:-3].strip("\n").split("\n")
    return out


def context_text(message: dict) -> str:
    return "\n".join(e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"])


# --- tables -------------------------------------------------------------------


def test_small_table_is_the_cli_layout_in_a_code_block():
    reply = images_reply(3)
    message = render(reply)
    assert_valid(message)
    assert code_lines(message) == table_lines(reply.parts[0])
    header = code_lines(message)[0]
    assert re.match(r"REPOSITORY {3,}TAG {3,}IMAGE ID {3,}CREATED {3,}SIZE$", header)
    assert not any(b["action_id"] in (ACTION_PREV, ACTION_NEXT) for b in buttons(message))
    ctx = context_text(message)
    assert "unix:///tmp/dockhand-stack/docker.sock" in ctx and "20.10.24" in ctx and "docker images" in ctx
    assert message["text"] == "3 images"


def test_two_thousand_rows_paginate_within_limits_and_cover_every_row_once():
    reply = images_reply(2000)
    pages = page_count(reply)
    assert 2000 / blockkit.PAGE_ROWS <= pages < 2000
    seen = []
    for p in range(pages):
        message = render(reply, page=p, share=True)
        assert_valid(message)
        lines = code_lines(message)
        assert lines[0].startswith("REPOSITORY")
        seen += lines[1:]
        ids = {b["action_id"] for b in buttons(message)}
        assert (ACTION_PREV in ids) == (p > 0)
        assert (ACTION_NEXT in ids) == (p < pages - 1)
        first = p * blockkit.PAGE_ROWS + 1
        last = min(2000, first + blockkit.PAGE_ROWS - 1)
        assert f"Rows {first:,}–{last:,} of 2,000" in context_text(message)
    assert seen == table_lines(reply.parts[0])[1:]


def test_page_buttons_carry_command_page_and_fingerprint():
    reply = images_reply(300)
    message = render(reply, page=1, command="images -a", share=True)
    by_id = {b["action_id"]: parse_value(b["value"]) for b in buttons(message)}
    fp = reply.parts[0].fingerprint()
    assert by_id[ACTION_PREV] == {"c": "images -a", "p": 0, "f": fp}
    assert by_id[ACTION_NEXT] == {"c": "images -a", "p": 2, "f": fp}
    assert by_id[ACTION_SHARE] == {"c": "images -a", "p": 1, "f": ""}
    assert table_fingerprint(reply) == fp


def test_page_out_of_range_is_clamped():
    reply = images_reply(120)
    last = page_count(reply) - 1
    assert code_lines(render(reply, page=999)) == code_lines(render(reply, page=last))
    assert code_lines(render(reply, page=-3)) == code_lines(render(reply, page=0))


@pytest.mark.parametrize("cell", [
    "x" * 10_000,
    "&" * 5_000,
    "<!channel> <@U123> " * 400,
    "```" * 2_000,
    "line\nbreak\ttab\x00nul\x1b[31m",
    "🐳" * 3_000,
])
def test_pathological_cells_never_break_the_limits(cell):
    rows = tuple((cell, f"t{i}", cell[:100], "now", "1B") for i in range(2000))
    reply = Reply("docker images", (Table(COLUMNS, rows),), host="h", engine_version="1")
    for p in (0, 1, page_count(reply) - 1):
        message = render(reply, page=p, share=True)
        assert_valid(message)
        body = "\n".join(code_lines(message))
        assert "<!channel>" not in json.dumps(message)  # escaped: no mass mention
        assert "\x00" not in body and "\x1b" not in body
        for block in message["blocks"]:
            text = block.get("text", {}).get("text", "")
            if text.startswith("```"):
                assert text.count("```") == 2  # a cell cannot close the code block


def test_wide_tables_are_cut_in_the_widest_columns_only():
    rows = (("a" * 400, "short", "x"),)
    message = render(Reply("docker search x", (Table(("NAME", "DESCRIPTION", "STARS"), rows),)))
    line = code_lines(message)[1]
    assert "short" in line and "…" in line
    assert len(line) <= blockkit.LINE_TARGET


def test_many_columns_still_fit():
    cols = tuple(f"C{i}" for i in range(300))
    rows = tuple(tuple("v" * 50 for _ in cols) for _ in range(50))
    assert_valid(render(Reply("x", (Table(cols, rows),))))


def test_headerless_table_prints_rows_only():
    reply = Reply("docker images -q", (Table(("IMAGE ID",), (("abc123",), ("def456",)), headerless=True),))
    assert code_lines(render(reply)) == ["abc123", "def456"]


def test_empty_table_shows_its_header():
    message = render(Reply("docker images", (Table(COLUMNS, ()),), summary="0 images"))
    assert_valid(message)
    assert code_lines(message)[0].startswith("REPOSITORY")


def test_long_command_drops_the_buttons_not_the_message():
    reply = images_reply(300)
    message = render(reply, command="images " + "a" * 3000, share=True)
    assert_valid(message)
    assert not buttons(message)
    assert "Rows 1–50 of 300" in context_text(message)


# --- other parts ----------------------------------------------------------------


def test_error_part_is_a_cross_with_message_and_hint_escaped():
    reply = Reply("docker images", (ErrorPart("Cannot connect to <unix:///x.sock> & co", "Set DOCKER_HOST=..."),),
                  status=Status.FAILED, summary="Cannot connect")
    message = render(reply, share=True)
    assert_valid(message)
    text = message["blocks"][0]["text"]["text"]
    assert text.startswith(":x: `Cannot connect to &lt;unix:///x.sock&gt; &amp; co`")
    assert "DOCKER_HOST" in text
    assert message["text"].startswith("Error: ")


@pytest.mark.parametrize("hostile", [
    "*URGENT* re-auth at https://evil.example/login <!channel> <@U123> `rm -rf`",
    "denied: _look_ ~here~\n```\nclosed\n``` <https://evil.example|click>",
])
def test_error_text_from_outside_is_never_formatting(hostile):
    message = render(Reply("docker pull x", (ErrorPart(hostile),), status=Status.FAILED))
    assert_valid(message)
    text = message["blocks"][0]["text"]["text"]
    body = text[len(":x: "):]
    # all of it inside one code span or one code block: no bold, link or mention applies there
    if body.startswith("`"):
        assert body.endswith("`") and body.count("`") == 2
    else:
        assert body.startswith("\n```\n") and body.endswith("\n```") and body.count("```") == 2
    assert "<!channel>" not in text and "<@U123>" not in text and "<https://" not in text
    assert not buttons(message)  # no sharing of failures


def test_notice_and_preformatted():
    reply = Reply("docker rmi x", (Notice("Removal is not enabled yet."), Preformatted("a  b\n c")))
    message = render(reply)
    assert_valid(message)
    assert message["blocks"][0]["text"]["text"] == "Removal is not enabled yet."
    assert code_lines(message) == ["a  b", " c"]


def test_huge_preformatted_is_cut_with_a_count():
    text = "\n".join(f"line {i} " + "y" * 80 for i in range(20_000))
    message = render(Reply("docker info", (Preformatted(text),)))
    assert_valid(message)
    assert re.search(r"… [\d,]+ more lines", "\n".join(code_lines(message)))


def test_progress_shows_layers_with_bars():
    p = Progress("Pulling 127.0.0.1:5000/dockhand/big:latest",
                 (LayerProgress("a1b2c3d4e5f6", "Downloading", 5_000_000, 10_000_000),
                  LayerProgress("0123456789ab", "Pull complete")), status="Digest: sha256:abc")
    message = render(Reply("docker pull big", (p,)))
    assert_valid(message)
    lines = code_lines(message)
    assert lines[0].startswith("a1b2c3d4e5f6: Downloading [") and "5MB/10MB" in lines[0]
    assert lines[1] == "0123456789ab: Pull complete"
    assert ":hourglass_flowing_sand:" in message["blocks"][0]["text"]["text"]
    done = render(Reply("docker pull big", (Progress("Pulled", done=True),)))
    assert ":white_check_mark:" in done["blocks"][0]["text"]["text"]


def test_many_layers_stay_within_limits():
    layers = tuple(LayerProgress(f"{i:012x}", "Downloading " + "z" * 300, i, 10**9) for i in range(500))
    assert_valid(render(Reply("docker pull x", (Progress("Pulling x", layers),))))


def test_actions_become_run_buttons():
    actions = tuple(Action(f"label {i} " + "L" * 100, f"docker images --filter label=n{i}") for i in range(40))
    message = render(Reply("docker help", (Preformatted("help"),), actions=actions))
    assert_valid(message)
    run = [b for b in buttons(message) if b["action_id"].startswith(blockkit.ACTION_RUN_PREFIX)]
    assert 10 <= len(run) <= 25  # as many as fit their share of the message
    assert parse_value(run[3]["value"]) == {"c": "docker images --filter label=n3", "p": 0, "f": ""}
    assert all(len(b["text"]["text"]) <= 75 for b in run)
    short = tuple(Action(f"a{i}", f"docker images {i}") for i in range(30))
    assert len(buttons(render(Reply("docker help", (), actions=short)))) == 25  # Slack's maximum


def test_everything_at_its_longest_still_fits():
    actions = tuple(Action("L" * 200, "docker images " + "x" * 1990) for _ in range(30))
    reply = Reply("c" * 5000, (ErrorPart("m" * 5000, "h" * 5000), Notice("n" * 5000), images_reply(2000).parts[0],
                               Preformatted("p" * 50_000)), actions=actions, host="h" * 5000,
                  engine_version="v" * 5000, summary="s" * 50_000)
    for command in (None, "x" * 990, "y" * 5000):
        message = render(reply, page=3, command=command, header="H" * 10_000, note="N" * 10_000, share=True)
        assert_valid(message)


def test_not_interactive_means_no_buttons_but_the_range_stays():
    reply = images_reply(300)
    message = render(reply, page=2, share=True, interactive=False,
                     header=f":eyes: {blockkit.mention('UALICE')} shared {blockkit.code('docker images')}")
    assert_valid(message)
    assert not buttons(message)
    assert message["blocks"][0]["text"]["text"] == ":eyes: <@UALICE> shared `docker images`"
    assert "Rows 101–150 of 300" in context_text(message)


def test_note_is_shown_as_a_warning():
    message = render(images_reply(3), note="The list changed since the previous page.")
    assert ":warning: The list changed since the previous page." in context_text(message)


def test_too_many_parts_are_counted_not_sent():
    parts = tuple(Notice(f"notice {i} " + "n" * 2500) for i in range(100))
    message = render(Reply("x", parts))
    assert_valid(message)
    assert "more parts of this reply did not fit" in context_text(message)


def test_share_only_for_successful_replies():
    ok = render(images_reply(2), share=True)
    assert [b["action_id"] for b in buttons(ok)] == [ACTION_SHARE]
    assert not buttons(render(images_reply(2, status=Status.FAILED), share=True))
    assert not buttons(render(images_reply(2)))


def test_mention_and_code_do_not_let_text_escape():
    assert blockkit.mention("UALICE") == "<@UALICE>"
    assert blockkit.mention("<!channel>") == "&lt;!channel&gt;"
    assert blockkit.code("a`b<c>") == "`a'b&lt;c&gt;`"


def test_utf16_length_counts_emoji_twice():
    assert blockkit.slen("🐳") == 2
    assert blockkit.slen(blockkit.clip("🐳" * 10, 5)) <= 5


@pytest.mark.parametrize("value", ["", "[]", '{"p": 1}', '{"c": "x", "p": -1}', '{"c": "x", "p": "2"}',
                                   '{"c": "x", "p": true}', '{"c": "x", "f": 3}', "not json"])
def test_parse_value_refuses_what_it_did_not_make(value):
    with pytest.raises(ValueError):
        parse_value(value)


_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(_cell, max_size=8), max_size=150),
       width=st.integers(min_value=1, max_value=6), headerless=st.booleans(),
       page=st.integers(min_value=-2, max_value=10),
       notice=_cell, error=_cell)
def test_any_reply_renders_within_limits(rows, width, headerless, page, notice, error):
    table = Table(tuple(f"COL{i}" for i in range(width)), tuple(tuple(r) for r in rows), headerless)
    reply = Reply("docker images", (Notice(notice or "n"), table, ErrorPart(error or "e", error)),
                  host=error[:50], engine_version=notice[:20])
    assert_valid(render(reply, page=page, share=True, command=notice))


def test_a_table_fingerprint_ignores_ages_but_not_content():
    from handlers.replies import Table

    cols = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    a = Table(cols, (("x", "1", "aaaaaaaaaaaa", "2 seconds ago", "1MB"),))
    older = Table(cols, (("x", "1", "aaaaaaaaaaaa", "3 seconds ago", "1MB"),))
    retagged = Table(cols, (("x", "1", "bbbbbbbbbbbb", "2 seconds ago", "1MB"),))
    assert a.fingerprint() == older.fingerprint() != retagged.fingerprint()

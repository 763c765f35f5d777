"""The Slack front end's own pieces, without Slack: dedupe, the
command line a payload becomes, and which commands may be shared."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.slack.commands import command_line
from bot.slack.runtime import Deduper, command_kind, normalize_text


def test_deduper_remembers_within_its_window_only():
    now = [0.0]
    d = Deduper(ttl=10, clock=lambda: now[0])
    assert d.first("a") and not d.first("a")
    now[0] = 11
    assert d.first("a")


def test_deduper_memory_is_bounded():
    d = Deduper(ttl=1000, max_items=100)
    for i in range(1000):
        assert d.first(str(i))
    assert len(d._seen) <= 100


@pytest.mark.parametrize("verb,text,line", [
    ("images", "", "images"),
    ("images", "  -a ", "images -a"),
    ("docker", "help", "docker help"),
    ("search", "—limit 5 ubuntu", "search --limit 5 ubuntu"),
    ("search", "–limit 5 ubuntu", "search --limit 5 ubuntu"),
    ("images", "--filter “reference=a*”", 'images --filter "reference=a*"'),
    ("images", "--filter &lt;x&gt;&amp;", "images --filter <x>&"),
    ("search", "a—b", "search a—b"),  # a dash inside a word is left alone
])
def test_command_line_from_slash_text(verb, text, line):
    assert command_line(verb, text) == line


@pytest.mark.parametrize("line,kind", [
    ("images -a", "read"), ("docker images", "read"), ("docker image ls", "read"), ("/images", "read"),
    ("docker", "read"), ("docker help", "read"), ("search ubuntu", "read"), ("docker version", "read"),
    ("docker info", "read"), ("docker --help", "read"),
    ("pull busybox", "write"), ("docker pull x", "write"), ("docker image pull x", "write"),
    ("rmi x", "destructive"), ("docker image rm x", "destructive"), ("docker image prune", "destructive"),
    ("rmi -f $(docker images -q)", "destructive"),
    ("frobnicate", "read"), ("rmi $(rm -rf /)", "read"),  # usage errors: their answer changes nothing
])
def test_command_kind(line, kind):
    assert command_kind(line) == kind


def test_normalize_text_keeps_plain_text():
    assert normalize_text("127.0.0.1:5000/dockhand/busybox:1.36") == "127.0.0.1:5000/dockhand/busybox:1.36"


async def test_ack_gate_lets_pending_acks_go_first():
    from bot.slack.runtime import AckGate

    gate = AckGate(max_wait=5)
    await gate.turn()  # nothing pending: no wait
    gate.arrived()
    gate.arrived()
    waiter = asyncio.ensure_future(gate.turn())
    await asyncio.sleep(0.05)
    gate.answered()
    await asyncio.sleep(0.05)
    assert not waiter.done()
    gate.answered()
    await asyncio.wait_for(waiter, 1)


async def test_ack_gate_never_holds_work_longer_than_max_wait():
    from bot.slack.runtime import AckGate

    gate = AckGate(max_wait=0.05)
    gate.arrived()  # a request that never gets answered
    t0 = time.monotonic()
    await gate.turn()
    assert time.monotonic() - t0 < 0.5


def test_manifest_declares_what_the_app_handles():
    import re
    from pathlib import Path

    from bot.slack.commands import SLASH_COMMANDS

    text = (Path(__file__).resolve().parents[3] / "manifest.yml").read_text()
    assert re.findall(r"^\s+- command: (\S+)$", text, re.M) == list(SLASH_COMMANDS)
    urls = re.findall(r"^\s+(?:url|request_url|message_menu_options_url): (\S+)$", text, re.M)
    # the commands, the event subscription, interactivity and its options load URL (the pull form)
    assert len(urls) == len(SLASH_COMMANDS) + 3 and all(u.endswith("/slack/events") for u in urls)
    assert re.search(r"^\s+home_tab_enabled: true", text, re.M)
    assert re.findall(r"bot_events:\n((?:\s+- \S+\n)+)", text) == ["      - app_home_opened\n"]
    scopes = re.search(r"bot:\n((?:[ \t]+(?:#.*|- .*)\n)+)", text).group(1)
    assert re.findall(r"^\s+- ([\w:.]+)", scopes, re.M) == ["commands", "chat:write", "usergroups:read"]
    assert re.search(r"interactivity:\n\s+is_enabled: true", text)
    assert re.search(r"^\s+socket_mode_enabled: (true|false)$", text, re.M)
    assert all(re.search(rf"command: {re.escape(c)}\n(?:\s+\w+: .*\n)*?\s+usage_hint: \S", text)
               for c in SLASH_COMMANDS)
    from bot.render.modals import SHORTCUT_PULL, SHORTCUT_PULL_HERE

    # the pull form's shortcuts: from the shortcut menu, and on a message
    assert re.findall(r"^\s+type: (global|message)\n\s+callback_id: (\S+)$", text, re.M) == \
        [("global", SHORTCUT_PULL), ("message", SHORTCUT_PULL_HERE)]

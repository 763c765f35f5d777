"""`dockhand slack` killed with SIGKILL in the middle of a removal: the audit
chain still verifies, the operation is marked interrupted at the next start,
and nothing runs twice (not a replayed click, not a new click)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid

import aiohttp

from tests.fakes.slack_api import SIGNING_SECRET, action_body, action_payload, buttons, form_body, signed_headers
from tests.fakes.slack_api import command_payload
from tests.fakes.slack_harness import clean_slack_env, fake_slack  # noqa: F401
from tests.fakes.slow_engine import SlowEngineProxy
from tests.integration.shell_helpers import DOCKHAND
from tests.integration.slack.test_slack_process import free_port, start, user_env, wait_port

TAGS = 12


async def _post(port: int, body: bytes) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                headers=signed_headers(SIGNING_SECRET, body)) as r:
            return r.status


def _tags_left(stack, image_id: str) -> int:
    out = stack.docker("image", "inspect", "-f", "{{len .RepoTags}}", image_id, check=False)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


async def test_sigkill_mid_removal_leaves_a_verifiable_chain_and_runs_nothing_twice(
        fake_slack, stack, make_image, docker_client, tmp_path):
    img = make_image()
    repo = f"{stack.registry}/k{uuid.uuid4().hex[:6]}"
    refs = []
    for i in range(TAGS):
        docker_client.api.tag(img.id, repo, tag=f"t{i}")
        refs.append(f"{repo}:t{i}")
    make_image.refs.extend(refs)  # cleaned up with the image
    proxy = await SlowEngineProxy(stack.docker_host.removeprefix("unix://"), delay=0.4).start()
    state = tmp_path / "state"
    port = free_port()
    env = user_env(fake_slack, stack, PORT=str(port), DOCKER_HOST=proxy.docker_host, DOCKHAND_ADMINS="UALICE",
                   DOCKHAND_STATE_DIR=str(state))
    proc = await start(env, tmp_path)
    try:
        await wait_port(port, proc)
        assert await _post(port, form_body(command_payload(
            "/rmi", " ".join(refs), response_url=fake_slack.response_url(), user_id="UALICE"))) == 200
        post = (await fake_slack.wait_for("api", "chat.postMessage", where=lambda c: "asks to run" in c.text,
                                          timeout=30))[0]
        confirm = next(b for b in buttons(post.body) if b["action_id"] == "dockhand.confirm")
        click = action_payload(confirm, response_url=fake_slack.response_url(), user_id="UALICE",
                               is_ephemeral=False, message_ts=post.response["ts"], channel_id=post.body["channel"])
        assert await _post(port, action_body(click)) == 200
        # wait until the removal is under way, then kill the bot outright
        for _ in range(200):
            if _tags_left(stack, img.id) <= TAGS - 2:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        left = _tags_left(stack, img.id)
        assert 0 < left < TAGS + 1, "the removal was not interrupted in the middle"
        await asyncio.sleep(1.0)  # a request already at the engine may still land
        left = _tags_left(stack, img.id)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    verified = subprocess.run([DOCKHAND, "audit", "verify"], env=env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    events = subprocess.run([DOCKHAND, "audit", "show", "-n", "10"], env=env, capture_output=True, text=True).stdout
    assert "confirmed" in events and "running" in events and " done " not in events

    # the next start marks it interrupted and says so in the channel
    port = free_port()
    env["PORT"] = str(port)
    proc = await start(env, tmp_path)
    try:
        await wait_port(port, proc)
        await fake_slack.wait_for("api", "chat.update", where=lambda c: "Dockhand stopped while it ran" in c.text,
                                  timeout=30)
        # the very same click delivered again, and a fresh click: neither removes anything
        assert await _post(port, action_body(click)) == 200
        again = action_payload(confirm, response_url=fake_slack.response_url("late"), user_id="UALICE",
                               is_ephemeral=False, message_ts=post.response["ts"], channel_id=post.body["channel"])
        assert await _post(port, action_body(again)) == 200
        late = (await fake_slack.wait_for("response", "late", timeout=30))[0]
        assert "Dockhand stopped while this removal ran" in late.text
        await asyncio.sleep(1.0)
        assert _tags_left(stack, img.id) == left
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        await proxy.stop()
    verified = subprocess.run([DOCKHAND, "audit", "verify"], env=env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    shown = subprocess.run([DOCKHAND, "audit", "show", "-n", "20"], env=env, capture_output=True, text=True).stdout
    assert "interrupted" in shown

"""Removal through Slack as Slack drives it: signed slash commands and button
clicks to the running app, the private engine, the fake Slack recording the
channel message, its updates and its thread; the local audit log checked."""

from __future__ import annotations

import asyncio

from bot.audit_log import verify
from tests.fakes.slack_api import buttons, message_problems
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

ADMIN, APPROVER, VIEWER = "UALICE", "UBOB", "UCAROL"


def exists(stack, ref: str) -> bool:
    return stack.docker("image", "inspect", ref, check=False).returncode == 0


def events(services) -> list[str]:
    return [r["event"] for r in services.audit.tail_sync(200)]


async def plan_message(h, text: str, *, user: str = ADMIN, command: str = "/rmi"):
    """Send a destructive command; the channel message it posts (with its plan)."""
    before = len(h.fake.api_calls("chat.postMessage"))
    sent = await h.command(command, text, user_id=user, user_name=user.lower())
    assert sent.status == 200
    posts = await h.fake.wait_for("api", "chat.postMessage", count=before + 1)
    post = posts[before]
    assert message_problems(post.body) == []
    return sent, post


def button(post, action_id: str) -> dict:
    return next(b for b in buttons(post.body) if b["action_id"] == action_id)


async def click(h, post, action_id: str, user: str):
    return await h.click(button(post, action_id), user_id=user, user_name=user.lower(), is_ephemeral=False,
                         message_ts=message_ts(h, post), channel_id=post.body["channel"])


def message_ts(h, post) -> str:
    assert post.response.get("ok"), post.response
    return post.response["ts"]


async def final_state(h, post, needle: str, timeout: float = 30.0) -> dict:
    """The channel message once an update contains ``needle``."""
    ts = message_ts(h, post)
    updates = await h.fake.wait_for("api", "chat.update",
                                    where=lambda c: c.body.get("ts") == ts and needle in c.text, timeout=timeout)
    return updates[-1]


async def thread(h, post, needle: str = "Record") -> list:
    ts = message_ts(h, post)
    return await h.fake.wait_for("api", "chat.postMessage",
                                 where=lambda c: c.body.get("thread_ts") == ts and needle in c.text)


async def test_plan_confirm_remove_and_the_audit_trail(slack_app, engine_services, make_image, stack):
    img = make_image(extra_tags=["2"])
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    sent, post = await plan_message(h, f"{img.repo}:{img.tag} {img.repo}:2")
    text = post.text
    assert "asks to run" in text and "Waiting for" in text
    assert f"untag {img.repo.split('/', 1)[1]}" not in text  # familiar names keep the registry
    assert "delete " + img.id[7:19] in text
    confirm = button(post, "dockhand.confirm")
    assert confirm["style"] == "danger" and confirm["confirm"]["title"]["text"]
    assert button(post, "dockhand.cancel")
    assert exists(stack, img.ref)  # nothing happens before the click

    await click(h, post, "dockhand.confirm", ADMIN)
    done = await final_state(h, post, "done")
    assert not buttons(done.body) and "confirmed by <@UALICE>" in done.text
    assert not exists(stack, img.ref) and not exists(stack, img.id)
    record = (await thread(h, post))[-1].text
    assert img.id[7:19] in record and "asked by <@UALICE>" in record and "freed" in record
    assert events(services) == ["requested", "confirmed", "running", "done"]
    assert verify(services.audit.path).ok


async def test_a_viewer_is_denied_in_the_channel_and_told_which_setting(slack_app, engine_services, make_image,
                                                                       stack):
    img = make_image()
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    sent, post = await plan_message(h, img.ref, user=VIEWER)
    assert "denied" in post.text and not buttons(post.body)
    private = await h.reply(sent)
    assert private.body["response_type"] == "ephemeral"
    assert "needs the admin role" in private.text and "DOCKHAND_ADMINS" in private.text
    assert exists(stack, img.ref)
    assert events(services) == ["denied"]


async def test_two_person_rule_and_a_stranger(slack_app, engine_services, make_image, stack):
    img = make_image()
    services = engine_services(admins=frozenset({ADMIN}), approvers=frozenset({APPROVER}))
    h = await slack_app(services)
    _, post = await plan_message(h, img.ref)
    assert "an approver other than the requester" in post.text
    own = await click(h, post, "dockhand.confirm", ADMIN)
    assert "someone else must confirm" in (await h.reply(own)).text
    stranger = await click(h, post, "dockhand.confirm", VIEWER)
    assert "Only an approver" in (await h.reply(stranger)).text
    await thread(h, post, "tried to confirm")
    assert exists(stack, img.ref)
    await click(h, post, "dockhand.confirm", APPROVER)
    done = await final_state(h, post, "done")
    assert "confirmed by <@UBOB>" in done.text and not exists(stack, img.ref)
    assert events(services) == ["requested", "denied", "denied", "confirmed", "running", "done"]


async def test_twenty_concurrent_confirms_remove_once(slack_app, engine_services, make_image, stack):
    img = make_image()
    services = engine_services(admins=frozenset({ADMIN}))
    calls = []
    real_remove = services.engine.remove_many

    async def counting_remove(batch):
        calls.extend(batch)
        return await real_remove(batch)

    services.engine.remove_many = counting_remove
    h = await slack_app(services)
    _, post = await plan_message(h, img.ref)
    clicks = await asyncio.gather(*(click(h, post, "dockhand.confirm", ADMIN) for _ in range(20)))
    assert all(c.status == 200 for c in clicks)
    await final_state(h, post, "done")
    await asyncio.sleep(0.5)
    assert len(calls) == 1 and not exists(stack, img.ref)
    assert events(services).count("done") == 1 and events(services).count("confirmed") == 1


async def test_a_retag_between_plan_and_confirm_removes_nothing_and_offers_the_new_plan(
        slack_app, engine_services, make_image, stack):
    first, second = make_image(), make_image()
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    _, post = await plan_message(h, first.ref)
    stack.docker("tag", second.ref, first.ref)  # first.ref now names the second image
    await click(h, post, "dockhand.confirm", ADMIN)
    await final_state(h, post, "the host changed")
    assert exists(stack, first.id) and exists(stack, second.id) and exists(stack, first.ref)
    new = await h.fake.wait_for("api", "chat.postMessage", where=lambda c: "asks to run" in c.text, count=2)
    assert second.id[7:19] in new[-1].text and button(new[-1], "dockhand.confirm")
    assert "superseded" in events(services)


async def test_expiry_is_said_in_the_message(slack_app, engine_services, make_image, stack):
    img = make_image()
    services = engine_services(admins=frozenset({ADMIN}), confirm_ttl=1.0)
    h = await slack_app(services)
    h.runtime.sweep_interval = 0.2
    _, post = await plan_message(h, img.ref)
    await final_state(h, post, "expired", timeout=10)
    late = await click(h, post, "dockhand.confirm", ADMIN)
    assert "expired" in (await h.reply(late)).text
    assert exists(stack, img.ref) and "expired" in events(services)


async def test_cancel_and_a_conflict_without_buttons(slack_app, engine_services, make_image, stack):
    img, used = make_image(), make_image()
    make_image.container(used)
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    _, post = await plan_message(h, img.ref)
    await click(h, post, "dockhand.cancel", ADMIN)
    await final_state(h, post, "cancelled by <@UALICE>")
    assert exists(stack, img.ref)
    sent = await h.command("/rmi", used.ref, user_id=ADMIN)
    refused = await h.reply(sent)
    assert "must force" in refused.text and not [b for b in buttons(refused.body)
                                                 if b["action_id"] == "dockhand.confirm"]


async def test_force_removes_an_image_a_stopped_container_uses(slack_app, engine_services, make_image, stack):
    img = make_image()
    name = make_image.container(img)
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    _, post = await plan_message(h, f"-f {img.ref}")
    assert f"{name} (created)" in post.text
    await click(h, post, "dockhand.confirm", ADMIN)
    await final_state(h, post, "done")
    assert not exists(stack, img.id)
    assert stack.docker("container", "inspect", name, check=False).returncode == 0  # the container stays


async def test_prune_with_a_label_and_the_reclaimed_bytes(slack_app, engine_services, make_image, stack):
    import uuid

    mark = uuid.uuid4().hex[:8]
    imgs = [make_image(labels={"dockhand.t": mark}, size=200_000) for _ in range(2)]
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    _, post = await plan_message(h, f"image prune -a --filter label=dockhand.t={mark}", command="/docker")
    assert all(i.id[7:19] in post.text for i in imgs) and "freed" in post.text
    await click(h, post, "dockhand.confirm", ADMIN)
    done = await final_state(h, post, "done")
    assert "2 image(s) deleted" in done.text
    assert not any(exists(stack, i.id) for i in imgs)
    record = (await thread(h, post))[-1].text
    assert "freed 4" in record  # two images of ~200 kB


async def test_the_tutorial_substitution(slack_app, engine_services, make_image, stack):
    import uuid

    mark = uuid.uuid4().hex[:8]
    imgs = [make_image(labels={"dockhand.t": mark}) for _ in range(2)]
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    _, post = await plan_message(h, f'rmi -f $(docker images -q --filter "label=dockhand.t={mark}")',
                                 command="/docker")
    assert "lists 2 image ID(s)" in post.text
    await click(h, post, "dockhand.confirm", ADMIN)
    await final_state(h, post, "done")
    assert not any(exists(stack, i.id) for i in imgs)


async def test_a_crafted_run_button_is_authorised_like_a_typed_command(slack_app, engine_services, make_image,
                                                                      stack):
    import json

    img = make_image(push=True)
    stack.docker("rmi", img.ref)
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    crafted = {"action_id": "dockhand.run.0", "value": json.dumps({"c": f"docker pull {img.ref}"})}
    sent = await h.click(crafted, user_id=VIEWER)
    reply = await h.reply(sent)
    assert "needs the operator role" in reply.text
    assert not exists(stack, img.ref)


async def test_a_pending_confirmation_survives_a_restart_and_a_replayed_pull_does_not_run_twice(
        slack_app, engine_services, make_image, stack, tmp_path):
    img, pulled = make_image(), make_image(push=True)
    stack.docker("rmi", pulled.ref)
    state = str(tmp_path / "shared-state")
    first = await slack_app(engine_services(admins=frozenset({ADMIN}), state_dir=state))
    _, post = await plan_message(first, img.ref)
    pull = await first.command("/pull", pulled.ref, user_id=ADMIN)
    await first.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text)
    stack.docker("rmi", pulled.ref)
    # a new bot process: the same state directory, nothing in memory
    await first.close()
    second = await slack_app(engine_services(admins=frozenset({ADMIN}), state_dir=state))
    replay = await second.replay(pull)
    assert replay.status == 200
    await asyncio.sleep(1.0)
    assert not exists(stack, pulled.ref)  # the replayed /pull did not run again
    await click(second, post, "dockhand.confirm", ADMIN)
    await final_state(second, post, "done")
    assert not exists(stack, img.ref)
    assert verify(second.services.audit.path).ok



async def test_roles_granted_to_a_user_group_channels_and_the_audit_channel(slack_app, engine_services, make_image,
                                                                           stack):
    img = make_image()
    services = engine_services(admins=frozenset({"SOPS"}), channels=frozenset({"CDOCKHAND"}))
    h = await slack_app(services, audit_channel="CAUDIT")
    h.fake.usergroups["SOPS"] = ["UDAVE"]
    # outside the allowed channels: refused privately, nothing posted there
    elsewhere = await h.command("/rmi", img.ref, user_id="UDAVE", channel_id="COTHER")
    assert "does not take commands in this channel" in (await h.reply(elsewhere)).text
    assert not [c for c in h.fake.api_calls("chat.postMessage") if c.body.get("channel") == "COTHER"]
    assert "channel not allowed" in (await h.fake.wait_for(
        "api", "chat.postMessage", where=lambda c: c.body.get("channel") == "CAUDIT"))[0].text
    _, post = await plan_message(h, img.ref, user="UDAVE")  # a member of the admin group
    assert post.body["channel"] == "CDOCKHAND"
    assert h.fake.api_calls("usergroups.users.list")[0].body["usergroup"] == "SOPS"
    await click(h, post, "dockhand.confirm", "UDAVE")
    await final_state(h, post, "done")
    copy = await h.fake.wait_for("api", "chat.postMessage", where=lambda c: c.body.get("channel") == "CAUDIT",
                                 count=2)
    assert "asked by <@UDAVE>" in copy[1].text and img.id[7:19] in copy[1].text
    # a group that Slack cannot list grants nothing
    h.fake.usergroups.clear()
    h.runtime.directory._members.clear()
    viewer = await h.command("/rmi", img.ref, user_id="UERIN")
    assert "needs the admin role" in (await h.reply(viewer)).text


async def test_docker_audit_shows_the_last_records(slack_app, engine_services, make_image, stack):
    img = make_image()
    services = engine_services(admins=frozenset({ADMIN}))
    h = await slack_app(services)
    _, post = await plan_message(h, img.ref)
    await click(h, post, "dockhand.cancel", ADMIN)
    await final_state(h, post, "cancelled")
    shown = await h.reply(await h.command("/docker", "audit 5"))
    assert "SEQ" in shown.text and "requested" in shown.text and "cancelled" in shown.text
    assert "alice" in shown.text


async def test_pull_all_tags_is_planned_and_confirmed_like_a_removal(slack_app, engine_services, make_image, stack):
    img = make_image(extra_tags=["2"], push=True)
    stack.docker("rmi", "-f", img.id)
    services = engine_services(operators=frozenset({ADMIN}))
    h = await slack_app(services)
    viewer = await h.command("/pull", f"-a {img.repo}", user_id=VIEWER)
    assert "needs the operator role" in (await h.reply(viewer)).text
    _, post = await plan_message(h, f"-a {img.repo}", command="/pull")
    confirm = button(post, "dockhand.confirm")
    assert confirm["text"]["text"] == "Confirm" and confirm["confirm"]["confirm"]["text"] == "Pull"
    assert "This will pull 2 tags" in post.text
    assert stack.docker("image", "inspect", img.ref, check=False).returncode != 0
    await click(h, post, "dockhand.confirm", ADMIN)
    done = await final_state(h, post, "2 tag(s) pulled", timeout=60)
    assert not buttons(done.body)
    assert stack.docker("image", "inspect", img.ref).returncode == 0
    assert stack.docker("image", "inspect", f"{img.repo}:2").returncode == 0
    record = (await thread(h, post))[-1].text
    assert "pulled tags `2, latest`" in record or "pulled tags `latest, 2`" in record
    assert events(services)[-4:] == ["requested", "confirmed", "running", "done"]

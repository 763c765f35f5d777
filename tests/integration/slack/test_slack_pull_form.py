"""The pull form: `/pull` alone opens a modal (views.open with the command's
trigger_id); its selects are filled from the index, the registry's catalog and
its tag list (block_suggestion); submitting it (view_submission) runs exactly
the checks and the channel flow of a typed `/pull`. All through signed requests
to the running app; the fake Slack checks every view against Slack's limits."""

from __future__ import annotations

import json
import uuid

import pytest

from bot.render.modals import ACTION_REGISTRY, ACTION_REPOSITORY, ACTION_TAG, PULL_CALLBACK
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401
from tests.fakes.slack_views import elements, options_problems, send_interactive, shortcut, submission, suggestion, \
    view_problems, view_text, views_of

OPS = frozenset({"UOPS"})


def _view(call) -> dict:
    view = call.body["view"]
    return json.loads(view) if isinstance(view, str) else view


async def _open_form(h, user_id: str = "UOPS", channel_id: str = "CDOCKHAND") -> dict:
    trigger = views_of(h.fake).issue()
    sent = await h.command("/pull", "", user_id=user_id, trigger_id=trigger, channel_id=channel_id)
    assert sent.status == 200 and sent.body == "" and sent.elapsed < 1.0
    opened = (await h.fake.wait_for("api", "views.open"))[-1]
    assert opened.body["trigger_id"] == trigger
    assert opened.response.get("ok"), opened.response
    return opened.response["view"]


def _option(value: str) -> dict:
    return {"text": {"type": "plain_text", "text": value[:75]}, "value": value}


async def _suggest(h, view: dict, action_id: str, value: str, **values) -> list[str]:
    status, text, elapsed = await send_interactive(h, suggestion(
        view, action_id, value, user_id="UOPS", user_name="ops", values=values))
    assert status == 200 and elapsed < 3.0, (status, text)
    answer = json.loads(text)
    assert options_problems(answer) == []
    return [o["value"] for o in answer["options"]]


async def _submit(h, view: dict, values: dict, *, user_id: str = "UOPS") -> tuple[int, dict]:
    rid = uuid.uuid4().hex[:12]
    payload = submission(view, values, user_id=user_id, user_name=user_id.lower(),
                         response_url=h.fake.response_url(rid))
    status, text, _ = await send_interactive(h, payload)
    return status, (json.loads(text) if text.strip() else {})


@pytest.fixture
def remote_image(make_image, stack):
    """An image only the registry has."""
    img = make_image(f"form-{uuid.uuid4().hex[:8]}", tag="v1", push=True)
    stack.docker("rmi", img.ref)
    return img


def _pieces(img) -> tuple[str, str]:
    registry, _, path = img.repo.partition("/")
    return registry, path


async def test_pull_alone_opens_the_form(slack_app, engine_services, stack):
    h = await slack_app(engine_services(operators=OPS, host_label="form-host"))
    view = await _open_form(h)
    assert view["type"] == "modal" and view["callback_id"] == PULL_CALLBACK
    assert view_problems(view) == []
    assert "`form-host`" in view_text(view)
    registry = next(el for el in elements(view) if el.get("action_id") == ACTION_REGISTRY)
    assert registry["initial_option"]["value"] == stack.index  # DOCKHAND_SEARCH_INDEX's registry first
    assert "host" not in {el["block_id"] for el in elements(view)}  # one engine: no host menu
    assert not h.fake.responses(), "the form is the answer"


async def test_the_shortcut_opens_the_same_form_and_a_viewer_gets_the_refusal_in_a_modal(slack_app,
                                                                                       engine_services):
    from bot.render.modals import SHORTCUT_PULL

    h = await slack_app(engine_services(operators=OPS, host_label="form-host"))
    typed = await _open_form(h)
    status, _, _ = await send_interactive(h, shortcut(SHORTCUT_PULL, user_id="UOPS", user_name="ops",
                                                      trigger_id=views_of(h.fake).issue()))
    assert status == 200
    opened = (await h.fake.wait_for("api", "views.open", count=2))[1].response["view"]
    assert opened["blocks"][:-1] == typed["blocks"][:-1]  # the form a typed /pull opens (its channel menu aside)
    await send_interactive(h, shortcut(SHORTCUT_PULL, user_id="UVIEW", user_name="viewer",
                                       trigger_id=views_of(h.fake).issue()))
    refused = (await h.fake.wait_for("api", "views.open", count=3))[2].response["view"]
    assert view_problems(refused) == []
    assert "`docker pull` needs the operator role; you have viewer." in view_text(refused)


async def test_docker_pull_alone_stays_the_clis_usage_error(slack_app, engine_services):
    h = await slack_app(engine_services(operators=OPS))
    reply = await h.reply(await h.command("/docker", "pull", user_id="UOPS"))
    assert '"docker pull" requires exactly 1 argument' in reply.text
    assert not h.fake.api_calls("views.open")


async def test_a_viewer_gets_the_typed_refusal_not_a_form(slack_app, engine_services):
    h = await slack_app(engine_services(operators=OPS))
    alone = await h.reply(await h.command("/pull", "", user_id="UVIEW"))
    typed = await h.reply(await h.command("/pull", "busybox", user_id="UVIEW"))
    assert "`docker pull` needs the operator role; you have viewer." in alone.text
    assert alone.text.split("\n")[0] == typed.text.split("\n")[0]
    assert not h.fake.api_calls("views.open")


async def test_suggestions_come_from_the_index_the_catalog_and_the_tag_list(slack_app, engine_services, stack,
                                                                            remote_image):
    h = await slack_app(engine_services(operators=OPS))
    view = await _open_form(h)
    registries = await _suggest(h, view, ACTION_REGISTRY, "")
    assert registries[0] == stack.index and "docker.io" in registries
    assert stack.registry in registries  # the host already pulled from it
    assert await _suggest(h, view, ACTION_REGISTRY, "127.0.0.1:5") != []
    assert (await _suggest(h, view, ACTION_REGISTRY, "registry.example.com:5000"))[0] == "registry.example.com:5000"
    # the fake index (DOCKHAND_SEARCH_INDEX), in its order of stars
    from_index = await _suggest(h, view, ACTION_REPOSITORY, "ubuntu")
    assert from_index[0] == "ubuntu" and "ubuntu/nginx" in from_index
    # the local registry has no search endpoint: its catalog
    registry, path = _pieces(remote_image)
    chosen = {"registry": _option(registry)}
    from_catalog = await _suggest(h, view, ACTION_REPOSITORY, path.rsplit("/", 1)[-1], **chosen)
    assert path in from_catalog
    tags = await _suggest(h, view, ACTION_TAG, "", **chosen, repository=_option(path))
    status, _, body = stack.registry_get(f"/v2/{path}/tags/list")
    assert status == 200 and set(tags) == set(json.loads(body)["tags"]) == {"v1"}


async def test_suggestions_are_data_and_bounded(slack_app, engine_services, stack):
    h = await slack_app(engine_services(operators=OPS))
    view = await _open_form(h)
    hostile = await _suggest(h, view, ACTION_REPOSITORY, "<!channel> *x*")
    assert hostile == []  # not a name: nothing is offered, nothing echoed
    many = await _suggest(h, view, ACTION_REPOSITORY, "u")
    assert len(many) <= 50


async def test_submitting_runs_the_typed_pull_flow(slack_app, engine_services, stack, remote_image, docker_client,
                                                   make_image):
    h = await slack_app(engine_services(operators=OPS))
    view = await _open_form(h)
    registry, path = _pieces(remote_image)
    status, answer = await _submit(h, view, {"registry": _option(registry), "repository": _option(path),
                                             "tag": _option("v1"), "channel": "CDOCKHAND"})
    assert status == 200 and answer == {}, answer  # the modal closes
    post = (await h.fake.wait_for("api", "chat.postMessage"))[0]
    assert post.body["channel"] == "CDOCKHAND" and f"<@UOPS> is pulling `{remote_image.ref}`" in post.text
    final = await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    assert f":white_check_mark: <@UOPS> pulled `{remote_image.ref}`" in final[0].text
    docker_client.images.get(remote_image.ref)  # really on the engine
    records = await h.services.audit.tail(10)
    form_records = [r for r in records if r.get("command") == f"docker pull {remote_image.ref}"]
    # a typed /pull of another image, for the shape of its records
    other = make_image(f"form-typed-{uuid.uuid4().hex[:6]}", push=True)
    stack.docker("rmi", other.ref)
    await h.command("/pull", other.ref, user_id="UOPS")
    await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text and other.ref in c.text, timeout=60)
    typed_records = [r for r in await h.services.audit.tail(10) if r.get("command") == f"docker pull {other.ref}"]
    assert [r["event"] for r in form_records] == [r["event"] for r in typed_records] == ["requested", "running", "done"]
    for form_rec, typed_rec in zip(form_records, typed_records):
        assert (form_rec["actor"], form_rec["via"], sorted(form_rec["detail"])) == \
            (typed_rec["actor"], typed_rec["via"], sorted(typed_rec["detail"]))
    # the same submission again (a replay) pulls nothing more
    await _submit(h, view, {"registry": _option(registry), "repository": _option(path),
                            "tag": _option("v1"), "channel": "CDOCKHAND"})
    announced = [c for c in h.fake.api_calls("chat.postMessage") if f"is pulling `{remote_image.ref}`" in c.text]
    assert len(announced) == 1


@pytest.mark.parametrize("values,block,words", [
    ({"platform": "linux/ARM64!"}, "platform", "invalid platform: use os[/arch[/variant]]"),
    ({"tag": _option("-bad")}, "tag", "invalid tag format"),
    ({"registry": _option("not a registry")}, "registry", "is not a registry address"),
    ({"repository": _option("Upper/Case")}, "repository", "repository name must be lowercase"),
    ({"repository": _option("127.0.0.1:1/x"), "registry": _option("docker.io")}, "repository",
     "names another registry"),
    ({"registry": _option("127.0.0.1:99999")}, "registry", "invalid registry port 99999"),
    ({"channel": None}, "channel", "Choose the conversation"),
])
async def test_invalid_submissions_get_errors_on_their_field(slack_app, engine_services, stack, values, block, words):
    h = await slack_app(engine_services(operators=OPS))
    view = await _open_form(h)
    filled = {"registry": _option(stack.registry), "repository": _option("dockhand/busybox"),
              "channel": "CDOCKHAND", **values}
    if "platform" in values:
        filled["platform"] = values["platform"]
    status, answer = await _submit(h, view, {k: v for k, v in filled.items() if v is not None})
    assert status == 200 and answer.get("response_action") == "errors", answer
    assert words in answer["errors"][block], answer
    assert set(answer["errors"]) <= {el["block_id"] for el in elements(view)}
    assert not h.fake.api_calls("chat.postMessage")


async def test_the_platform_error_is_the_typed_commands(slack_app, engine_services, stack):
    h = await slack_app(engine_services(operators=OPS))
    typed = await h.reply(await h.command("/pull", "--platform linux/ARM64! busybox", user_id="UOPS"))
    view = await _open_form(h)
    _, answer = await _submit(h, view, {"registry": _option("docker.io"), "repository": _option("busybox"),
                                        "platform": "linux/ARM64!", "channel": "CDOCKHAND"})
    assert '"linux/ARM64!": invalid platform' in typed.text
    assert answer["errors"]["platform"].startswith('"linux/ARM64!": invalid platform: use os[/arch[/variant]]')


async def test_a_viewers_submission_is_refused_like_a_typed_pull(slack_app, engine_services, stack, remote_image,
                                                                  docker_client):
    h = await slack_app(engine_services(operators=OPS))
    view = await _open_form(h)  # opened by an operator; submitted by a viewer (a forged or stale form)
    registry, path = _pieces(remote_image)
    status, answer = await _submit(h, view, {"registry": _option(registry), "repository": _option(path),
                                             "tag": _option("v1"), "channel": "CDOCKHAND"}, user_id="UVIEW")
    assert answer.get("response_action") == "errors"
    assert "`docker pull` needs the operator role; you have viewer." in answer["errors"]["repository"]
    typed = await h.reply(await h.command("/pull", remote_image.ref, user_id="UVIEW"))
    assert "`docker pull` needs the operator role; you have viewer." in typed.text
    denied = [r for r in await h.services.audit.tail(10) if r.get("event") == "denied"]
    assert len(denied) == 2 and denied[0]["command"] == denied[1]["command"] == f"docker pull {remote_image.ref}"
    assert denied[0]["detail"] == denied[1]["detail"]
    assert not h.fake.api_calls("chat.postMessage")
    with pytest.raises(Exception):
        docker_client.images.get(remote_image.ref)


async def test_the_platform_field_reaches_the_pull(slack_app, engine_services, stack, remote_image):
    h = await slack_app(engine_services(operators=OPS))
    view = await _open_form(h)
    registry, path = _pieces(remote_image)
    await _submit(h, view, {"registry": _option(registry), "repository": _option(path), "tag": _option("v1"),
                            "platform": "linux/amd64", "channel": "CDOCKHAND"})
    final = await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    assert f"`--platform linux/amd64 {remote_image.ref}`" in final[0].text


async def test_an_expired_trigger_says_what_to_do(slack_app, engine_services):
    h = await slack_app(engine_services(operators=OPS))
    stale = f"1.{int(__import__('time').time()) - 60}.0123456789abcdef"  # issued a minute ago
    reply = await h.reply(await h.command("/pull", "", user_id="UOPS", trigger_id=stale))
    assert "Slack did not open the pull form (expired_trigger_id)" in reply.text and "/pull NAME[:TAG]" in reply.text
    assert h.fake.api_calls("views.open")[0].response == {"ok": False, "error": "expired_trigger_id"}


async def test_no_suggestions_for_someone_without_a_role(slack_app, engine_services, stack):
    h = await slack_app(engine_services(operators=OPS, viewers=frozenset({"UVIEW"})))
    view = await _open_form(h)
    status, text, _ = await send_interactive(h, suggestion(view, ACTION_REPOSITORY, "ubuntu", user_id="UNOBODY",
                                                           user_name="nobody"))
    assert status == 200 and json.loads(text) == {"options": []}
    assert await _suggest(h, view, ACTION_REPOSITORY, "ubuntu")  # the operator gets them


async def test_where_dockhand_is_no_member_the_form_uses_the_channels_response_url(slack_app, engine_services,
                                                                                   stack, remote_image):
    h = await slack_app(engine_services(operators=OPS))
    h.fake.fail_post["CELSEWHERE"] = "not_in_channel"
    view = await _open_form(h)
    registry, path = _pieces(remote_image)
    rid = uuid.uuid4().hex[:12]
    payload = submission(view, {"registry": _option(registry), "repository": _option(path), "tag": _option("v1"),
                                "channel": "CELSEWHERE"}, user_id="UOPS", user_name="ops",
                         response_url=h.fake.response_url(rid))
    assert payload["response_urls"][0]["channel_id"] == "CELSEWHERE"
    await send_interactive(h, payload)
    answers = await h.fake.wait_for("response", rid, count=2, timeout=60)
    assert answers[0].body.get("response_type") == "in_channel" and "is pulling" in answers[0].text
    assert any(f"pulled `{remote_image.ref}`" in a.text for a in answers[1:])

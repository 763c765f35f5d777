"""Many hosts on the two surfaces that help a person type: Slack's pull form
and the shell's Tab completion, each per host, on real private engines (the
three of test_many_hosts.py: two on unix sockets, one over TCP with mutual TLS).

* The pull form, driven as Slack drives it (signed `/pull`, `shortcut`,
  `message_action`, `block_suggestion`, `block_actions` and `view_submission` requests to the running app; the fake
  Slack records `views.open` and `chat.postMessage`): the host menu lists what
  the person may pull on, starts on the conversation's default host, the
  suggestions come from the chosen host's engine, and the submission is a
  typed `/pull @host` (role on that host, announcement, audit).
* Tab completion, driven through the real readline completer of a real
  `dockhand shell` on a pseudo-terminal: `@` completes hosts and groups, image
  names come from the host the line names, and a frozen host never holds the
  prompt longer than the completion's deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.render.modals import ACTION_HOST, ACTION_REGISTRY, ACTION_REPOSITORY, ACTION_TAG, SHORTCUT_PULL, \
    SHORTCUT_PULL_HERE
from bot.wiring import build_services, close_services
from tests.fakes.slack_harness import clean_slack_env, fake_slack, slack_app  # noqa: F401
from tests.fakes.slack_views import elements, options_problems, send_interactive, shortcut, submission, \
    suggestion, view_click, view_problems, views_of
from tests.integration import remote_engines as R
from tests.integration.test_many_hosts import ADMIN, OPS, env_for, fleet, pytestmark  # noqa: F401
from tests.integration.test_shell_completion import KILL_LINE, TAB, Terminal

S = R.stackmod
STRANGER = "UOTHER"  # an operator on charlie only
BRAVO_REGISTRY = "registry.bravo.test:5000"  # only bravo has pulled from it (a local tag)


def write_hosts(path: Path, f, *, missing: str = "") -> None:
    """The fleet of test_many_hosts.py, with charlie's pullers its own: OPS is a viewer there.
    ``missing``: a socket path nothing listens on, as a fourth host (delta) that is down."""
    extra = f'\n[hosts.delta]\nurl = "unix://{missing}"\n' if missing else ""
    path.write_text(f'''
default = "alpha"
timeout = 3

[hosts.alpha]
url = "{f.alpha}"

[hosts.bravo]
url = "{f.bravo.docker_host}"

[hosts.charlie]
url = "{f.charlie.url}"
cert_path = "{f.charlie.certs.good}"
operators = ["{STRANGER}"]
{extra}
[groups]
pair = ["charlie", "bravo"]
web = ["alpha", "bravo"]

[channels]
C0BRAVO = "bravo"
"#web-ops" = "web"
''')


@pytest.fixture(scope="module")
def hosts_file(fleet, tmp_path_factory):
    path = tmp_path_factory.mktemp("form-hosts") / "hosts.toml"
    write_hosts(path, fleet)
    return path


@pytest.fixture(scope="module")
def bravo_tag(fleet):
    """A tag naming a registry only bravo's engine has images from."""
    ref = f"{BRAVO_REGISTRY}/team/app:1"
    fleet.docker("bravo", "tag", fleet.only["bravo"], ref)
    yield ref
    fleet.docker("bravo", "rmi", ref, check=False)


@pytest.fixture
async def services(stack, fleet, hosts_file, tmp_path):
    env = env_for(stack, fleet, tmp_path, DOCKHAND_HOSTS_FILE=str(hosts_file), DOCKHAND_ADMINS=ADMIN,
                  DOCKHAND_OPERATORS=OPS)
    made = build_services(load_settings(env, slack=False))
    try:
        yield made
    finally:
        await close_services(made)


@pytest.fixture
def remote_image(make_image, stack):
    """An image only the registry has (no engine holds it)."""
    img = make_image(f"fleetform-{uuid.uuid4().hex[:8]}", tag="v1", push=True)
    stack.docker("rmi", img.ref)
    return img


def _option(value: str) -> dict:
    return {"text": {"type": "plain_text", "text": value[:75]}, "value": value}


async def _open_form(h, user_id: str = OPS, channel_id: str = "C0OPS", channel_name: str = "ops") -> dict:
    trigger = views_of(h.fake).issue()
    before = len(h.fake.api_calls("views.open"))
    sent = await h.command("/pull", "", user_id=user_id, trigger_id=trigger, channel_id=channel_id,
                           channel_name=channel_name)
    assert sent.status == 200 and sent.body == ""
    opened = (await h.fake.wait_for("api", "views.open", count=before + 1))[before]
    assert opened.body["trigger_id"] == trigger and opened.response.get("ok"), opened.response
    view = opened.response["view"]
    assert view_problems(view) == []
    return view


def _host_menu(view: dict) -> dict:
    return next(el for el in elements(view) if el.get("action_id") == ACTION_HOST)


async def _suggest(h, view: dict, action_id: str, value: str, **values) -> tuple[list[str], float]:
    status, text, elapsed = await send_interactive(h, suggestion(view, action_id, value, user_id=OPS,
                                                                 user_name="ops", values=values))
    assert status == 200 and elapsed < 3.0, (status, text, elapsed)
    answer = json.loads(text)
    assert options_problems(answer) == []
    return [o["value"] for o in answer["options"]], elapsed


async def _submit(h, view: dict, values: dict, *, user_id: str = OPS) -> dict:
    payload = submission(view, values, user_id=user_id, user_name=user_id.lower(),
                         response_url=h.fake.response_url(uuid.uuid4().hex[:12]))
    status, text, _ = await send_interactive(h, payload)
    assert status == 200
    return json.loads(text) if text.strip() else {}


def _pieces(img) -> tuple[str, str]:
    registry, _, path = img.repo.partition("/")
    return registry, path


# -- the pull form ----------------------------------------------------------------------


async def test_the_form_lists_the_hosts_the_person_may_pull_on_starting_on_the_channels(services, slack_app):
    h = await slack_app(services)
    view = await _open_form(h, channel_id="C0BRAVO")
    menu = _host_menu(view)
    assert [o["value"] for o in menu["options"]] == ["alpha", "bravo", "web"]  # viewer on charlie: no charlie,
    assert menu["initial_option"]["value"] == "bravo"  # pair or all; the channel's default host first
    assert "the host you choose" in str(view["blocks"][0])
    view = await _open_form(h, channel_id="C0ELSEWHERE", channel_name="web-ops")  # a default by the channel's name
    assert _host_menu(view)["initial_option"]["value"] == "web"
    view = await _open_form(h, channel_id="C0OPS")
    assert _host_menu(view)["initial_option"]["value"] == "alpha"  # elsewhere: the fleet's default
    admin = await _open_form(h, user_id=ADMIN)
    assert [o["value"] for o in _host_menu(admin)["options"]] == ["alpha", "bravo", "charlie", "pair", "web", "all"]
    # an operator of charlie only: the form opens on the one host they may pull on
    stranger = await _open_form(h, user_id=STRANGER)
    assert [o["value"] for o in _host_menu(stranger)["options"]] == ["charlie"]
    assert _host_menu(stranger)["initial_option"]["value"] == "charlie"
    # a viewer everywhere gets the typed refusal, no form
    alone = await h.reply(await h.command("/pull", "", user_id="UVIEW"))
    assert "`docker pull` needs the operator role; you have viewer." in alone.text
    assert len(h.fake.api_calls("views.open")) == 5


async def test_the_shortcuts_open_the_form_on_the_default_host_or_the_messages_conversations(services, slack_app):
    h = await slack_app(services)
    status, _, elapsed = await send_interactive(h, shortcut(SHORTCUT_PULL, user_id=OPS, user_name="ops",
                                                            trigger_id=views_of(h.fake).issue()))
    assert status == 200 and elapsed < 3.0
    opened = (await h.fake.wait_for("api", "views.open"))[0].response
    assert opened["ok"] and view_problems(opened["view"]) == []
    assert _host_menu(opened["view"])["initial_option"]["value"] == "alpha"  # no conversation: the default
    rid = uuid.uuid4().hex[:12]
    status, _, _ = await send_interactive(h, shortcut(SHORTCUT_PULL_HERE, user_id=OPS, user_name="ops",
                                                      trigger_id=views_of(h.fake).issue(), channel_id="C0BRAVO",
                                                      channel_name="bravo-ops", response_url=h.fake.response_url(rid)))
    assert status == 200
    opened = (await h.fake.wait_for("api", "views.open", count=2))[1].response
    assert _host_menu(opened["view"])["initial_option"]["value"] == "bravo"  # the message's conversation's host
    # someone who may pull nowhere: the refusal, privately, in the message's conversation; no form
    await send_interactive(h, shortcut(SHORTCUT_PULL_HERE, user_id="UVIEW", user_name="viewer",
                                       trigger_id=views_of(h.fake).issue(), channel_id="C0BRAVO",
                                       channel_name="bravo-ops", response_url=h.fake.response_url(rid)))
    refusal = (await h.fake.wait_for("response", rid))[0]
    assert "`docker pull` needs the operator role; you have viewer." in refusal.text
    assert refusal.body.get("response_type") == "ephemeral"
    assert len(h.fake.api_calls("views.open")) == 2


async def test_suggestions_come_from_the_chosen_hosts_engine(services, slack_app, fleet, bravo_tag, stack,
                                                             remote_image):
    h = await slack_app(services)
    view = await _open_form(h, channel_id="C0BRAVO")  # starts on bravo (its private_metadata)
    on_bravo, _ = await _suggest(h, view, ACTION_REGISTRY, "")
    assert BRAVO_REGISTRY in on_bravo and stack.index in on_bravo
    # the person picks alpha in the menu (block_actions, as Slack sends it): alpha's registries
    click = view_click(view, _host_menu(view), user_id=OPS, user_name="ops", trigger_id=views_of(h.fake).issue(),
                       selected_option=_option("alpha"))
    status, _, _ = await send_interactive(h, click)
    assert status == 200
    on_alpha, _ = await _suggest(h, view, ACTION_REGISTRY, "")
    assert BRAVO_REGISTRY not in on_alpha and stack.index in on_alpha and stack.registry in on_alpha
    # the menu's value in the view's state wins over what the form opened on
    back, _ = await _suggest(h, view, ACTION_REGISTRY, "", host=_option("bravo"))
    assert BRAVO_REGISTRY in back
    # repositories and tags through the chosen host's engine: the registry's catalog and tag list,
    # reached with that engine's insecure-registry settings (charlie is the TLS engine)
    registry, path = _pieces(remote_image)
    admin_view = await _open_form(h, user_id=ADMIN)
    chosen = {"host": _option("charlie"), "registry": _option(registry)}
    status, text, _ = await send_interactive(h, suggestion(admin_view, ACTION_REPOSITORY, path.rsplit("/", 1)[-1],
                                                           user_id=ADMIN, user_name="admin", values=chosen))
    assert path in [o["value"] for o in json.loads(text)["options"]]
    status, text, _ = await send_interactive(h, suggestion(admin_view, ACTION_TAG, "", user_id=ADMIN,
                                                           user_name="admin",
                                                           values=dict(chosen, repository=_option(path))))
    assert [o["value"] for o in json.loads(text)["options"]] == ["v1"]
    # a host the person may not pull on (a forged state) suggests nothing
    forged, _ = await _suggest(h, view, ACTION_REPOSITORY, path.rsplit("/", 1)[-1], **chosen)
    assert forged == []


async def test_a_frozen_host_answers_suggestions_in_time_and_the_others_are_untouched(services, slack_app, fleet,
                                                                                      bravo_tag, stack):
    h = await slack_app(services)
    view = await _open_form(h, channel_id="C0BRAVO")
    pid = S.dockerd_pid(fleet.bravo)
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen, elapsed = await _suggest(h, view, ACTION_REGISTRY, "")
        assert elapsed < 3.0  # Slack's 3 s: the lookup gave up, the configured registries are offered
        assert stack.index in frozen and "docker.io" in frozen and BRAVO_REGISTRY not in frozen
        alpha, elapsed = await _suggest(h, view, ACTION_REGISTRY, "", host=_option("alpha"))
        assert stack.registry in alpha and elapsed < 3.0
    finally:
        os.kill(pid, signal.SIGCONT)
    thawed, _ = await _suggest(h, view, ACTION_REGISTRY, "")  # a short answer was not cached
    assert BRAVO_REGISTRY in thawed


async def test_submitting_pulls_on_the_chosen_host_as_a_typed_pull_at_host(services, slack_app, fleet, stack,
                                                                           remote_image, make_image):
    h = await slack_app(services)
    view = await _open_form(h, channel_id="C0BRAVO")
    registry, path = _pieces(remote_image)
    answer = await _submit(h, view, {"host": _option("bravo"), "registry": _option(registry),
                                     "repository": _option(path), "tag": _option("v1"), "channel": "C0BRAVO"})
    assert answer == {}, answer  # the modal closes
    post = (await h.fake.wait_for("api", "chat.postMessage"))[0]
    assert post.body["channel"] == "C0BRAVO"
    assert f"<@UOPS> is pulling `{remote_image.ref}` on `bravo`" in post.text, post.text
    final = await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    assert f":white_check_mark: <@UOPS> pulled `{remote_image.ref}`" in final[0].text
    assert fleet.has("bravo", remote_image.ref) and not fleet.has("alpha", remote_image.ref)
    assert not fleet.has("charlie", remote_image.ref)
    form = [(r["event"], r["host"], r["command"]) for r in services.audit.tail_sync(20)
            if remote_image.ref in r["command"]]
    # a typed `/pull @bravo` of another image: the same records
    other = make_image(f"fleetform-typed-{uuid.uuid4().hex[:6]}", push=True)
    stack.docker("rmi", other.ref)
    await h.command("/pull", f"@bravo {other.ref}", user_id=OPS, channel_id="C0OPS")
    await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text and other.ref in c.text,
                          timeout=60)
    typed = [(r["event"], r["host"], r["command"]) for r in services.audit.tail_sync(20) if other.ref in r["command"]]
    assert form == [(e, "bravo", f"docker -H bravo pull {remote_image.ref}") for e in ("requested", "running", "done")]
    assert typed == [(e, "bravo", f"docker -H bravo pull {other.ref}") for e in ("requested", "running", "done")]
    for ref in (remote_image.ref, other.ref):
        fleet.docker("bravo", "rmi", ref, check=False)


async def test_a_group_pulls_on_each_of_its_hosts(services, slack_app, fleet, remote_image):
    h = await slack_app(services)
    view = await _open_form(h, channel_id="C0ELSEWHERE", channel_name="web-ops")
    registry, path = _pieces(remote_image)
    answer = await _submit(h, view, {"host": _option("web"), "registry": _option(registry),
                                     "repository": _option(path), "tag": _option("v1"), "channel": "C0OPS"})
    assert answer == {}, answer
    post = (await h.fake.wait_for("api", "chat.postMessage"))[0]
    assert f"is pulling `{remote_image.ref}` on `web (alpha, bravo)`" in post.text, post.text
    await h.fake.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=90)
    try:
        assert fleet.has("alpha", remote_image.ref) and fleet.has("bravo", remote_image.ref)
        assert not fleet.has("charlie", remote_image.ref)
        done = {r["host"] for r in services.audit.tail_sync(30)
                if remote_image.ref in r["command"] and r["event"] == "done"}
        assert {"alpha", "bravo"} <= done
    finally:
        fleet.docker("bravo", "rmi", remote_image.ref, check=False)


@pytest.mark.parametrize("host,refusing", [("charlie", "charlie"), ("pair", "charlie")])
async def test_a_host_the_person_may_not_pull_on_is_refused_on_the_host_field(services, slack_app, fleet,
                                                                              remote_image, host, refusing):
    h = await slack_app(services)
    view = await _open_form(h)  # a forged or stale form: the menu never offered it
    registry, path = _pieces(remote_image)
    answer = await _submit(h, view, {"host": _option(host), "registry": _option(registry),
                                     "repository": _option(path), "tag": _option("v1"), "channel": "C0OPS"})
    assert answer.get("response_action") == "errors", answer
    assert "`docker pull` needs the operator role; you have viewer." in answer["errors"]["host"]
    typed = await h.reply(await h.command("/pull", f"@charlie {remote_image.ref}", user_id=OPS))
    assert "`docker pull` needs the operator role; you have viewer." in typed.text
    denied = [(r["host"], r["command"]) for r in services.audit.tail_sync(20)
              if r["event"] == "denied" and remote_image.ref in r["command"]]
    assert denied == [(refusing, f"docker -H {refusing} pull {remote_image.ref}")] * 2
    assert not h.fake.api_calls("chat.postMessage")
    assert not any(fleet.has(x, remote_image.ref) for x in ("alpha", "bravo", "charlie"))  # nothing pulled


async def test_an_unknown_or_missing_host_is_an_error_on_the_host_field(services, slack_app, remote_image):
    h = await slack_app(services)
    view = await _open_form(h)
    registry, path = _pieces(remote_image)
    filled = {"registry": _option(registry), "repository": _option(path), "channel": "C0OPS"}
    answer = await _submit(h, view, dict(filled, host=_option("zulu")))
    assert "unknown host 'zulu'" in answer["errors"]["host"] and "hosts: alpha, bravo, charlie" in answer["errors"]["host"]
    answer = await _submit(h, view, dict(filled, host=_option("-H")))
    assert "is not a host name" in answer["errors"]["host"]
    answer = await _submit(h, dict(view, private_metadata=""), filled)  # no host in the state nor the form
    assert answer["errors"] == {"host": "Choose the host to pull on."}
    assert not h.fake.api_calls("chat.postMessage")


# -- Tab completion in `dockhand shell`, on a pseudo-terminal -----------------------------


@pytest.fixture
def shell(stack, fleet, tmp_path):
    hosts = tmp_path / "hosts.toml"
    write_hosts(hosts, fleet, missing=str(tmp_path / "gone.sock"))  # delta: an engine that is down
    term = Terminal(env_for(stack, fleet, tmp_path, DOCKHAND_HOSTS_FILE=str(hosts)), tmp_path)
    try:
        term.prompt(timeout=30)
        yield term
    finally:
        term.close()


def _repo(ref: str) -> str:
    return ref.rsplit(":", 1)[0]


def test_tab_completes_hosts_and_groups_after_at_and_dash_h(shell):
    shell.write(b"images @br" + TAB)
    shell.line("dockhand> images @bravo ")
    shell.write(KILL_LINE + b"rmi @" + TAB + TAB)
    block = shell.expect(r"^((?:\S+\s+-- .*\n)+)dockhand> rmi @$").group(1)
    assert re.search(r"^@alpha\s+-- default host$", block, re.M)
    assert re.search(r"^@pair\s+-- group: bravo, charlie$", block, re.M)
    assert re.search(r"^@all\s+-- every host$", block, re.M)
    assert re.search(r"^@delta\s+-- host$", block, re.M)
    shell.write(KILL_LINE + b"images -H ch" + TAB)
    shell.line("dockhand> images -H charlie ")
    shell.write(b"\r")  # the completed line runs on charlie
    shell.expect(r"^REPOSITORY\s+TAG\s+IMAGE ID")
    shell.prompt()


def test_image_names_come_from_the_host_the_line_names(shell, fleet):
    bravo, charlie = _repo(fleet.only["bravo"]), _repo(fleet.only["charlie"])
    # the default host (alpha) has no such image: Tab adds nothing
    shell.write(b"rmi " + bravo[:-3].encode() + TAB)
    time.sleep(1.0)
    shell.line("dockhand> rmi " + bravo[:-3])
    shell.write(KILL_LINE + b"rmi -H bravo " + bravo[:-3].encode() + TAB)
    shell.line(f"dockhand> rmi -H bravo {bravo}")  # from bravo's engine, no space: a tag may follow
    shell.write(b":" + TAB)
    shell.line(f"dockhand> rmi -H bravo {fleet.only['bravo']} ")
    shell.write(KILL_LINE + b"rmi @charlie " + charlie[:-3].encode() + TAB)  # over TCP + TLS
    shell.line(f"dockhand> rmi @charlie {charlie}")
    # a group: every host of it, asked at once
    shell.write(KILL_LINE + b"images @pair dockhand-fleet/only-" + TAB + TAB)
    block = shell.expect(r"^((?:\S+.*\n)+)dockhand> images @pair dockhand-fleet/only-$").group(1)
    assert bravo in block and charlie in block and _repo(fleet.only["alpha"]) not in block
    shell.write(KILL_LINE)
    shell.prompt()


def test_a_frozen_or_down_host_never_holds_the_prompt(shell, fleet):
    charlie = _repo(fleet.only["charlie"])
    pid = S.dockerd_pid(fleet.bravo)
    os.kill(pid, signal.SIGSTOP)
    try:
        for selector in (b"@bravo", b"@delta", b"@pair"):
            start = time.monotonic()
            shell.write(b"rmi " + selector + b" dockhand-fleet/" + TAB)  # bravo: no answer; delta: no engine
            shell.write(KILL_LINE + b"help\r")  # typed right away; runs once Tab gave up
            shell.expect(r"^Management Commands:$", timeout=15)
            elapsed = time.monotonic() - start
            shell.prompt()
            assert elapsed < 3.0, f"{selector!r}: the prompt waited {elapsed:.1f} s"
        # the other hosts still complete, bravo frozen all along
        start = time.monotonic()
        shell.write(b"rmi @charlie " + charlie[:-3].encode() + TAB)
        shell.line(f"dockhand> rmi @charlie {charlie}")
        assert time.monotonic() - start < 3.0
        start = time.monotonic()
        shell.write(KILL_LINE + b"images @pair dockhand-fleet/only-" + TAB + TAB)  # bravo's part: nothing
        shell.line(f"dockhand> images @pair {charlie}")  # the one name the group offered in time
        assert time.monotonic() - start < 3.0
        shell.write(KILL_LINE)
        shell.prompt()
        # leaving, with the frozen host's list still pending: the shell ends at once
        start = time.monotonic()
        shell.write(b"exit\r")
        assert shell.proc.wait(timeout=15) == 0
        assert time.monotonic() - start < 5.0, time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)

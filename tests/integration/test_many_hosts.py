"""Many hosts with real engines: three private engines at once (the stack's
own on a unix socket, a second plain one on a unix socket, a third over TCP
with mutual TLS and certificates made here), named in a hosts file with a
group, a channel default, a timeout and roles per host.

Through the real `dockhand shell -c` (the CLI path, exit statuses), through
the handlers on engines built by the composition root (channel defaults,
per-host roles, confirmations, the audit log), and through signed Slack
requests to the running app. One engine is frozen (SIGSTOP) mid-test: the
others answer within their time and the frozen one is named.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.wiring import build_services, close_services
from handlers import operations
from handlers.dispatch import dispatch
from handlers.context import Actor
from bot.render.text import render
from handlers.replies import HostHeading, Status
from tests.integration import remote_engines as R
from tests.integration.shell_helpers import DOCKHAND, dockhand, dockhand_env

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")

S = R.stackmod
TIMEOUT = 3  # seconds each host has in a fan-out (the hosts file's `timeout`)
ADMIN, OPS, APPROVER = "UADMIN", "UOPS", "UAPPROVER"


@dataclass
class Fleet:
    root: Path
    alpha: str  # the stack's engine (unix)
    bravo: S.Paths  # a second plain engine (unix)
    charlie: R.TLSEngine  # TCP + mutual TLS
    hosts_file: Path
    only: dict  # host -> the image only that host has

    def docker(self, host: str, *args: str, input: bytes | None = None, check: bool = True):
        env = S.clean_env()
        env["DOCKER_CLI_HINTS"] = "false"
        if host == "alpha":
            env["DOCKER_HOST"] = self.alpha
        elif host == "bravo":
            env["DOCKER_HOST"] = self.bravo.docker_host
        else:
            env.update(self.charlie.env(), DOCKER_CONFIG=str(self.charlie.certs.root / "cli-config"))
        r = subprocess.run([S.docker_cli(), *args], input=input, capture_output=True, env=env, timeout=120)
        if check and r.returncode:
            raise AssertionError(f"docker {' '.join(args)} on {host}: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode(errors="replace")

    def has(self, host: str, ref: str) -> bool:
        env_check = self.docker(host, "image", "inspect", ref, check=False)
        return bool(env_check.strip()) and env_check.strip() != "[]"

    def make(self, host: str, name: str) -> str:
        ref = f"dockhand-fleet/{name}:{uuid.uuid4().hex[:8]}"
        self.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": f"{host} {ref}".encode()}))
        return ref


def write_hosts(path: Path, alpha: str, bravo: str, charlie: R.TLSEngine, *, missing: str = "") -> None:
    extra = f'\n[hosts.delta]\nurl = "unix://{missing}"\n' if missing else ""
    path.write_text(f'''
default = "alpha"
timeout = {TIMEOUT}

[hosts.alpha]
url = "{alpha}"

[hosts.bravo]
url = "{bravo}"
remove_role = "operator"     # staging-like: operators remove here

[hosts.charlie]
url = "{charlie.url}"
cert_path = "{charlie.certs.good}"
approvers = ["{APPROVER}"]   # prod-like: a second person confirms
{extra}
[groups]
pair = ["charlie", "bravo"]

[channels]
C0BRAVO = "bravo"
C0PAIR = "pair"
"#charlie-ops" = "charlie"
''')


@pytest.fixture(scope="module")
def fleet(stack):
    root = R.temp_root("dh-fleet-")
    bravo = S.Paths(str(root / "b"))
    os.makedirs(bravo.root)
    charlie = None
    try:
        S.start_dockerd(bravo)
        charlie = R.start_tls_engine(root / "c")
        f = Fleet(root, stack.docker_host, bravo, charlie, root / "hosts.toml", {})
        write_hosts(f.hosts_file, stack.docker_host, bravo.docker_host, charlie)
        for host in ("alpha", "bravo", "charlie"):
            f.only[host] = f.make(host, f"only-{host}")
        yield f
    finally:
        with_pid = S.dockerd_pid(bravo)
        if with_pid:
            os.kill(with_pid, signal.SIGCONT) if _alive(with_pid) else None
        S.stop_dockerd(bravo)
        if charlie is not None:
            R.stop_tls_engine(charlie)
        if "f" in locals():
            for ref in f.only.values():
                subprocess.run([S.docker_cli(), "-H", stack.docker_host, "rmi", "-f", ref], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def env_for(stack, f: Fleet, tmp_path, **extra) -> dict:
    env = dockhand_env(stack, DOCKHAND_HOSTS_FILE=str(f.hosts_file), DOCKHAND_STATE_DIR=str(tmp_path / "state"))
    for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        env.pop(k, None)
    env.update(extra)
    return env


def sections(text: str) -> dict[str, str]:
    """The shell's output cut at its `=== host ... ===` headings."""
    out, name = {}, None
    for line in text.splitlines():
        if line.startswith("=== "):
            name = line[4:].split()[0].rstrip(":")
            out[name] = line + "\n"
        elif name is not None:
            out[name] += line + "\n"
    return out


# -- the CLI path ------------------------------------------------------------------

def test_images_on_every_host_one_section_each_in_the_settings_order(stack, fleet, tmp_path):
    r = dockhand("shell", "-c", "images @all", env=env_for(stack, fleet, tmp_path))
    assert r.returncode == 0, r.stderr
    parts = sections(r.stdout)
    assert list(parts) == ["alpha", "bravo", "charlie"], r.stdout
    for host, ref in fleet.only.items():
        repo = ref.split(":")[0]
        holders = [h for h, text in parts.items() if repo in text]
        assert holders == [host], (host, r.stdout)  # each host's own images, in its own section
    assert "Docker Engine" in parts["charlie"].splitlines()[0]  # reached over TLS with its own certificates


def test_one_host_by_name_and_an_unknown_one_lists_the_known(stack, fleet, tmp_path):
    env = env_for(stack, fleet, tmp_path)
    r = dockhand("shell", "-c", "images -H charlie", env=env)
    assert r.returncode == 0, r.stderr
    assert fleet.only["charlie"].split(":")[0] in r.stdout
    assert fleet.only["alpha"].split(":")[0] not in r.stdout and "===" not in r.stdout
    r = dockhand("shell", "-c", "images @zulu", env=env)
    assert r.returncode == 2
    assert "unknown host 'zulu'" in r.stderr
    assert "hosts: alpha, bravo, charlie; groups: pair (bravo, charlie); @all: every host" in r.stderr


def test_bad_hosts_settings_fail_at_start_up_one_line_each(stack, fleet, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[hosts.x]\nurl = "tcp://127.0.0.1:1"\ncert_path = "/nonexistent"\n[groups]\ng = ["y"]\n')
    r = dockhand("shell", "-c", "images", env=env_for(stack, fleet, tmp_path, DOCKHAND_HOSTS_FILE=str(bad),
                                                       DOCKHAND_HOSTS="all=unix:///x"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("dockhand: ") for line in lines), r.stderr
    assert "Traceback" not in r.stderr


def test_a_frozen_engine_is_named_and_the_others_answer_within_its_timeout(stack, fleet, tmp_path):
    env = env_for(stack, fleet, tmp_path)
    warm = dockhand("shell", "-c", "images @all", env=env)  # the same run with every host answering
    assert warm.returncode == 0, warm.stderr
    pid = S.dockerd_pid(fleet.bravo)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = dockhand("shell", "-c", "images @all", env=env, timeout=120)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    parts = sections(r.stdout)
    assert r.returncode == 1
    assert fleet.only["alpha"].split(":")[0] in parts["alpha"]
    assert fleet.only["charlie"].split(":")[0] in parts["charlie"]
    assert list(parts) == ["alpha", "charlie"]  # the answers on stdout, the frozen host's section on stderr
    failed = sections(r.stderr)
    assert list(failed) == ["bravo"], r.stderr
    assert failed["bravo"].startswith(f"=== bravo: FAILED (bravo did not answer within {TIMEOUT} s)"), r.stderr
    # start-up's own check of every host is bounded by the same timeout; the frozen
    # host costs its timeout there and in the command, never the engine's 60 s
    print(f"with bravo frozen, `dockhand shell -c 'images @all'` took {took:.1f} s")
    assert took < 2 * TIMEOUT + 15, took


def test_a_host_that_is_down_is_named_and_never_stops_start_up(stack, fleet, tmp_path):
    hosts = tmp_path / "hosts.toml"
    write_hosts(hosts, fleet.alpha, fleet.bravo.docker_host, fleet.charlie, missing=str(tmp_path / "gone.sock"))
    r = dockhand("shell", "-c", "images @all", env=env_for(stack, fleet, tmp_path, DOCKHAND_HOSTS_FILE=str(hosts)))
    assert r.returncode == 1
    assert "dockhand: warning: host delta: No Docker Engine answered" in r.stderr
    assert list(sections(r.stdout)) == ["alpha", "bravo", "charlie"]
    failed = sections(r.stderr)
    assert list(failed) == ["delta"] and failed["delta"].startswith("=== delta: FAILED"), r.stderr
    assert str(tmp_path) not in failed["delta"]  # the host is named by its name, not its socket path


# -- the handlers on real engines: channel defaults, groups, roles per host -----------

@pytest.fixture
async def services(stack, fleet, tmp_path):
    env = env_for(stack, fleet, tmp_path, DOCKHAND_ADMINS=f"{ADMIN},{APPROVER}", DOCKHAND_OPERATORS=OPS)
    settings = load_settings(env, slack=False)
    made = build_services(settings)
    try:
        yield made
    finally:
        await close_services(made)


def slack(user: str, channel: str = "C0OPS") -> Actor:
    return Actor(user, user.lower(), via="slack", channel=channel)


async def test_channel_default_and_group_on_real_engines(services, fleet):
    reply = await dispatch("images", slack(OPS, "C0BRAVO"), services)
    assert reply.ok and reply.host == "bravo"
    text = str(reply.parts)
    assert fleet.only["bravo"].split(":")[0] in text and fleet.only["alpha"].split(":")[0] not in text
    reply = await dispatch("images", slack(OPS), services)
    assert reply.host == "alpha"  # the fleet's default elsewhere
    reply = await dispatch("images -H alpha", slack(OPS, "C0BRAVO"), services)
    assert reply.host == "alpha"  # a name wins over the channel's default
    reply = await dispatch("images", slack(OPS, "C0PAIR"), services)
    assert [p.host for p in reply.parts if isinstance(p, HostHeading)] == ["bravo", "charlie"]
    assert reply.host == "pair (bravo, charlie)" and reply.ok


async def test_roles_differ_per_host_and_every_record_names_it(services, fleet):
    audit = services.audit
    # bravo lets operators remove: the operator plans, confirms, the image goes from bravo only
    victim = fleet.make("bravo", "victim")
    twin = fleet.make("alpha", "victim")
    reply = await dispatch(f"rmi @bravo {victim}", slack(OPS), services)
    question = reply.confirmation
    assert question is not None and "on bravo" in question.question and reply.host == "bravo"
    assert reply.operation.host == "bravo"
    done = await operations.confirm(question.op, slack(OPS), services)
    assert done.ok, done.parts
    assert not fleet.has("bravo", victim) and fleet.has("alpha", twin)
    # alpha keeps the global rule: removing needs an admin
    reply = await dispatch(f"rmi {twin}", slack(OPS), services)
    assert reply.status is Status.FAILED and "needs the admin role" in reply.parts[0].message
    assert reply.operation.host == "alpha"
    # charlie needs an approver other than the requester
    prod = fleet.make("charlie", "victim")
    reply = await dispatch(f"rmi -H charlie {prod}", slack(ADMIN), services)
    question = reply.confirmation
    assert question.who == "an approver other than the requester"
    refused = await operations.confirm(question.op, slack(ADMIN), services)
    assert refused.status is Status.FAILED and "two-person rule" in refused.parts[0].message
    assert fleet.has("charlie", prod)
    done = await operations.confirm(question.op, slack(APPROVER), services)
    assert done.ok and not fleet.has("charlie", prod)
    records = audit.tail_sync(50)
    hosts = {(r["event"], r["host"]) for r in records}
    assert {("done", "bravo"), ("denied", "alpha"), ("denied", "charlie"), ("done", "charlie")} <= hosts
    fleet.docker("alpha", "rmi", twin)


# -- Slack: signed requests to the running app ----------------------------------------

from tests.fakes.slack_harness import clean_slack_env, fake_slack, slack_app  # noqa: E402,F401


async def test_slack_names_the_host_per_channel_and_answers_every_host(services, fleet, slack_app):
    from tests.fakes.slack_api import message_problems

    h = await slack_app(services)
    sent = await h.command("/images", "", channel_id="C0BRAVO", user_id=OPS)
    assert sent.status == 200
    message = (await h.reply(sent)).body
    assert message_problems(message) == []
    text = str(message["blocks"])
    assert "on `bravo`" in text and fleet.only["bravo"].split(":")[0] in text
    sent = await h.command("/images", "@all", user_id=OPS)
    message = (await h.reply(sent)).body
    assert message_problems(message) == []
    blocks = str(message["blocks"])
    assert blocks.index("*alpha*") < blocks.index("*bravo*") < blocks.index("*charlie*")
    for ref in fleet.only.values():
        assert ref.split(":")[0] in blocks
    sent = await h.command("/images", "", channel_id="C0ELSEWHERE", channel_name="charlie-ops", user_id=OPS)
    message = (await h.reply(sent)).body
    assert "on `charlie`" in str(message["blocks"])  # a channel's default by its name
    sent = await h.command("/images", "@nope", user_id=OPS)
    message = (await h.reply(sent)).body
    assert "unknown host" in str(message) and "alpha, bravo, charlie" in str(message)


def test_drift_shows_the_stale_tag_on_the_one_host_that_differs(stack, fleet, tmp_path):
    """The same tag pulled from the registry on three engines, then moved and
    pulled again on bravo only: bravo differs from the majority, with the
    image IDs and registry digests each engine reports."""
    ref = f"{stack.registry}/dockhand-fleet/drift:{uuid.uuid4().hex[:8]}"
    try:
        fleet.docker("alpha", "import", "-", ref, input=S.rootfs_tar({"v": b"one"}))
        fleet.docker("alpha", "push", ref)
        first = S.registry_digest(ref)
        for host in ("bravo", "charlie"):
            fleet.docker(host, "pull", ref)
        fleet.docker("alpha", "rmi", ref)
        fleet.docker("alpha", "pull", ref)  # alpha's copy now carries its registry digest too
        fleet.docker("alpha", "import", "-", ref, input=S.rootfs_tar({"v": b"two"}))
        fleet.docker("alpha", "push", ref)
        second = S.registry_digest(ref)
        assert first != second
        fleet.docker("bravo", "pull", ref)  # bravo moves on; alpha and charlie keep the first
        fleet.docker("alpha", "rmi", ref)
        fleet.docker("alpha", "pull", S.split_ref(ref)[0] + "/" + S.split_ref(ref)[1] + "@" + first)
        fleet.docker("alpha", "tag", S.split_ref(ref)[0] + "/" + S.split_ref(ref)[1] + "@" + first, ref)
        ids = {h: fleet.docker(h, "image", "inspect", "-f", "{{.Id}}", ref).strip() for h in ("alpha", "bravo", "charlie")}
        assert ids["alpha"] == ids["charlie"] != ids["bravo"]
        r = dockhand("shell", "-c", f"images {ref} @all", env=env_for(stack, fleet, tmp_path))
        assert r.returncode == 0, r.stderr
        head = r.stdout.split("=== ")[0]
        assert f"bravo differs from the majority (2 of 3 hosts have {ids['alpha'][7:19]})" in head, r.stdout
        rows = {line.split()[0]: line.split() for line in head.splitlines()[2:] if line.strip()}
        assert rows["bravo"][1:] == [ids["bravo"][7:19], second[:19], "DIFFERS"], head
        assert rows["alpha"][1:] == [ids["alpha"][7:19], first[:19], "same"], head
        assert rows["charlie"][1:] == [ids["alpha"][7:19], first[:19], "same"], head
    finally:
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)


# -- fleet-wide changes ---------------------------------------------------------------

async def test_fleet_wide_removal_takes_one_confirmation_and_skips_the_host_that_changed(services, fleet):
    ref = f"dockhand-fleet/old:{uuid.uuid4().hex[:8]}"
    for host in ("alpha", "bravo", "charlie"):
        fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": host.encode()}))
    try:
        reply = await dispatch(f"rmi @all {ref}", slack(ADMIN), services)
        assert [p.host for p in reply.parts if isinstance(p, HostHeading)] == ["alpha", "bravo", "charlie"]
        question, parent = reply.confirmation, reply.operation
        assert parent.kind == "fleet" and parent.host == "all (alpha, bravo, charlie)"
        assert question.who == "an approver other than the requester"  # charlie's rule covers the whole confirmation
        assert sum(isinstance(p, operations.Table) for p in reply.parts) == 3  # one plan per host
        refused = await operations.confirm(question.op, slack(ADMIN), services)
        assert refused.status is Status.FAILED and refused.parts[0].message.startswith("On charlie: ")
        assert all(fleet.has(h, ref) for h in ("alpha", "bravo", "charlie"))
        # between plan and confirmation, bravo's image gains a second tag: removing ref would now only untag
        fleet.docker("bravo", "tag", ref, ref + "-kept")
        done = await operations.confirm(question.op, slack(APPROVER), services)
        assert done.meta.get("hosts") == {"alpha": "done", "bravo": "changed", "charlie": "done"}, render(done)
        assert not fleet.has("alpha", ref) and not fleet.has("charlie", ref) and fleet.has("bravo", ref)
        text = render(done)
        bravo = text.split("=== bravo")[1].split("=== charlie")[0]
        assert "The situation changed since this plan was shown" in bravo and "untag" in bravo.lower()
        assert "Skipped on bravo" in text
        assert done.operation.state == "done" and done.operation.decided_by == APPROVER
        # bravo's new plan stays in the answer, in bravo's section, with a confirmation of its own
        (again_q,) = done.confirmations
        new = await services.store.get(again_q.op)
        assert new.host == "bravo" and new.state == "pending" and "on bravo" in again_q.question
        assert "Nothing is removed until the requester confirms" in bravo
        assert done.meta["replanned"]["bravo"].operation.id == new.id
        assert done.status is Status.OK  # every host acted as planned or asks its own question now
        records = services.audit.tail_sync(60)
        mine = [(r["event"], r["host"]) for r in records if ref in r["command"]]
        assert ("done", "alpha") in mine and ("done", "charlie") in mine and ("superseded", "bravo") in mine
        asked = next(r for r in records if r["op"] == new.id and r["event"] == "requested")
        first = next(r for r in records if r["event"] == "superseded" and r["host"] == "bravo" and ref in r["command"])
        assert asked["detail"]["replaces"] == first["op"]
        assert done.operation.result["replanned"] == {"bravo": new.id}
        assert ("done", "all (alpha, bravo, charlie)") in mine and ("confirmed", "all (alpha, bravo, charlie)") in mine
        again = await operations.confirm(question.op, slack(APPROVER), services)  # a second click acts nowhere
        assert again.status is Status.FAILED and "already" in again.summary
    finally:
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, ref + "-kept", check=False)


async def test_fleet_wide_pull_runs_on_every_host_of_a_group_each_audited(services, fleet, stack):
    ref = stack.seed("busybox_136")
    for host in ("bravo", "charlie"):
        fleet.docker(host, "rmi", "-f", ref, check=False)
    try:
        reply = await dispatch(f"pull @pair {ref}", slack(OPS), services)
        assert reply.ok, render(reply)
        assert [p.host for p in reply.parts if isinstance(p, HostHeading)] == ["bravo", "charlie"]
        assert fleet.has("bravo", ref) and fleet.has("charlie", ref)
        records = [(r["event"], r["host"]) for r in services.audit.tail_sync(40) if ref in r["command"]]
        assert ("done", "bravo") in records and ("done", "charlie") in records
    finally:
        for host in ("bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)


async def test_slack_fleet_removal_one_plan_message_one_confirm_click(services, fleet, slack_app):
    from tests.fakes.slack_api import buttons, message_problems
    from tests.integration.slack.test_slack_removal import click, final_state, plan_message

    ref = f"dockhand-fleet/gone:{uuid.uuid4().hex[:8]}"
    for host in ("bravo", "charlie"):
        fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": host.encode()}))
    try:
        h = await slack_app(services)
        _, post = await plan_message(h, f"@pair {ref}", user=ADMIN)
        assert message_problems(post.body) == []
        assert "`pair (bravo, charlie)`" in post.text and "an approver other than the requester" in post.text
        blocks = str(post.body["blocks"])
        assert blocks.index("*bravo*") < blocks.index("*charlie*")  # one plan per host, in order
        assert [b["action_id"] for b in buttons(post.body)].count("dockhand.confirm") == 1
        await click(h, post, "dockhand.confirm", APPROVER)
        done = await final_state(h, post, "confirmed by")
        assert message_problems(done.body) == []
        assert not fleet.has("bravo", ref) and not fleet.has("charlie", ref)
        assert not buttons(done.body)
        assert "on `pair (bravo, charlie)`; confirmed by <@UAPPROVER>: done, 2 image(s) deleted" in done.text
    finally:
        for host in ("bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)


def inventory(f: Fleet, host: str) -> tuple[set[str], set[str]]:
    """The engine's own word on what a host holds: image IDs, and references."""
    ids, refs = set(), set()
    for line in f.docker(host, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").splitlines():
        image_id, ref = line.split()
        ids.add(image_id)
        if ref != "<none>:<none>":
            refs.add(ref)
    return ids, refs


def familiar(ref: str) -> str:
    return ref.removeprefix("docker.io/").removeprefix("library/")


def replaced_on(f: Fleet, host: str, ref: str) -> tuple[str, str]:
    """Between plan and confirmation, ``ref`` moves on ``host`` to a new image
    (a fresh import under the same name): the shown plan would delete the old
    image, the new plan must delete the new one and leave the old one alone.
    (old image ID, new image ID)."""
    old = f.docker(host, "image", "inspect", "-f", "{{.Id}}", ref).strip()
    f.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": f"{host} moved on".encode()}))
    new = f.docker(host, "image", "inspect", "-f", "{{.Id}}", ref).strip()
    assert old != new
    return old, new


def check_against_the_engine(before: tuple[set, set], after: tuple[set, set], planned: dict) -> None:
    """The engine is the oracle: what left the host is exactly what the plan predicted."""
    deleted, untagged = before[0] - after[0], {familiar(r) for r in before[1] - after[1]}
    assert deleted == set(planned["deleted"]), (deleted, planned)
    assert untagged == {familiar(r) for r in planned["untagged"]}, (untagged, planned)
    assert after[0] <= before[0] and after[1] <= before[1]  # nothing else changed


async def test_slack_fleet_removal_a_changed_host_gets_its_new_plan_with_its_own_buttons(
        services, fleet, slack_app):
    """`/rmi @all ref`, one Confirm; on bravo and charlie ref moved to another
    image in between: alpha acts, bravo and charlie are skipped and each new
    plan comes as that host's own pending operation, a message with its own
    Confirm/Cancel. Clicks on it pass that host's rules (bravo: only the
    requester; charlie: an approver other than the requester) and one claim;
    the engine then shows exactly the new plan's removal."""
    from tests.fakes.slack_api import buttons, message_problems
    from tests.integration.slack.test_slack_removal import button, click, final_state, plan_message, thread

    ref = f"dockhand-fleet/moved:{uuid.uuid4().hex[:8]}"
    for host in ("alpha", "bravo", "charlie"):
        fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": host.encode()}))
    olds: dict[str, str] = {}
    try:
        h = await slack_app(services)
        _, post = await plan_message(h, f"@all {ref}", user=ADMIN)
        fleet_op = buttons(post.body)[0]["value"]
        moved = {}
        for host in ("bravo", "charlie"):
            olds[host], moved[host] = replaced_on(fleet, host, ref)
        await click(h, post, "dockhand.confirm", APPROVER)
        done = await final_state(h, post, "confirmed by")
        assert message_problems(done.body) == []
        assert "done, 1 image(s) deleted" in done.text and not fleet.has("alpha", ref)
        for host in ("bravo", "charlie"):  # nothing removed where the plan changed
            assert fleet.has(host, ref) and fleet.has(host, olds[host])
        assert "Skipped on bravo, charlie" in str(done.body["blocks"]) and not buttons(done.body)
        fleet_record = (await thread(h, post))[-1].text
        assert "alpha: done, bravo: changed, charlie: changed" in fleet_record and "new plans" in fleet_record

        # each changed host's new plan: a message of its own, in the same channel, with its own buttons
        new_posts, new_ops, planned = {}, {}, {}
        for host in ("bravo", "charlie"):
            (new_posts[host],) = await h.fake.wait_for(
                "api", "chat.postMessage", where=lambda c, host=host: "asks to run" in c.text and f"on `{host}`" in c.text)
            new_post = new_posts[host]
            assert message_problems(new_post.body) == [] and new_post.body["channel"] == post.body["channel"]
            new_id = button(new_post, "dockhand.confirm")["value"]
            assert button(new_post, "dockhand.cancel")["value"] == new_id != fleet_op
            new = new_ops[host] = await services.store.get(new_id)
            assert (new.host, new.state, new.requester, new.kind) == (host, "pending", ADMIN, "rmi")
            planned[host] = {"deleted": [d for i in new.plan["items"] for d in i["deleted"]],
                             "untagged": [u for i in new.plan["items"] for u in i["untagged"]]}
            # the new plan: the image ref names now, not the one first shown
            assert planned[host]["deleted"] == [moved[host]]
            assert moved[host][7:19] in new_post.text and olds[host][7:19] not in new_post.text
        assert "Waiting for <@UADMIN> to confirm" in new_posts["bravo"].text  # bravo: no approvers, the requester
        assert "Waiting for an approver other than the requester" in new_posts["charlie"].text

        # each host's own rules decide, on its own message
        refused = await click(h, new_posts["bravo"], "dockhand.confirm", APPROVER)
        assert "Only the person who asked for this removal may confirm it" in (await h.reply(refused)).text
        refused = await click(h, new_posts["charlie"], "dockhand.confirm", ADMIN)
        assert "two-person rule" in (await h.reply(refused)).text
        assert fleet.has("bravo", ref) and fleet.has("charlie", ref)
        for host, who in (("bravo", ADMIN), ("charlie", APPROVER)):
            before = inventory(fleet, host)
            await click(h, new_posts[host], "dockhand.confirm", who)
            finished = await final_state(h, new_posts[host], "done")
            assert f"confirmed by <@{who}>: done, 1 image(s) deleted" in finished.text and not buttons(finished.body)
            check_against_the_engine(before, inventory(fleet, host), planned[host])
            assert fleet.has(host, olds[host]) and not fleet.has(host, moved[host])
            record = (await thread(h, new_posts[host]))[-1].text
            assert moved[host][7:19] in record and f"confirmed by <@{who}>" in record
        late = await click(h, new_posts["bravo"], "dockhand.confirm", ADMIN)  # a second click acts nowhere
        assert "already" in (await h.reply(late)).text

        # the audit trail: each first plan superseded, each new one requested (naming it), denied, confirmed, done
        records = [r for r in services.audit.tail_sync(120) if ref in r["command"]]
        for host, denied, who in (("bravo", APPROVER, ADMIN), ("charlie", ADMIN, APPROVER)):
            first = next(r for r in records if r["event"] == "superseded" and r["host"] == host)
            assert first["actor"] == APPROVER  # who confirmed the fleet
            steps = [(r["event"], r["actor"]) for r in records if r["op"] == new_ops[host].id]
            assert steps == [("requested", ADMIN), ("denied", denied), ("confirmed", who), ("running", who),
                             ("done", who)], steps
            assert next(r for r in records if r["op"] == new_ops[host].id)["detail"]["replaces"] == first["op"]
        fleet_done = next(r for r in records if r["op"] == fleet_op and r["event"] == "done")
        assert fleet_done["detail"]["hosts"] == {"alpha": "done", "bravo": "changed", "charlie": "changed"}
        assert fleet_done["detail"]["replanned"] == {h: op.id for h, op in new_ops.items()}
    finally:
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)
        for host, old in olds.items():
            fleet.docker(host, "rmi", "-f", old, check=False)


async def test_slack_sends_the_answers_so_far_while_a_frozen_host_is_awaited(services, fleet, slack_app):
    from tests.fakes.slack_api import message_problems

    h = await slack_app(services)
    pid = S.dockerd_pid(fleet.bravo)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        sent = await h.command("/images", "@all", user_id=OPS)
        early = await h.reply(sent, count=1, timeout=20)
        early_at = time.monotonic() - started
        final = await h.reply(sent, count=2, timeout=20)
        final_at = time.monotonic() - started
        status, text = await h.get("/readyz")  # one host frozen: still ready, degraded, the host named
        ready = json.loads(text)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert message_problems(early.body) == [] and message_problems(final.body) == []
    blocks = str(early.body["blocks"])
    assert ":hourglass_flowing_sand: *bravo* · waiting (up to 3 s)" in blocks
    assert fleet.only["alpha"].split(":")[0] in blocks and fleet.only["charlie"].split(":")[0] in blocks
    assert early_at < TIMEOUT, early_at  # before the frozen host's timeout
    blocks = str(final.body["blocks"])
    assert ":red_circle: *bravo* · failed" in blocks and "bravo did not answer within 3 s" in blocks
    assert final_at >= TIMEOUT
    assert status == 200 and ready["status"] == "degraded"
    assert ready["hosts"]["bravo"] == {"reachable": False, "error": "timeout"}
    assert ready["hosts"]["alpha"]["reachable"] and ready["hosts"]["charlie"]["reachable"]


def test_shell_removes_on_a_group_with_one_yes(stack, fleet, tmp_path):
    ref = f"dockhand-fleet/shell:{uuid.uuid4().hex[:8]}"
    for host in ("alpha", "bravo", "charlie"):
        fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": host.encode()}))
    try:
        env = env_for(stack, fleet, tmp_path)
        r = dockhand("shell", "-c", f"rmi @pair {ref}", env=env)  # no terminal, no --yes: a plan only
        assert r.returncode == 1 and "Not confirmed" in r.stderr and fleet.has("bravo", ref) and fleet.has("charlie", ref)
        assert list(sections(r.stdout)) == ["bravo", "charlie"]
        assert "sample engine" not in r.stderr  # the default host's note is not about these hosts
        r = dockhand("shell", "--yes", "-c", f"rmi @pair {ref}", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert not fleet.has("bravo", ref) and not fleet.has("charlie", ref) and fleet.has("alpha", ref)
        assert r.stdout.count("Untagged: " + ref) == 2
    finally:
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)


def _planned_for(records: list[dict], host: str, ref: str) -> tuple[str, dict]:
    """The new plan a superseded one was replaced by, as its audit record predicts it: (its id, the plan)."""
    asked = next(r for r in records if r["event"] == "requested" and r["host"] == host and ref in r["command"]
                 and r["detail"].get("replaces"))
    return asked["op"], asked["detail"]["plan"]


def test_shell_asks_again_for_the_host_whose_plan_changed(stack, fleet, tmp_path):
    """`dockhand shell -c 'rmi @all ref'` on a terminal: one y/N for the three
    hosts; bravo's ref moves to another image before the answer, so bravo is
    skipped and its new plan is printed and asked about on its own; `y`
    removes on bravo exactly what the new plan said, as the engine shows."""
    import pty
    from bot.audit_log import AuditLog
    from tests.integration.test_shell_tty import _read_until

    ref = f"dockhand-fleet/tty:{uuid.uuid4().hex[:8]}"
    for host in ("alpha", "bravo", "charlie"):
        fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": host.encode()}))
    old = None
    env = env_for(stack, fleet, tmp_path, TERM="dumb")
    master, slave = pty.openpty()
    proc = subprocess.Popen([DOCKHAND, "shell", "-c", f"rmi @all {ref}"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, cwd=str(tmp_path), close_fds=True)
    os.close(slave)
    try:
        first = _read_until(master, b"[y/N] ", timeout=60).decode(errors="replace")
        assert "Run as planned on 3 host(s): alpha, bravo, charlie?" in first, first
        old, moved = replaced_on(fleet, "bravo", ref)
        before = inventory(fleet, "bravo")
        os.write(master, b"y\r")
        second = _read_until(master, b"[y/N] ", timeout=60).decode(errors="replace")
        assert "Skipped on bravo" in second and "Remove as planned on bravo?" in second, second
        assert moved[7:19] in second.split("=== bravo")[1]  # the new plan, shown before its question
        assert not fleet.has("alpha", ref) and not fleet.has("charlie", ref) and fleet.has("bravo", ref)
        os.write(master, b"y\r")
        rest = _read_until(master, b"freed", timeout=60).decode(errors="replace")
        assert proc.wait(timeout=60) == 0, rest
        after = inventory(fleet, "bravo")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)
        if old:
            fleet.docker("bravo", "rmi", "-f", old, check=False)
    assert "Untagged: " in rest and f"Deleted: {moved}" in rest, rest
    records = AuditLog(tmp_path / "state" / "audit.jsonl").tail_sync(60)
    new_id, planned = _planned_for(records, "bravo", ref)
    assert planned["deleted"] == [moved]  # the new plan: the image ref names now, not the one first shown
    check_against_the_engine(before, after, planned)
    assert old in after[0]
    assert [r["event"] for r in records if r["op"] == new_id] == ["requested", "confirmed", "running", "done"]


async def test_shell_yes_confirms_the_changed_hosts_new_plan_and_n_cancels_it(services, fleet):
    """The shell's way of settling (``bot.shell.answer``) on the real engines:
    ``--yes`` confirms every plan the command makes, the changed host's new
    plan too (each printed before it runs); at a prompt, `y` to the fleet and
    `n` to the new plan cancels that one alone, on the record as such."""
    import io

    from bot.shell import answer, shell_actor

    me = shell_actor()
    ref = f"dockhand-fleet/yes:{uuid.uuid4().hex[:8]}"
    olds = []
    for host in ("alpha", "bravo", "charlie"):
        fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": host.encode()}))
    shown: list = []

    async def show(reply):
        shown.append(reply)

    try:
        reply = await dispatch(f"rmi @all {ref}", me, services)
        old, moved = replaced_on(fleet, "bravo", ref)
        olds.append(old)
        before = inventory(fleet, "bravo")
        out = io.StringIO()
        status = await answer(reply, me, services, yes=True, can_ask=False, show=show, out=out)
        assert status is Status.OK, [render(r) for r in shown]
        assert out.getvalue().splitlines() == ["Confirmed by --yes: Run as planned on 3 host(s): alpha, bravo, charlie?",
                                               "Confirmed by --yes: Remove as planned on bravo?"]
        assert [r.operation.kind for r in shown] == ["fleet", "rmi"] and shown[1].operation.state == "done"
        assert "Skipped on bravo" in render(shown[0])
        records = services.audit.tail_sync(80)
        new_id, planned = _planned_for(records, "bravo", ref)
        assert shown[1].operation.id == new_id and planned["deleted"] == [moved]
        first_new = new_id
        check_against_the_engine(before, inventory(fleet, "bravo"), planned)
        assert not any(fleet.has(h, ref) for h in ("alpha", "bravo", "charlie"))

        # again, answered at a prompt: y for the three hosts, n for bravo's new plan
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "import", "-", ref, input=S.rootfs_tar({"who": f"{host} again".encode()}))
        shown.clear()
        reply = await dispatch(f"rmi @all {ref}", me, services)
        old, moved = replaced_on(fleet, "bravo", ref)
        olds.append(old)
        before = inventory(fleet, "bravo")
        out = io.StringIO()
        status = await answer(reply, me, services, yes=False, can_ask=True, show=show, out=out,
                              stdin=io.StringIO("y\nn\n"))
        assert status is Status.OK  # a plan declined is no failure, as for any plan
        assert out.getvalue().count("[y/N]") == 2 and "Remove as planned on bravo?" in out.getvalue()
        assert inventory(fleet, "bravo") == before  # nothing removed on bravo
        assert not fleet.has("alpha", ref) and not fleet.has("charlie", ref)
        records = services.audit.tail_sync(120)
        mine = [r for r in records if r["command"] == reply.command][::-1]  # this round's records first
        new_id = next(r["op"] for r in mine if r["event"] == "requested" and r["detail"].get("replaces"))
        assert shown[1].operation.id == new_id != first_new and shown[1].operation.state == "cancelled"
        assert [r["event"] for r in records if r["op"] == new_id] == ["requested", "cancelled"]
        assert (await services.store.get(new_id)).state == "cancelled"
        superseded = next(r for r in mine if r["event"] == "superseded")
        assert (await services.store.get(superseded["op"])).state == "superseded"
    finally:
        for host in ("alpha", "bravo", "charlie"):
            fleet.docker(host, "rmi", "-f", ref, check=False)
        for old in olds:
            fleet.docker("bravo", "rmi", "-f", old, check=False)

"""Pulls from a private registry: Debian's docker-registry with htpasswd
authentication (bcrypt), started by this module on 127.0.0.1.

Right password (from Dockhand's settings, from the config the real `docker
login` writes, from a credential helper) -> pulled; wrong password, none ->
RegistryUnauthorized with a hint naming where credentials come from. The
password is never shown: every reply, Slack call, log record and audit
record of a succeeding and a failing pull is searched for it, in every form.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import secrets
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bot.config import Settings
from bot.credentials import CredentialStore, RegistryAuth, RegistryLogin, Secret
from bot.engine import DockerEngine
from handlers import errors as E
from tests.fakes.registry_config import running_registry
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

pytestmark = pytest.mark.integration

DAEMON = "Error response from daemon: "
USER = "dockhand-puller"
PASSWORD = "Pw-" + secrets.token_urlsafe(18)  # unique: a hit anywhere is a leak


@dataclass
class AuthRegistry:
    address: str
    cli_config: str  # a DOCKER_CONFIG directory the real `docker login` wrote

    def login(self, password: str = PASSWORD, name: str = "PRIV") -> RegistryLogin:
        return RegistryLogin(name, self.address, USER, Secret(password))


@pytest.fixture(scope="module")
def auth_registry(stack, tmp_path_factory):
    import bcrypt

    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    with running_registry(root, ready=401, what="htpasswd registry",
                          auth=f"htpasswd:\n  realm: dockhand-private\n  path: {htpasswd}") as (address, headers, _):
        assert "Basic" in str(headers.get("Www-Authenticate") or headers.get("WWW-Authenticate") or "")
        cli_config = root / "docker-config"
        cli_config.mkdir()
        stack.docker("--config", str(cli_config), "login", "-u", USER, "--password-stdin", address, input=PASSWORD)
        yield AuthRegistry(address, str(cli_config))


@pytest.fixture
def private_image(stack, make_image, auth_registry):
    """A reference only the private registry has (pushed with the CLI's login)."""

    def make(size: int = 0) -> str:
        img = make_image(size=size)
        ref = f"{auth_registry.address}/private/app-{uuid.uuid4().hex[:10]}:v1"
        make_image.refs.append(ref)
        stack.docker("tag", img.ref, ref)
        stack.docker("--config", auth_registry.cli_config, "push", ref)
        stack.docker("rmi", ref, img.ref)
        assert not image_exists(stack, ref)
        return ref

    return make


def image_exists(stack, ref: str) -> bool:
    return stack.docker("image", "inspect", ref, check=False).returncode == 0


@contextlib.asynccontextmanager
async def engine_with(stack, credentials: CredentialStore):
    e = DockerEngine(stack.docker_host, timeout=60, credentials=credentials)
    try:
        yield e
    finally:
        await e.close()
        assert e.active_pulls == 0


async def pull(engine: DockerEngine, ref: str):
    repo, tag = ref.rsplit(":", 1)
    return [ev async for ev in engine.pull(repo, tag)]


def secret_forms(password: str = PASSWORD) -> list[str]:
    auth = RegistryAuth("r", "r", {"username": USER, "password": password, "serveraddress": "r"})
    pair = f"{USER}:{password}".encode()
    return [password, base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode(), *auth.secrets()]


def assert_never_shown(where: str, text: str, password: str = PASSWORD) -> None:
    for form in secret_forms(password):
        assert form not in text, f"a form of the password is in {where}"


def make_helper(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\nimport json, sys\naddress = sys.stdin.read()\n"
                    f"open({str(bin_dir / 'asked')!r}, 'a').write(address + '\\n')\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# --------------------------------------------------------------------------
# right password, from each source


async def test_right_password_from_the_settings(stack, auth_registry, private_image, tmp_path):
    ref = private_image()
    async with engine_with(stack, CredentialStore([auth_registry.login()], docker_config=str(tmp_path))) as e:
        events = await pull(e, ref)
    assert events[-1].status == f"Status: Downloaded newer image for {ref}"
    assert image_exists(stack, ref)


async def test_right_password_from_what_docker_login_wrote(stack, auth_registry, private_image):
    written = json.loads((Path(auth_registry.cli_config) / "config.json").read_text())
    assert auth_registry.address in written["auths"], written  # the CLI's own format is what is read
    ref = private_image()
    async with engine_with(stack, CredentialStore(docker_config=auth_registry.cli_config)) as e:
        events = await pull(e, ref)
    assert events[-1].status == f"Status: Downloaded newer image for {ref}"


async def test_right_password_from_a_credential_helper(stack, auth_registry, private_image, tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "dockhandtest",
                f'print(json.dumps({{"ServerURL": address, "Username": {USER!r}, "Secret": {PASSWORD!r}}}))\n')
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "dockhandtest"}))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    ref = private_image()
    async with engine_with(stack, CredentialStore(docker_config=str(cfg), environ=env)) as e:
        events = await pull(e, ref)
    assert events[-1].status == f"Status: Downloaded newer image for {ref}"
    assert (bin_dir / "asked").read_text().splitlines() == [auth_registry.address]


# --------------------------------------------------------------------------
# wrong password, none


async def test_wrong_password_is_refused_with_a_hint_naming_the_settings(stack, auth_registry, private_image, tmp_path):
    ref = private_image()
    wrong = "Wrong-" + secrets.token_urlsafe(12)
    async with engine_with(stack, CredentialStore([auth_registry.login(wrong)], docker_config=str(tmp_path))) as e:
        with pytest.raises(E.RegistryUnauthorized) as info:
            await pull(e, ref)
    assert info.value.message == f"{DAEMON}unauthorized: authentication required"
    assert info.value.hint.startswith(f"The registry refused the credentials Dockhand sent for "
                                      f"{auth_registry.address} (from the DOCKHAND_REGISTRY_PRIV_* settings)")
    assert_never_shown("the error", info.value.message + info.value.hint, wrong)
    assert not image_exists(stack, ref)


async def test_wrong_password_from_the_docker_config_names_the_file(stack, auth_registry, private_image, tmp_path):
    ref = private_image()
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {auth_registry.address: {"auth": base64.b64encode(f"{USER}:nope".encode()).decode()}}}))
    async with engine_with(stack, CredentialStore(docker_config=str(tmp_path))) as e:
        with pytest.raises(E.RegistryUnauthorized) as info:
            await pull(e, ref)
    assert f"(from auths['{auth_registry.address}'] in {tmp_path / 'config.json'})" in info.value.hint


async def test_no_password_is_refused_with_a_hint_saying_where_to_put_one(stack, auth_registry, private_image,
                                                                          tmp_path):
    ref = private_image()
    repo, tag = ref.rsplit(":", 1)
    async with engine_with(stack, CredentialStore(docker_config=str(tmp_path))) as e:
        with pytest.raises(E.RegistryUnauthorized) as info:
            await pull(e, ref)
    path = repo.split("/", 1)[1]
    assert info.value.message == (f'{DAEMON}Head "http://{auth_registry.address}/v2/{path}/manifests/{tag}": '
                                  "no basic auth credentials")
    hint = info.value.hint
    assert f"Dockhand sent no credentials for {auth_registry.address}" in hint
    assert f"DOCKHAND_REGISTRY_<NAME>_HOST={auth_registry.address} with _USERNAME and _PASSWORD" in hint
    assert f"`docker login {auth_registry.address}` as the user Dockhand runs as ({tmp_path / 'config.json'})" in hint


async def test_a_broken_helper_still_pulls_public_images_and_is_named_when_refused(stack, auth_registry,
                                                                                   private_image, tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "broken", 'print("the keyring is locked"); sys.exit(1)\n')
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "broken"}))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    ref = private_image()
    async with engine_with(stack, CredentialStore(docker_config=str(cfg), environ=env)) as e:
        # as the CLI: a registry that needs nothing is pulled from all the same
        events = await pull(e, f"{stack.registry}/dockhand/hello-world:latest")
        assert events[-1].status.startswith("Status: ")
        with pytest.raises(E.RegistryUnauthorized) as info:
            await pull(e, ref)
    assert info.value.hint.startswith(
        f"Dockhand could not get credentials for {auth_registry.address}: docker-credential-broken get failed "
        "(exit status 1): the keyring is locked.")


# --------------------------------------------------------------------------
# never shown


async def test_the_shell_never_shows_the_password(stack, auth_registry, private_image, tmp_path, caplog):
    """Everything a succeeding and a failing pull produce in the shell: the
    printed reply, every log record (DEBUG), the audit log."""
    from bot.shell import run_once
    from bot.wiring import build_services, close_services

    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-" + secrets.token_urlsafe(12)
    outputs = []
    for password, expect in ((PASSWORD, 0), (wrong, 1)):
        ref = private_image()
        settings = Settings(docker_host=stack.docker_host, state_dir=str(tmp_path / "state"),
                            docker_config=str(tmp_path / "no-docker-config"),
                            registry_logins=(auth_registry.login(password),))
        services = build_services(settings)
        out, err = io.StringIO(), io.StringIO()
        try:
            status = await run_once(services, f"docker pull {ref}", out, err)
            help_status = await run_once(services, "docker pull --help", out, err)
        finally:
            await close_services(services)
        assert (status, help_status) == (expect, 0), err.getvalue()
        outputs.append(out.getvalue() + err.getvalue())
        for where, text in (("the shell's output", outputs[-1]), ("repr(settings)", repr(settings)),
                            ("repr(engine)", repr(services.engine))):
            assert_never_shown(where, text, password)
    assert "Status: Downloaded newer image" in outputs[0]
    assert "unauthorized: authentication required" in outputs[1]
    assert "DOCKHAND_REGISTRY_PRIV_*" in outputs[1]
    audit = (tmp_path / "state" / "audit.jsonl").read_text()
    assert audit.count('"pull"') >= 2 or audit.count("docker pull") >= 2, audit[:500]
    logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    for password in (PASSWORD, wrong):
        assert_never_shown("the audit log", audit, password)
        assert_never_shown("the log records", logs, password)


def test_the_command_line_help_never_shows_the_password(tmp_path):
    env = {**os.environ, "DOCKHAND_REGISTRY_PRIV_HOST": "reg.example", "DOCKHAND_REGISTRY_PRIV_USERNAME": USER,
           "DOCKHAND_REGISTRY_PRIV_PASSWORD": PASSWORD}
    for args in (["--help"], ["shell", "--help"], ["slack", "--help"]):
        r = subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env,
                           cwd=Path(__file__).resolve().parents[2], timeout=60)
        assert r.returncode == 0, r.stderr
        assert_never_shown(f"dockhand {' '.join(args)}", r.stdout + r.stderr)
    # a start-up problem in the same group names the variable, not the value
    env["DOCKHAND_REGISTRY_PRIV_PASSWORD_FILE"] = str(tmp_path / "nothing")
    r = subprocess.run([sys.executable, "-m", "bot", "shell", "-c", "docker version"], capture_output=True,
                       text=True, env=env, cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert r.returncode == 2 and "DOCKHAND_REGISTRY_PRIV: set _PASSWORD or _PASSWORD_FILE, not both" in r.stderr
    assert_never_shown("a start-up problem", r.stdout + r.stderr)


async def test_slack_never_shows_the_password(slack_app, engine_services, fake_slack, auth_registry, private_image,
                                              tmp_path, caplog, stack):
    """A pull through the signed /pull path, right password then wrong: every
    Web API call and response_url message, every log record, the audit log."""
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-" + secrets.token_urlsafe(12)
    good, bad = private_image(), private_image()
    h = await slack_app(engine_services(operators=frozenset({"UALICE"}), docker_config=str(tmp_path / "none"),
                                        registry_logins=(auth_registry.login(),)))
    await h.command("/pull", good)
    await fake_slack.wait_for("api", "chat.update", where=lambda c: "pulled" in c.text, timeout=60)
    assert image_exists(stack, good)
    services = h.services
    h2 = await slack_app(replace(services, engine=DockerEngine(
        stack.docker_host, credentials=CredentialStore([auth_registry.login(wrong)], docker_config=str(tmp_path)))))
    await h2.command("/pull", bad)
    final = await fake_slack.wait_for("api", "chat.update", where=lambda c: "could not pull" in c.text, timeout=60)
    assert "unauthorized" in final[0].text and "DOCKHAND_REGISTRY_PRIV_*" in final[0].text
    await asyncio.sleep(0.5)  # the thread record and any audit copy
    sent = json.dumps([{"kind": c.kind, "name": c.name, "body": c.body} for c in fake_slack.activity()])
    audit = (tmp_path / "state" / "audit.jsonl").read_text()
    logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    for password in (PASSWORD, wrong):
        assert_never_shown("what was sent to Slack", sent, password)
        assert_never_shown("the audit log", audit, password)
        assert_never_shown("the log records", logs, password)


class EchoingRegistry:
    """A registry that asks for Basic credentials and then answers the
    manifest with an error quoting what it was sent: password, the base64
    pair and the whole header (a careless or hostile registry)."""

    def __init__(self):
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        manifest = b'{"schemaVersion": 2}'
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.seen_auth: list[str] = []
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                header = self.headers.get("Authorization", "")
                challenge = {"WWW-Authenticate": 'Basic realm="echo"'}
                if not header or self.path.rstrip("/") == "/v2":
                    self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"login first"}]}', challenge)
                    return
                reg.seen_auth.append(header)
                if self.command == "HEAD":
                    self._send(200, manifest, {"Docker-Content-Digest": digest,
                                               "Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
                    return
                pair = base64.b64decode(header.split(" ", 1)[1]).decode()
                message = f"password {pair.split(':', 1)[1]} refused (pair {header.split(' ', 1)[1]}; {pair})"
                self._send(401, json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": message}]}).encode(),
                           challenge)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


async def test_registry_error_text_is_scrubbed(stack, tmp_path):
    """A registry that quotes the credentials back: the engine passes its words
    on in the pull's error, and the adapter takes every form of them out."""
    reg = EchoingRegistry()
    try:
        store = CredentialStore([RegistryLogin("ECHO", reg.address, USER, Secret(PASSWORD))],
                                docker_config=str(tmp_path))
        async with engine_with(stack, store) as e:
            with pytest.raises(E.RegistryUnauthorized) as info:
                await pull(e, f"{reg.address}/echo/app:v1")
    finally:
        reg.close()
    assert reg.seen_auth, "the engine sent the credentials"
    # the registry's words reach the person, without the secret in any form
    assert info.value.message == f"{DAEMON}unauthorized: password *** refused (pair ***; {USER}:***)"
    assert_never_shown("the error", info.value.message + info.value.hint)

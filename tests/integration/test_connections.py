"""Engines reached as the docker CLI reaches them, through the real `dockhand` command:

* a SECOND private dockerd on tcp://127.0.0.1:<port> with --tlsverify and certificates made
  here (right certificate; wrong CA; no client certificate; a client certificate from
  another CA), compared with `docker --tlsverify` on the same engine; pulls and batched
  removals over TLS (Dockhand's own sockets);
* contexts made by the real `docker context create` in a temporary DOCKER_CONFIG, chosen by
  DOCKER_CONTEXT and by `docker context use` (currentContext);
* a private sshd on 127.0.0.1 with a generated key whose `docker system dial-stdio` reaches
  the stack's private engine: DOCKER_HOST=ssh://user@127.0.0.1:<port> (paramiko);
* start-up: an explicit engine that does not answer is one line and a non-zero exit, in
  `dockhand shell`, `shell -c` and `slack`, with no SDK log line and no key material.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.fakes.slack_api import SIGNING_SECRET, command_payload, form_body, signed_headers
from tests.fakes.slack_harness import clean_slack_env, fake_slack  # noqa: F401
from tests.integration import remote_engines as R
from tests.integration.shell_helpers import dockhand, dockhand_env, table
from tests.integration.slack.test_slack_process import free_port, start, stop, user_env, wait_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make certificates")

DOCKER_VARS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS", "DOCKER_CONTEXT")


@pytest.fixture(scope="module")
def tls_engine(stack):
    root = R.temp_root("dh-tls-")
    try:
        engine = R.start_tls_engine(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield engine
    finally:
        R.stop_tls_engine(engine)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_image(tls_engine, stack):
    """An image on the TLS engine, pushed there by the docker CLI over TLS."""
    ref = f"dockhand-tls/probe:{uuid.uuid4().hex[:8]}"
    env = R.stackmod.clean_env()
    env.update(tls_engine.env(), DOCKER_CONFIG=str(tls_engine.certs.root / "cli-config"))
    tar = R.stackmod.rootfs_tar({"probe.txt": uuid.uuid4().bytes})
    subprocess.run([R.stackmod.docker_cli(), "import", "-", ref], input=tar, env=env, check=True,
                   capture_output=True, timeout=120)
    yield ref


def env_for(stack, **extra) -> dict:
    env = dockhand_env(stack)
    for k in DOCKER_VARS:
        env.pop(k, None)
    env.update(extra)
    return env


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    assert "Traceback" not in stderr and "PRIVATE KEY" not in stderr
    return lines[0]


def _rows(text: str) -> list[list[str]]:
    """Table rows without the CREATED column (it ages between two commands)."""
    header, rows = table(text)
    keep = [i for i, h in enumerate(header) if h != "CREATED"]
    return sorted([r[i] for i in keep] for r in rows)


# --------------------------------------------------------------------------
# TCP with mutual TLS


def test_right_certificate_images_match_the_docker_cli(stack, tls_engine, tls_image):
    r = dockhand("shell", "-c", "docker images", env=env_for(stack, **tls_engine.env()))
    assert r.returncode == 0, r.stderr
    theirs = tls_engine.docker("images")
    assert _rows(r.stdout) == _rows(theirs.stdout)
    assert tls_image.split(":")[0] in r.stdout
    v = dockhand("shell", "-c", "version", env=env_for(stack, **tls_engine.env()))
    assert v.returncode == 0 and "Server: Docker Engine" in v.stdout
    assert tls_engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip() in v.stdout


def test_pull_and_batched_removal_over_tls(stack, tls_engine):
    """Dockhand's own sockets (the pull's, the batch's) carry the same CA, certificate and key."""
    ref = stack.seed("busybox_136")
    env = env_for(stack, **tls_engine.env())
    pulled = dockhand("shell", "-c", f"pull {ref}", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "Status: Downloaded newer image" in pulled.stdout or "Image is up to date" in pulled.stdout
    assert tls_engine.docker("image", "inspect", ref).returncode == 0
    other = f"{ref}-copy"
    tls_engine.docker("tag", ref, other)
    removed = dockhand("shell", "--yes", "-c", f"rmi {ref} {other}", env=env)
    assert removed.returncode == 0, removed.stderr
    assert f"Untagged: {ref}" in removed.stdout and f"Untagged: {other}" in removed.stdout
    assert tls_engine.docker("image", "inspect", ref, check=False).returncode != 0
    assert stack.docker("image", "inspect", ref, check=False).returncode == 0  # the other engine untouched


def test_docker_run_over_tls(stack, tls_engine, tls_image):
    """`docker run` builds a client of its own for the container's life: with the same TLS."""
    r = dockhand("shell", "-c", f"run {tls_image} echo hello-over-tls", env=env_for(stack, **tls_engine.env()))
    assert r.returncode == 0, r.stderr
    assert "hello-over-tls" in r.stdout
    assert tls_engine.docker("ps", "-a", "-q").stdout.strip() == ""  # the container was removed


def test_wrong_ca_is_one_line_and_a_failure(stack, tls_engine):
    r = dockhand("shell", "-c", "images", env=env_for(stack, **tls_engine.env(tls_engine.certs.wrong_ca)))
    assert r.returncode == 1 and r.stdout == ""
    assert one_line(r.stderr) == (
        f"dockhand: No Docker Engine answered at {tls_engine.url} (DOCKER_HOST): TLS: the engine's certificate "
        "is not signed by the CA Dockhand was given (unable to get local issuer certificate)")


def test_no_client_certificate_is_one_line_and_a_failure(stack, tls_engine):
    env = env_for(stack, **tls_engine.env(tls_engine.certs.no_cert))
    for args in (("shell", "-c", "images"), ("shell",)):
        r = dockhand(*args, env=env, input="images\n")
        assert r.returncode == 1
        line = one_line(r.stderr)
        assert line.startswith(f"dockhand: No Docker Engine answered at {tls_engine.url} (DOCKER_HOST): TLS: the "
                               "engine refused the client certificate (")
        assert line.endswith(f"no client certificate was given (DOCKER_CERT_PATH={tls_engine.certs.no_cert} "
                             "has no cert.pem and key.pem)")
        assert "Dockhand shell on" not in r.stdout  # no prompt before the engine answered


def test_a_client_certificate_from_another_ca_is_refused_in_one_line(stack, tls_engine):
    r = dockhand("shell", "-c", "images", env=env_for(stack, **tls_engine.env(tls_engine.certs.stranger)))
    assert r.returncode == 1
    assert "did not accept the client certificate" in one_line(r.stderr) or \
        "refused the client certificate" in one_line(r.stderr)


def test_docker_tls_without_verify_works_and_warns_once(stack, tls_engine, tls_image):
    """DOCKER_TLS=1 is the CLI's TLS without verifying the engine: the wrong CA is not checked,
    the client certificate still is (by the engine). One warning line, no urllib3 warnings."""
    env = env_for(stack, DOCKER_HOST=tls_engine.url, DOCKER_TLS="1",
                  DOCKER_CERT_PATH=str(tls_engine.certs.wrong_ca))
    r = dockhand("shell", "-c", "images", env=env)
    assert r.returncode == 0 and tls_image.split(":")[0] in r.stdout
    assert one_line(r.stderr) == (f"dockhand: warning: TLS to {tls_engine.url} does not verify the engine's "
                                  f"certificate (DOCKER_CERT_PATH={tls_engine.certs.wrong_ca}); set "
                                  "DOCKER_TLS_VERIFY=1 to verify it")


def test_plain_http_to_a_tls_engine_says_to_turn_tls_on(stack, tls_engine):
    r = dockhand("shell", "-c", "images", env=env_for(stack, DOCKER_HOST=tls_engine.url))
    assert r.returncode == 1
    assert one_line(r.stderr).endswith("the engine speaks TLS and Dockhand did not: set DOCKER_TLS_VERIFY=1 "
                                       "and DOCKER_CERT_PATH")


def test_tls_settings_problems_are_one_line_each_before_anything_runs(stack, tls_engine, tmp_path):
    r = dockhand("shell", "-c", "images", env=env_for(stack, **tls_engine.env(tmp_path)))
    assert r.returncode == 2
    assert one_line(r.stderr).startswith(f"dockhand: DOCKER_TLS_VERIFY is set but {tmp_path} has no ca.pem")
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tls_engine.certs.good / "ca.pem", bad / "ca.pem")
    shutil.copy(tls_engine.certs.good / "cert.pem", bad / "cert.pem")
    shutil.copy(tls_engine.certs.stranger / "key.pem", bad / "key.pem")
    key_body = (bad / "key.pem").read_text().splitlines()[1]
    r = dockhand("shell", "-c", "images", env=env_for(stack, **tls_engine.env(bad)))
    assert r.returncode == 2 and "are not a certificate and its private key" in one_line(r.stderr)
    assert key_body not in r.stderr


async def test_slack_mode_stops_at_start_when_the_engine_refuses(fake_slack, stack, tls_engine, tmp_path):
    env = user_env(fake_slack, stack, PORT=str(free_port()), **tls_engine.env(tls_engine.certs.wrong_ca))
    proc = await start(env, tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert one_line(err.decode()).startswith(f"dockhand: No Docker Engine answered at {tls_engine.url} "
                                             "(DOCKER_HOST): TLS:")
    assert fake_slack.find() == []  # stopped before Slack was even asked


async def test_slack_mode_serves_a_tls_engine(fake_slack, stack, tls_engine, tls_image, tmp_path):
    import aiohttp

    port = free_port()
    proc = await start(user_env(fake_slack, stack, PORT=str(port), **tls_engine.env()), tmp_path)
    try:
        await wait_port(port, proc)
        rid = uuid.uuid4().hex[:12]
        body = form_body(command_payload("/images", "", response_url=fake_slack.response_url(rid)))
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                    headers=signed_headers(SIGNING_SECRET, body)) as r:
                assert r.status == 200
        reply = (await fake_slack.wait_for("response", rid, timeout=30))[0]
        assert tls_image.split(":")[0] in reply.text
        assert str(tls_engine.certs.root) not in str(reply.body)  # no certificate path in Slack
    finally:
        code, err = await stop(proc)
    assert code == 0 and "Traceback" not in err


# --------------------------------------------------------------------------
# contexts, made by the docker CLI itself


@pytest.fixture
def cli_contexts(tls_engine, tmp_path) -> Path:
    config = tmp_path / "docker-config"
    config.mkdir()
    good = tls_engine.certs.good
    env = R.stackmod.clean_env()
    env["DOCKER_CONFIG"] = str(config)
    for name, spec in (("tls-engine", f"host={tls_engine.url},ca={good}/ca.pem,cert={good}/cert.pem,"
                                      f"key={good}/key.pem"),
                       ("wrong-ca", f"host={tls_engine.url},ca={tls_engine.certs.wrong_ca}/ca.pem,"
                                    f"cert={good}/cert.pem,key={good}/key.pem")):
        subprocess.run([R.stackmod.docker_cli(), "context", "create", name, "--docker", spec], env=env,
                       check=True, capture_output=True, timeout=60)
    return config


def test_docker_context_selects_a_cli_made_context(stack, tls_engine, tls_image, cli_contexts):
    r = dockhand("shell", "-c", "docker images",
                 env=env_for(stack, DOCKER_CONFIG=str(cli_contexts), DOCKER_CONTEXT="tls-engine"))
    assert r.returncode == 0, r.stderr
    assert _rows(r.stdout) == _rows(tls_engine.docker("images").stdout)
    r = dockhand("shell", "-c", "images", env=env_for(stack, DOCKER_CONFIG=str(cli_contexts),
                                                      DOCKER_CONTEXT="wrong-ca"))
    assert r.returncode == 1
    assert one_line(r.stderr).startswith(f"dockhand: No Docker Engine answered at {tls_engine.url} "
                                         "(DOCKER_CONTEXT=wrong-ca): TLS: the engine's certificate is not signed")


def test_the_current_context_is_used_and_docker_host_wins_over_it(stack, tls_engine, tls_image, cli_contexts):
    env = R.stackmod.clean_env()
    env["DOCKER_CONFIG"] = str(cli_contexts)
    subprocess.run([R.stackmod.docker_cli(), "context", "use", "tls-engine"], env=env, check=True,
                   capture_output=True, timeout=60)
    r = dockhand("shell", "-c", "images", env=env_for(stack, DOCKER_CONFIG=str(cli_contexts)))
    assert r.returncode == 0, r.stderr
    assert tls_image.split(":")[0] in r.stdout
    # DOCKER_HOST is the "default" context: it wins over the current one, as for the CLI
    r = dockhand("shell", "-c", "images", env=env_for(stack, DOCKER_CONFIG=str(cli_contexts),
                                                      DOCKER_HOST=stack.docker_host))
    assert r.returncode == 0 and tls_image.split(":")[0] not in r.stdout
    assert _rows(r.stdout) == _rows(stack.docker("images").stdout)


def test_an_unknown_context_is_one_line(stack, cli_contexts):
    r = dockhand("slack", env=env_for(stack, DOCKER_CONFIG=str(cli_contexts), DOCKER_CONTEXT="prod",
                                      SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s"))
    assert r.returncode == 2
    assert one_line(r.stderr) == (f"dockhand: DOCKER_CONTEXT=prod: no context named 'prod' in "
                                  f"{cli_contexts / 'contexts'} (`docker context ls` lists them)")


# --------------------------------------------------------------------------
# ssh


@pytest.fixture(scope="module")
def sshd(stack):
    if R.sshd_binary() is None:
        pytest.fail("sshd is missing: run scripts/setup --engine (Debian package openssh-server)")
    root = R.temp_root("dh-ssh-")
    server = R.start_sshd(root, stack.docker_host)  # dial-stdio reaches the stack's private engine
    try:
        yield server
    finally:
        R.stop_sshd(server)
        shutil.rmtree(root, ignore_errors=True)


def test_ssh_images_match_the_engine_behind_it(stack, sshd):
    r = dockhand("shell", "-c", "docker images", env=env_for(stack, **sshd.env()))
    assert r.returncode == 0, r.stderr
    assert _rows(r.stdout) == _rows(stack.docker("images").stdout)
    # no paramiko log line; the stack's engine is the sample engine, and says so
    assert [line for line in r.stderr.splitlines() if not line.startswith("[Dockhand's sample engine")] == []


def test_pull_and_removal_over_ssh(stack, sshd):
    """ssh has no socket of Dockhand's own: the pull and the batch go through docker-py's channel."""
    ref = stack.seed("pullme_v2")
    stack.docker("rmi", ref, check=False)
    env = env_for(stack, **sshd.env())
    try:
        pulled = dockhand("shell", "-c", f"pull {ref}", env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert "Status: Downloaded newer image" in pulled.stdout and "Pull complete" in pulled.stdout
        assert stack.docker("image", "inspect", ref).returncode == 0
        removed = dockhand("shell", "--yes", "-c", f"rmi {ref}", env=env)
        assert removed.returncode == 0, removed.stderr
        assert f"Untagged: {ref}" in removed.stdout
        assert stack.docker("image", "inspect", ref, check=False).returncode != 0
    finally:
        stack.docker("rmi", ref, check=False)


def test_docker_run_over_ssh(stack, sshd):
    """The run's own client opens its own ssh session, with the same settings."""
    r = dockhand("shell", "-c", f"run {stack.seed('busybox_136')} echo hello-over-ssh", env=env_for(stack, **sshd.env()))
    assert r.returncode == 0, r.stderr
    assert "hello-over-ssh" in r.stdout


def test_ssh_failures_are_one_line(stack, sshd, tmp_path):
    unknown_host = tmp_path / "unknown-host"
    (unknown_host / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.home / ".ssh" / "config", unknown_host / ".ssh" / "config")
    wrong_key = tmp_path / "wrong-key"
    (wrong_key / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.home / ".ssh" / "known_hosts", wrong_key / ".ssh" / "known_hosts")
    (wrong_key / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {sshd.root / 'host_key'}\n")
    cases = [
        (unknown_host, sshd.url, "not found in known_hosts"),
        (wrong_key, sshd.url, "the server refused every key offered"),
        (sshd.home, f"ssh://{sshd.user}@127.0.0.1:{R.stackmod.free_port()}", "ssh: Connection refused"),
    ]
    for home, url, words in cases:
        r = dockhand("shell", "-c", "images", env=env_for(stack, HOME=str(home), DOCKER_HOST=url))
        assert r.returncode == 1
        line = one_line(r.stderr)
        assert line.startswith(f"dockhand: No Docker Engine answered at {url} (DOCKER_HOST): ssh: ") and words in line


# --------------------------------------------------------------------------
# an explicit engine that is down


def test_an_explicit_engine_that_is_down_stops_every_mode(stack, tmp_path):
    host = f"tcp://127.0.0.1:{R.stackmod.free_port()}"
    for args in (("shell", "-c", "images"), ("shell",), ("slack",)):
        extra = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                 "SLACK_API_URL": "http://127.0.0.1:9/api/"} if args[0] == "slack" else {}
        r = dockhand(*args, env=env_for(stack, DOCKER_HOST=host, **extra), input="images\n")
        assert r.returncode == 1, (args, r.stderr)
        assert one_line(r.stderr) == f"dockhand: No Docker Engine answered at {host} (DOCKER_HOST): Connection refused"


@pytest.mark.parametrize("status, headers, words", [
    ("404 Not Found", "", "it answered 404 Not Found to GET /_ping: not a Docker Engine API"),
    # a web server that answers everything: 200, but none of an engine's headers
    ("200 OK", "", "it answered 200 OK to GET /_ping: not a Docker Engine API"),
])
def test_something_else_on_the_port_is_not_taken_for_an_engine(stack, status, headers, words):
    """The start-up check asks GET /_ping (what the docker CLI asks first): an
    HTTP server that is not an engine is refused in one line, before anything."""
    import http.server
    import threading

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            body = b"OK" if status.startswith("200") else b"not here"
            self.send_response(int(status.split()[0]))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"tcp://127.0.0.1:{server.server_address[1]}"
    try:
        r = dockhand("shell", "-c", "images", env=env_for(stack, DOCKER_HOST=host))
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 1 and r.stdout == ""
    assert one_line(r.stderr) == f"dockhand: No Docker Engine answered at {host} (DOCKER_HOST): {words}"


# --------------------------------------------------------------------------
# scripts/run picks the engine as Dockhand does


def test_scripts_run_reaches_a_tls_engine_and_a_current_context(stack, tls_engine, tls_image, cli_contexts):
    """Its probe uses Dockhand's own resolution: TLS files (REQUESTS_CA_BUNDLE cannot replace the CA), and
    the docker config's current context counts as a choice (no sample engine started in its place)."""
    from tests.integration.test_run_script import run_env, scripts_run, unused_stack_dir

    d = unused_stack_dir()
    r = scripts_run("shell", "-c", "images", env=run_env(DOCKHAND_STACK_DIR=d, **tls_engine.env()))
    assert r.returncode == 0, r.stderr
    assert tls_image.split(":")[0] in r.stdout and not os.path.exists(d)
    env = R.stackmod.clean_env()
    env["DOCKER_CONFIG"] = str(cli_contexts)
    subprocess.run([R.stackmod.docker_cli(), "context", "use", "wrong-ca"], env=env, check=True,
                   capture_output=True, timeout=60)
    r = scripts_run("shell", "-c", "images", env=run_env(DOCKHAND_STACK_DIR=d, DOCKER_CONFIG=str(cli_contexts)))
    assert r.returncode == 1 and not os.path.exists(d)
    assert one_line(r.stderr).startswith(f"dockhand: No Docker Engine answered at {tls_engine.url} (context wrong-ca")

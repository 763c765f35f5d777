"""bot/connection.py: where the engine is and how to reach it, as the docker CLI resolves it.

The context store's layout used here (meta/<sha256>/meta.json, tls/<sha256>/docker/*.pem)
is the one the real `docker context create` writes: tests/integration/test_connections.py
checks Dockhand against contexts made by the CLI itself.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
from pathlib import Path

import paramiko
import pytest

from bot.config import ConfigError, load_settings
from bot.connection import (
    DEFAULT_UNIX_HOST,
    SOURCE_DEFAULT,
    ConnectionProblem,
    EngineTarget,
    TLSFiles,
    context_id,
    from_context,
    parse_host,
    resolve,
    target_for,
)
from bot.engine_check import unanswered
from bot.engine_errors import map_error
from handlers import errors as E

# --------------------------------------------------------------------------
# hosts, with the CLI's rules (opts/hosts.go)


@pytest.mark.parametrize("value, url", [
    ("", DEFAULT_UNIX_HOST),
    ("unix://", DEFAULT_UNIX_HOST),
    ("unix:///run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock"),
    ("tcp://", "tcp://localhost:2375"),
    ("tcp://engine.example", "tcp://engine.example:2375"),  # the CLI's default port, TLS or not
    ("tcp://10.0.0.5:2376", "tcp://10.0.0.5:2376"),
    ("tcp://10.0.0.5:2376/", "tcp://10.0.0.5:2376"),
    ("tcp://:2376", "tcp://localhost:2376"),
    ("engine.example:2376", "tcp://engine.example:2376"),  # host:port is TCP for the CLI
    ("tcp://[::1]:2376", "tcp://[::1]:2376"),
    ("ssh://deploy@build-1", "ssh://deploy@build-1"),
    ("ssh://deploy@build-1:2222", "ssh://deploy@build-1:2222"),
    ("  tcp://h:1  ", "tcp://h:1"),
])
def test_hosts_are_read_as_the_cli_reads_them(value, url):
    assert parse_host(value) == url


def test_the_default_with_tls_and_no_host_is_the_tls_port():
    assert parse_host("", tls=True) == "tcp://localhost:2376"


@pytest.mark.parametrize("value, words", [
    ("/var/run/docker.sock", "has no scheme: use unix:///var/run/docker.sock"),
    ("tcp://h:99999", "invalid port"),
    ("tcp://h:port", "invalid port"),
    ("tcp://h:2376/v1.41", "no path"),
    ("http://h:2375", "does not take http://"),
    ("https://h:2376", "DOCKER_TLS_VERIFY=1"),
    ("fd://", "not a way to reach an engine"),
    ("gopher://h", "unknown scheme"),
    ("ssh://", "names no host"),
    ("ssh://deploy@h/srv", "takes no path"),
    ("unix://x://y", "not a unix socket address"),
])
def test_malformed_hosts_are_one_line_naming_the_variable(value, words):
    with pytest.raises(ConnectionProblem) as info:
        parse_host(value)
    text = str(info.value)
    assert words in text and text.startswith("DOCKER_HOST=") and "\n" not in text


def test_a_password_in_an_ssh_address_is_refused_without_showing_it():
    with pytest.raises(ConnectionProblem) as info:
        parse_host("ssh://deploy:hunter2@h")
    assert "password" in str(info.value)
    # the value is shown as typed (it names what to fix); keys are never read into messages
    assert "use a key" in str(info.value)


# --------------------------------------------------------------------------
# precedence: DOCKER_HOST > DOCKER_CONTEXT > currentContext > default socket


def _context(config: Path, name: str, host: str, *, skip_verify: bool = False, tls: dict | None = None) -> None:
    """A context laid out as `docker context create` lays it out."""
    ident = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / ident
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}))
    if tls:
        d = config / "contexts" / "tls" / ident / "docker"
        d.mkdir(parents=True)
        for fname, text in tls.items():
            (d / fname).write_text(text)


@pytest.fixture
def config(tmp_path) -> Path:
    c = tmp_path / "docker-config"
    c.mkdir()
    _context(c, "staging", "tcp://staging.example:2375")
    _context(c, "builder", "ssh://deploy@builder.example")
    (c / "config.json").write_text(json.dumps({"auths": {}, "currentContext": "builder"}))
    return c


def test_context_ids_are_the_sha256_of_the_name():
    assert context_id("default") == hashlib.sha256(b"default").hexdigest()


def test_docker_host_wins_over_every_context(config):
    t = resolve({"DOCKER_CONFIG": str(config), "DOCKER_HOST": "tcp://h:2375", "DOCKER_CONTEXT": "staging"})
    assert (t.url, t.source, t.explicit) == ("tcp://h:2375", "DOCKER_HOST", True)


def test_docker_context_wins_over_the_current_context(config):
    t = resolve({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "staging"})
    assert (t.url, t.source, t.tls) == ("tcp://staging.example:2375", "DOCKER_CONTEXT=staging", None)


def test_the_current_context_of_the_config_is_used_last(config):
    t = resolve({"DOCKER_CONFIG": str(config)})
    assert t.url == "ssh://deploy@builder.example" and t.explicit
    assert t.source.startswith("context builder (currentContext of ") and str(config) in t.source


def test_docker_context_default_means_the_plain_settings(config):
    t = resolve({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"})
    assert (t.url, t.source) == (DEFAULT_UNIX_HOST, "DOCKER_CONTEXT=default")


def test_nothing_set_is_the_default_socket_and_not_explicit(tmp_path):
    t = resolve({"DOCKER_CONFIG": str(tmp_path)})
    assert (t.url, t.source, t.explicit, t.tls) == (DEFAULT_UNIX_HOST, SOURCE_DEFAULT, False, None)


def test_an_unknown_context_is_one_line(config):
    with pytest.raises(ConnectionProblem) as info:
        resolve({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "prod"})
    assert str(info.value) == (f"DOCKER_CONTEXT=prod: no context named 'prod' in {config / 'contexts'} "
                               "(`docker context ls` lists them)")
    (config / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    with pytest.raises(ConnectionProblem) as info:
        resolve({"DOCKER_CONFIG": str(config)})
    assert "no context named 'gone'" in str(info.value) and "currentContext" in str(info.value)


def test_a_broken_context_is_one_line(config):
    ident = hashlib.sha256(b"broken").hexdigest()
    (config / "contexts" / "meta" / ident).mkdir(parents=True)
    (config / "contexts" / "meta" / ident / "meta.json").write_text("{not json")
    with pytest.raises(ConnectionProblem, match="is not valid JSON"):
        from_context("broken", config)
    (config / "contexts" / "meta" / ident / "meta.json").write_text(json.dumps({"Name": "broken", "Endpoints": {}}))
    with pytest.raises(ConnectionProblem, match="has no docker endpoint"):
        from_context("broken", config)


# --------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from tests.integration.remote_engines import make_certs

    return make_certs(tmp_path_factory.mktemp("certs"))


def _env(cert_dir, **extra) -> dict:
    return {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_dir),
            **extra}


def test_tls_from_the_environment_as_the_cli_reads_it(certs):
    t = resolve(_env(certs.good))
    assert t.tls == TLSFiles(ca=str(certs.good / "ca.pem"), cert=str(certs.good / "cert.pem"),
                             key=str(certs.good / "key.pem"), verify=True,
                             origin=f"DOCKER_CERT_PATH={certs.good}")
    assert t.problems() == []
    ctx = t.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    kwargs = t.docker_py_kwargs()
    assert kwargs["base_url"] == "tcp://127.0.0.1:2376"
    assert kwargs["tls"].verify == str(certs.good / "ca.pem")
    assert kwargs["tls"].cert == (str(certs.good / "cert.pem"), str(certs.good / "key.pem"))


def test_any_non_empty_tls_verify_turns_tls_on_and_empty_does_not(certs):
    assert resolve(_env(certs.good, DOCKER_TLS_VERIFY="0")).tls.verify  # as the CLI: non-empty is on
    assert resolve(_env(certs.good, DOCKER_TLS_VERIFY="")).tls is None
    # DOCKER_CERT_PATH alone does not turn TLS on (the CLI's rule)
    assert resolve({"DOCKER_HOST": "tcp://h:2376", "DOCKER_CERT_PATH": str(certs.good)}).tls is None


def test_docker_tls_without_verify_is_tls_that_does_not_check_the_engine(certs):
    t = resolve({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(certs.good)})
    assert t.tls is not None and not t.tls.verify
    assert t.ssl_context().verify_mode == ssl.CERT_NONE
    assert t.docker_py_kwargs()["tls"].verify is False


def test_tls_is_for_tcp_only(certs):
    for host in ("unix:///tmp/x.sock", "ssh://u@h"):
        t = resolve(_env(certs.good, DOCKER_HOST=host))
        assert t.tls is None and t.ssl_context() is None and "tls" not in t.docker_py_kwargs()


def test_no_client_certificate_is_allowed_as_for_the_cli(certs):
    t = resolve(_env(certs.no_cert))
    assert (t.tls.cert, t.tls.key) == ("", "") and t.problems() == []
    assert t.docker_py_kwargs()["tls"].cert is None


def test_tls_verify_without_certificates_is_one_line(tmp_path):
    with pytest.raises(ConnectionProblem) as info:
        resolve(_env(tmp_path))
    assert str(info.value).startswith(f"DOCKER_TLS_VERIFY is set but {tmp_path} has no ca.pem")
    with pytest.raises(ConnectionProblem, match="is not a directory"):
        resolve(_env(tmp_path / "nowhere"))
    # no DOCKER_CERT_PATH: the docker config directory, as the CLI
    with pytest.raises(ConnectionProblem, match=f"{tmp_path} has no ca.pem"):
        resolve({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": str(tmp_path)})


def test_a_certificate_without_its_key_is_one_line(certs, tmp_path):
    (tmp_path / "ca.pem").write_bytes((certs.good / "ca.pem").read_bytes())
    (tmp_path / "cert.pem").write_bytes((certs.good / "cert.pem").read_bytes())
    with pytest.raises(ConnectionProblem, match="has cert.pem but no key.pem: a client certificate needs both"):
        resolve(_env(tmp_path))


SECRET = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg-do-not-show"


def test_bad_files_are_named_and_keys_never_shown(certs, tmp_path):
    for name in ("ca.pem", "cert.pem"):
        (tmp_path / name).write_bytes((certs.good / name).read_bytes())
    (tmp_path / "key.pem").write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n")
    problems = resolve(_env(tmp_path)).problems()
    assert len(problems) == 1 and "are not a certificate and its private key" in problems[0]
    assert SECRET not in problems[0] and "BEGIN" not in problems[0]
    # another key than the certificate's
    (tmp_path / "key.pem").write_bytes((certs.stranger / "key.pem").read_bytes())
    problems = resolve(_env(tmp_path)).problems()
    assert len(problems) == 1 and "key values mismatch" in problems[0]
    # an encrypted key: refused (the CLI refuses them too), never a pass-phrase prompt
    subprocess.run(["openssl", "pkey", "-in", str(certs.good / "key.pem"), "-out", str(tmp_path / "key.pem"),
                    "-aes256", "-passout", "pass:secret"], check=True, capture_output=True)
    problems = resolve(_env(tmp_path)).problems()
    assert len(problems) == 1 and "is an encrypted private key" in problems[0]
    # a CA that is not a certificate
    (tmp_path / "key.pem").write_bytes((certs.good / "key.pem").read_bytes())
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    problems = resolve(_env(tmp_path)).problems()
    assert len(problems) == 1 and "is not a PEM CA certificate" in problems[0]


def test_a_context_takes_tls_from_its_own_store(certs, tmp_path):
    files = {n: (certs.good / n).read_text() for n in ("ca.pem", "cert.pem", "key.pem")}
    _context(tmp_path, "prod", "tcp://prod.example:2376", tls=files)
    t = from_context("prod", tmp_path)
    ident = hashlib.sha256(b"prod").hexdigest()
    assert t.tls.verify and t.tls.ca == str(tmp_path / "contexts" / "tls" / ident / "docker" / "ca.pem")
    assert t.problems() == []
    # no TLS files: plain HTTP, as the CLI; SkipTLSVerify alone: TLS without verification
    _context(tmp_path, "plain", "tcp://plain.example:2375")
    assert from_context("plain", tmp_path).tls is None
    _context(tmp_path, "insecure", "tcp://i.example:2376", skip_verify=True)
    assert from_context("insecure", tmp_path).tls == TLSFiles(verify=False, origin="context insecure")
    # a CA alone: the engine is verified, no client certificate
    _context(tmp_path, "ca-only", "tcp://c.example:2376", tls={"ca.pem": files["ca.pem"]})
    t = from_context("ca-only", tmp_path)
    assert t.tls.verify and t.tls.ca and not t.tls.cert


def test_named_targets_are_built_per_target(certs, config):
    env = {"DOCKER_CONFIG": str(config)}
    assert target_for("web-1", "unix:///run/docker.sock", env=env) == EngineTarget(
        "unix:///run/docker.sock", source="web-1")
    tls = target_for("db-1", "tcp://10.0.0.7:2376", env=env, cert_path=str(certs.good))
    assert tls.tls.verify and tls.tls.cert.endswith("cert.pem") and tls.source == "db-1"
    assert target_for("ci", "context:staging", env=env).url == "tcp://staging.example:2375"
    assert target_for("b", "ssh://deploy@b", env=env).docker_py_kwargs() == {
        "base_url": "ssh://deploy@b", "use_ssh_client": False}
    with pytest.raises(ConnectionProblem, match="^web-2="):
        target_for("web-2", "http://x:1", env=env)


# --------------------------------------------------------------------------
# settings: one line per problem, with the others


def test_settings_report_connection_problems_with_the_rest(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({**_env(tmp_path), "DOCKHAND_ENGINE_TIMEOUT": "soon"})
    assert len(info.value.problems) == 2 and "has no ca.pem" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_settings({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "nope"})
    assert info.value.problems == [f"DOCKER_CONTEXT=nope: no context named 'nope' in {tmp_path / 'contexts'} "
                                   "(`docker context ls` lists them)"]


def test_settings_carry_the_target(certs, config):
    s = load_settings(_env(certs.good))
    assert s.docker_host == "tcp://127.0.0.1:2376" and s.target.tls.cert.endswith("cert.pem")
    s = load_settings({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "staging"})
    assert s.docker_host == "tcp://staging.example:2375" and s.target.source == "DOCKER_CONTEXT=staging"


# --------------------------------------------------------------------------
# failures in words


HOST = "tcp://127.0.0.1:2376"


def test_tls_failures_are_said_in_words():
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    err = map_error(ConnectionError(verify), host=HOST, operation="connect")
    assert isinstance(err, E.EngineUnreachable)
    assert err.detail == ("TLS: the engine's certificate is not signed by the CA Dockhand was given "
                          "(unable to get local issuer certificate)")
    refused = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    refused.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    err = map_error(ConnectionError(refused), host=HOST, operation="connect")
    assert err.detail == "TLS: the engine refused the client certificate (sslv3 alert bad certificate)"


def test_ssh_failures_are_said_in_words():
    err = map_error(paramiko.AuthenticationException("Authentication failed."), host="ssh://u@h", operation="connect")
    assert isinstance(err, E.EngineUnreachable) and "refused every key offered" in err.detail
    err = map_error(paramiko.SSHException("Server '[h]:22' not found in known_hosts"), host="ssh://u@h",
                    operation="connect")
    assert "never accepts an unknown host key" in err.detail
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 1): ConnectionRefusedError(111, "Connection refused")})
    assert map_error(refused, host="ssh://u@h:1", operation="connect").detail == "ssh: Connection refused"


def test_the_start_up_line_names_the_target_and_the_missing_client_certificate(certs):
    target = resolve(_env(certs.no_cert))
    line = unanswered(target, E.EngineUnreachable(target.url, "TLS: the engine refused the client certificate (x)"))
    assert line.startswith("No Docker Engine answered at tcp://127.0.0.1:2376 (DOCKER_HOST): TLS: the engine "
                           "refused the client certificate (x); no client certificate was given")
    assert "\n" not in line


def test_dockhand_connects_to_unix_and_tcp_itself(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "s.sock"))
    server.listen(1)
    try:
        sock = EngineTarget(f"unix://{tmp_path}/s.sock").connect(2)
        sock.close()
    finally:
        server.close()
    with pytest.raises(ConnectionProblem):
        EngineTarget("ssh://u@h").connect(1)


async def test_an_unreachable_context_engine_names_the_context_not_docker_host(tmp_path):
    from bot.engine import DockerEngine

    target = EngineTarget(f"unix://{tmp_path}/nothing.sock", source=f"context prod (currentContext of {tmp_path}/c.json)")
    engine = DockerEngine(target, timeout=1)
    try:
        with pytest.raises(E.EngineUnreachable) as info:
            await engine.info()
    finally:
        await engine.close()
    assert "chosen by context prod." in info.value.hint and "DOCKER_HOST=" not in info.value.hint
    assert "c.json" not in info.value.hint  # replies go to Slack: no file paths


def test_something_else_than_an_engine_is_said_in_words():
    import docker.errors
    import requests

    response = requests.models.Response()
    response.status_code, response.reason = 404, "Not Found"
    cause = docker.errors.APIError("404 Client Error", response=response)
    exc = docker.errors.DockerException(f"Error while fetching server API version: {cause}")
    exc.__cause__ = cause
    err = map_error(exc, host=HOST, operation="connect")
    assert isinstance(err, E.EngineUnreachable)
    assert err.detail == "it answered 404 Not Found to GET /version: not a Docker Engine API"
    plain = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    plain.reason = "WRONG_VERSION_NUMBER"
    assert map_error(ConnectionError(plain), host=HOST, operation="connect").detail == (
        "TLS: the engine does not speak TLS on this port (wrong version number)")


def test_ssh_proxyjump_is_named_instead_of_a_direct_connection(tmp_path, monkeypatch):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host build-1\n  ProxyJump bastion.example\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(paramiko.SSHException) as info:
        EngineTarget("ssh://deploy@build-1").probe_ssh(1)
    err = map_error(info.value, host="ssh://deploy@build-1", operation="connect")
    assert err.detail == ("ssh: ~/.ssh/config has ProxyJump for build-1, which the Docker SDK's ssh does not "
                          "follow: use ProxyCommand ssh -W %h:%p bastion.example instead")
    # a ProxyCommand is the SDK's way: nothing is probed directly
    (tmp_path / ".ssh" / "config").write_text("Host build-1\n  ProxyCommand ssh -W %h:%p bastion.example\n")
    EngineTarget("ssh://deploy@build-1").probe_ssh(1)


def test_a_host_label_hides_an_ssh_address_in_every_form():
    import paramiko as pm

    exc = pm.SSHException("Server '[10.1.2.3]:2222' not found in known_hosts")
    err = map_error(exc, host="ssh://deploy@10.1.2.3:2222", operation="connect", label="build-1")
    assert "10.1.2.3" not in err.message + err.hint and "build-1" in err.message

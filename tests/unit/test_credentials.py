"""bot.credentials: registry credentials found the way the Docker CLI finds
them, and never shown. Credential helpers are small scripts written here."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.credentials import (
    DOCKER_HUB_INDEX,
    CredentialStore,
    RegistryAuth,
    RegistryLogin,
    Secret,
    parse_registry_logins,
    registry_of,
)

PASSWORD = "Pa55-w0rd/with:odd+chars="
USER = "ci-bot"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_config(directory: Path, data: dict) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    return str(directory)


def decode_header(header: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(header.encode()))


def make_helper(bin_dir: Path, name: str, body: str) -> Path:
    """``docker-credential-<name>``: a Python script whose ``get`` runs ``body``
    (``address`` holds what arrived on stdin). Every call is noted in calls.log."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, os, sys, time
        address = sys.stdin.read()
        with open(os.path.join(os.path.dirname(__file__), "calls.log"), "a") as f:
            f.write(json.dumps([sys.argv[1:], address]) + "\\n")
        """) + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def calls(bin_dir: Path) -> list:
    log = bin_dir / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def helper_env(bin_dir: Path) -> dict:
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


ANSWER = """\
print(json.dumps({"ServerURL": address, "Username": "%s", "Secret": "%s"}))
""" % (USER, PASSWORD)


# --------------------------------------------------------------------------
# which registry


@pytest.mark.parametrize("repository,registry", [
    ("ubuntu", "docker.io"),
    ("docker.io/library/ubuntu", "docker.io"),
    ("index.docker.io/someone/app", "docker.io"),
    ("someone/app", "docker.io"),
    ("localhost/app", "localhost"),
    ("localhost:5000/team/app", "localhost:5000"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000"),
    ("Registry.Example.com/app", "registry.example.com"),
    ("[::1]:5000/app", "[::1]:5000"),
])
def test_registry_of_a_repository(repository, registry):
    assert registry_of(repository) == registry


# --------------------------------------------------------------------------
# $DOCKER_CONFIG/config.json: auths


def test_auths_entry_as_docker_login_writes_it(tmp_path):
    cfg = write_config(tmp_path / "cfg", {"auths": {"reg.example:5000": {"auth": b64(f"{USER}:{PASSWORD}")}}})
    found = CredentialStore(docker_config=cfg).lookup("reg.example:5000/team/app")
    assert found.source == f"auths['reg.example:5000'] in {tmp_path / 'cfg' / 'config.json'}"
    assert decode_header(found.header()) == {"serveraddress": "reg.example:5000", "username": USER,
                                             "password": PASSWORD}


def test_docker_hub_is_keyed_by_its_index_name(tmp_path):
    cfg = write_config(tmp_path, {"auths": {DOCKER_HUB_INDEX: {"auth": b64(f"{USER}:{PASSWORD}")},
                                            "other.example": {"auth": b64("x:y")}}})
    store = CredentialStore(docker_config=cfg)
    for repo in ("docker.io/library/ubuntu", "docker.io/someone/app"):
        found = store.lookup(repo)
        assert decode_header(found.header())["serveraddress"] == DOCKER_HUB_INDEX
        assert decode_header(found.header())["password"] == PASSWORD


def test_legacy_keys_match_by_host_name(tmp_path):
    cfg = write_config(tmp_path, {"auths": {"https://reg.example:5000/v1/": {"auth": b64(f"{USER}:{PASSWORD}")}}})
    found = CredentialStore(docker_config=cfg).lookup("reg.example:5000/app")
    assert decode_header(found.header())["password"] == PASSWORD


def test_identity_token_and_empty_entries(tmp_path):
    cfg = write_config(tmp_path, {"auths": {"tok.example": {"auth": b64(f"{USER}:"), "identitytoken": "tok-123"},
                                            "empty.example": {}}})
    store = CredentialStore(docker_config=cfg)
    assert decode_header(store.lookup("tok.example/app").header()) == {
        "serveraddress": "tok.example", "username": USER, "identitytoken": "tok-123"}
    empty = store.lookup("empty.example/app")
    assert empty.auth is None and empty.header() == "" and not empty.problem


def test_no_config_means_no_credentials(tmp_path):
    found = CredentialStore(docker_config=str(tmp_path / "nothing")).lookup("reg.example/app")
    assert found.auth is None and found.source == "" and found.problem == ""


def test_an_unusable_config_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    found = CredentialStore(docker_config=str(tmp_path)).lookup("reg.example/app")
    assert found.auth is None and "is not valid JSON" in found.problem


def test_docker_config_env_is_read_at_lookup_when_not_given(tmp_path, monkeypatch):
    cfg = write_config(tmp_path, {"auths": {"reg.example": {"auth": b64(f"{USER}:{PASSWORD}")}}})
    store = CredentialStore()
    monkeypatch.setenv("DOCKER_CONFIG", cfg)
    assert store.lookup("reg.example/app").auth is not None


# --------------------------------------------------------------------------
# credential helpers


def test_creds_store_helper_protocol(tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "fake", ANSWER)
    cfg = write_config(tmp_path / "cfg", {"credsStore": "fake",
                                          "auths": {"reg.example": {"auth": b64("file-user:file-pw")}}})
    store = CredentialStore(docker_config=cfg, environ=helper_env(bin_dir))
    found = store.lookup("reg.example/app")
    assert decode_header(found.header()) == {"serveraddress": "reg.example", "username": USER, "password": PASSWORD}
    assert found.source.startswith("docker-credential-fake (credsStore in ")
    hub = store.lookup("ubuntu")
    assert decode_header(hub.header())["serveraddress"] == DOCKER_HUB_INDEX
    # `get` with the server address on stdin; Docker Hub by its index name
    assert calls(bin_dir) == [[["get"], "reg.example"], [["get"], DOCKER_HUB_INDEX]]


def test_cred_helpers_win_over_creds_store_for_their_registry(tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "store", 'print(json.dumps({"Username": "store-user", "Secret": "store-pw"}))')
    make_helper(bin_dir, "special", ANSWER)
    cfg = write_config(tmp_path / "cfg", {"credsStore": "store", "credHelpers": {"special.example:5000": "special"}})
    store = CredentialStore(docker_config=cfg, environ=helper_env(bin_dir))
    assert decode_header(store.lookup("special.example:5000/app").header())["password"] == PASSWORD
    assert decode_header(store.lookup("other.example/app").header())["password"] == "store-pw"


def test_helper_token_username_sends_an_identity_token(tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "tok", 'print(json.dumps({"Username": "<token>", "Secret": "refresh-token-1"}))')
    cfg = write_config(tmp_path / "cfg", {"credHelpers": {"reg.example": "tok"}})
    found = CredentialStore(docker_config=cfg, environ=helper_env(bin_dir)).lookup("reg.example/app")
    assert decode_header(found.header()) == {"identitytoken": "refresh-token-1", "serveraddress": "reg.example"}


def test_helper_without_credentials_means_none_and_no_problem(tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "none", 'print("credentials not found in native keychain"); sys.exit(1)')
    cfg = write_config(tmp_path / "cfg", {"credsStore": "none",
                                          "auths": {"reg.example": {"auth": b64(f"{USER}:{PASSWORD}")}}})
    found = CredentialStore(docker_config=cfg, environ=helper_env(bin_dir)).lookup("reg.example/app")
    # as the CLI: a configured helper is the only source (auths are not used then)
    assert found.auth is None and found.problem == ""


def test_failing_missing_and_slow_helpers_are_problems(tmp_path):
    bin_dir = tmp_path / "bin"
    make_helper(bin_dir, "broken", 'print("dbus: no session bus"); sys.exit(3)')
    make_helper(bin_dir, "slow", "time.sleep(30)")
    make_helper(bin_dir, "garbage", 'print("not json at all")')
    env = helper_env(bin_dir)
    cfg = write_config(tmp_path / "cfg", {"credHelpers": {"broken.example": "broken", "slow.example": "slow",
                                                          "garbage.example": "garbage",
                                                          "missing.example": "missing"}})
    store = CredentialStore(docker_config=cfg, environ=env, helper_timeout=1.0)
    assert store.lookup("broken.example/a").problem == (
        "docker-credential-broken get failed (exit status 3): dbus: no session bus")
    assert store.lookup("missing.example/a").problem == "docker-credential-missing is not on PATH"
    assert store.lookup("garbage.example/a").problem == "docker-credential-garbage get answered something that is not JSON"
    t0 = time.monotonic()
    slow = store.lookup("slow.example/a")
    assert time.monotonic() - t0 < 5
    assert slow.problem == "docker-credential-slow get did not answer within 1 s"
    hint = slow.unauthorized_hint()
    assert "docker-credential-slow get did not answer" in hint and "DOCKHAND_REGISTRY_<NAME>_HOST=slow.example" in hint


# --------------------------------------------------------------------------
# Dockhand's own settings


def test_settings_win_over_the_docker_config(tmp_path):
    cfg = write_config(tmp_path, {"auths": {"reg.example": {"auth": b64("file-user:file-pw")}}})
    logins, problems = parse_registry_logins({"DOCKHAND_REGISTRY_CORP_HOST": "reg.example",
                                              "DOCKHAND_REGISTRY_CORP_USERNAME": USER,
                                              "DOCKHAND_REGISTRY_CORP_PASSWORD": PASSWORD})
    assert problems == []
    found = CredentialStore(logins, docker_config=cfg).lookup("reg.example/app")
    assert found.source == "the DOCKHAND_REGISTRY_CORP_* settings"
    assert decode_header(found.header()) == {"username": USER, "password": PASSWORD, "serveraddress": "reg.example"}
    # other registries still come from the config file
    assert CredentialStore(logins, docker_config=cfg).lookup("other.example/x").auth is None


def test_settings_for_docker_hub_and_a_password_file_read_at_every_pull(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    logins, problems = parse_registry_logins({"DOCKHAND_REGISTRY_HUB_HOST": "https://index.docker.io/v1/",
                                              "DOCKHAND_REGISTRY_HUB_USERNAME": USER,
                                              "DOCKHAND_REGISTRY_HUB_PASSWORD_FILE": str(secret)})
    assert problems == [] and logins[0].registry == "docker.io"
    store = CredentialStore(logins, docker_config=str(tmp_path / "none"))
    assert decode_header(store.lookup("ubuntu").header()) == {"username": USER, "password": PASSWORD,
                                                             "serveraddress": DOCKER_HUB_INDEX}
    secret.write_text("rotated-pw")
    assert decode_header(store.lookup("ubuntu").header())["password"] == "rotated-pw"
    secret.unlink()
    gone = store.lookup("ubuntu")
    assert gone.auth is None and "cannot read DOCKHAND_REGISTRY_HUB_PASSWORD_FILE" in gone.problem


def test_settings_problems_are_one_line_each_and_never_show_the_password(tmp_path):
    env = {
        "DOCKHAND_REGISTRY_A_USERNAME": "u", "DOCKHAND_REGISTRY_A_PASSWORD": PASSWORD,  # no host
        "DOCKHAND_REGISTRY_B_HOST": "reg.example", "DOCKHAND_REGISTRY_B_PASSWORD": PASSWORD,  # no user
        "DOCKHAND_REGISTRY_C_HOST": "reg2.example", "DOCKHAND_REGISTRY_C_USERNAME": "u",
        "DOCKHAND_REGISTRY_C_PASSWORD": PASSWORD, "DOCKHAND_REGISTRY_C_PASSWORD_FILE": "/x",  # both
        "DOCKHAND_REGISTRY_D_HOST": "not a host!", "DOCKHAND_REGISTRY_D_USERNAME": "u",
        "DOCKHAND_REGISTRY_D_PASSWORD": PASSWORD,
        "DOCKHAND_REGISTRY_E_HOST": "reg3.example", "DOCKHAND_REGISTRY_E_USERNAME": "u",
        "DOCKHAND_REGISTRY_E_PASSWORD_FILE": str(tmp_path / "missing"),
        "DOCKHAND_REGISTRY_F_HOST": "REG3.example", "DOCKHAND_REGISTRY_F_USERNAME": "u",
        "DOCKHAND_REGISTRY_F_PASSWORD": PASSWORD,
        "DOCKHAND_REGISTRY_G_HOST": "REG3.example", "DOCKHAND_REGISTRY_G_USERNAME": "u",
        "DOCKHAND_REGISTRY_G_PASSWORD": PASSWORD,  # same registry as F
        "DOCKHAND_REGISTRY_SLOTS": "3",  # not a credentials setting: not ours
    }
    logins, problems = parse_registry_logins(env)
    assert [login.name for login in logins] == ["F"]
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    for needle in ("DOCKHAND_REGISTRY_A_HOST is missing", "DOCKHAND_REGISTRY_B_USERNAME is missing",
                   "DOCKHAND_REGISTRY_C: set _PASSWORD or _PASSWORD_FILE, not both",
                   "DOCKHAND_REGISTRY_D_HOST='not a host!' is not a registry host[:port]",
                   "cannot read DOCKHAND_REGISTRY_E_PASSWORD_FILE",
                   "DOCKHAND_REGISTRY_G_HOST: reg3.example already has credentials (DOCKHAND_REGISTRY_F_*)"):
        assert needle in text
    assert PASSWORD not in text
    with pytest.raises(ConfigError) as exc:
        load_settings(env)
    assert PASSWORD not in str(exc.value)


def test_load_settings_reads_credentials_and_the_stall_timeout(tmp_path):
    s = load_settings({"DOCKHAND_REGISTRY_CORP_HOST": "reg.example:5000", "DOCKHAND_REGISTRY_CORP_USERNAME": USER,
                       "DOCKHAND_REGISTRY_CORP_PASSWORD": PASSWORD, "DOCKHAND_PULL_STALL_TIMEOUT": "15",
                       "DOCKER_CONFIG": str(tmp_path)})
    assert s.pull_stall_timeout == 15 and s.docker_config == str(tmp_path)
    assert [(x.name, x.registry, x.username) for x in s.registry_logins] == [("CORP", "reg.example:5000", USER)]
    assert load_settings({}).pull_stall_timeout == 120
    with pytest.raises(ConfigError) as exc:
        load_settings({"DOCKHAND_PULL_STALL_TIMEOUT": "0"})
    assert exc.value.problems == ["DOCKHAND_PULL_STALL_TIMEOUT='0' must be more than 0 seconds"]


def test_a_broken_docker_config_is_a_start_up_problem(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"auths": {"reg.example": {"auth": "%%%"}}}')
    write_config(tmp_path / "nohelper", {"credsStore": "nowhere-to-be-found"})
    (tmp_path / "notjson").mkdir()
    (tmp_path / "notjson" / "config.json").write_text("{")
    for sub, needle in (("bad", "auths['reg.example'].auth is not base64 of user:password"),
                        ("nohelper", "credsStore names docker-credential-nowhere-to-be-found, which is not on PATH"),
                        ("notjson", "is not valid JSON (line 1, column 2)")):
        with pytest.raises(ConfigError) as exc:
            load_settings({"DOCKER_CONFIG": str(tmp_path / sub)})
        assert len(exc.value.problems) == 1 and exc.value.problems[0].startswith("DOCKER_CONFIG: ")
        assert needle in exc.value.problems[0]


# --------------------------------------------------------------------------
# never shown


def test_reprs_never_show_the_password(tmp_path):
    logins, _ = parse_registry_logins({"DOCKHAND_REGISTRY_CORP_HOST": "reg.example", "DOCKHAND_REGISTRY_CORP_USERNAME": USER,
                                       "DOCKHAND_REGISTRY_CORP_PASSWORD": PASSWORD})
    settings = Settings(registry_logins=logins)
    store = CredentialStore(logins)
    found = store.lookup("reg.example/app")
    for thing in (settings, logins[0], store, found, Secret(PASSWORD)):
        assert PASSWORD not in repr(thing) and PASSWORD not in str(thing)
    assert str(Secret(PASSWORD)) == "***" and Secret(PASSWORD).reveal() == PASSWORD


def test_scrub_takes_out_every_form_of_the_secret():
    auth = RegistryAuth("reg.example", "reg.example",
                        {"username": USER, "password": PASSWORD, "serveraddress": "reg.example"}, source="s")
    pair = f"{USER}:{PASSWORD}".encode()
    text = (f"a {PASSWORD} b {base64.b64encode(pair).decode()} c {base64.urlsafe_b64encode(pair).decode()} "
            f"d {auth.header()} e https://{USER}:{PASSWORD.replace('/', '%2F').replace(':', '%3A').replace('+', '%2B').replace('=', '%3D')}@reg")
    scrubbed = auth.scrub(text)
    assert PASSWORD not in scrubbed and "%2F" not in scrubbed
    assert base64.b64encode(pair).decode() not in scrubbed and auth.header() not in scrubbed
    assert scrubbed.startswith("a *** b *** c *** d *** e https://")
    assert RegistryAuth("r", "r").scrub("untouched") == "untouched"


def test_unauthorized_hints_name_the_source_never_the_secret(tmp_path):
    login = RegistryLogin("CORP", "reg.example", USER, Secret(PASSWORD))
    sent = CredentialStore([login]).lookup("reg.example/app")
    assert sent.unauthorized_hint().startswith(
        "The registry refused the credentials Dockhand sent for reg.example (from the DOCKHAND_REGISTRY_CORP_* settings)")
    none = CredentialStore(docker_config=str(tmp_path)).lookup("reg.example/app")
    hint = none.unauthorized_hint()
    assert "Dockhand sent no credentials for reg.example" in hint
    assert "DOCKHAND_REGISTRY_<NAME>_HOST=reg.example" in hint
    assert f"`docker login reg.example` as the user Dockhand runs as ({tmp_path / 'config.json'})" in hint
    assert "`docker login` as the user" in CredentialStore(docker_config=str(tmp_path)).lookup("ubuntu").unauthorized_hint()
    for h in (sent.unauthorized_hint(), hint):
        assert PASSWORD not in h and USER not in h

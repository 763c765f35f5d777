"""A private registry with token authentication (distribution's ``auth:
token``), the way Docker Hub, Harbor or GitLab do it: Debian's
docker-registry (distribution 2.8.2) on 127.0.0.1 sends every client to a
token server, the one in ``tests/fakes/token_server.py``, which checks Basic
credentials and signs JWTs (RS256, ``x5c``) that the real registry verifies
against its ``rootcertbundle``.

Through the real paths: ``search REGISTRY/TERM`` (the registry has no v1
search, so Dockhand lists the catalog and tag lists with a token for each
scope), ``pull -a`` (its plan lists the tags the same way), and the engine's
own pull with the same credentials (the engine does its own token flow).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import Settings
from bot.credentials import CredentialStore, RegistryLogin, Secret
from bot.registry import RegistryClient
from bot.render.text import render
from bot.wiring import build_services, close_services
from handlers.dispatch import dispatch
from handlers import errors as E
from handlers.context import Actor
from handlers.replies import Confirmation, Status
from tests.fakes.registry_config import running_registry
from tests.fakes.token_server import Grant, TokenServer

pytestmark = pytest.mark.integration

SERVICE = "dockhand-token-registry"
ISSUER = "dockhand-test-token-issuer"
READER, READER_PW = "team-reader", "Rd-" + secrets.token_urlsafe(18)  # unique: a hit anywhere is a leak
PUSHER, PUSHER_PW = "team-pusher", "Pu-" + secrets.token_urlsafe(18)
ME = Actor("U-token-test", "tester", via="shell")
NOTICE = "has no search endpoint, so Dockhand listed its catalog instead"


@dataclass
class TokenRegistry:
    address: str
    tokens: TokenServer
    root: Path
    log: Path
    cli_config: str  # a DOCKER_CONFIG directory the real `docker login` wrote for the pusher
    team: str  # a unique repository namespace for this module's images ("team-<hex>")

    def login(self, password: str = READER_PW, user: str = READER, name: str = "TOK") -> RegistryLogin:
        return RegistryLogin(name, self.address, user, Secret(password))

    def registry_log(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def token_registry(stack, make_image_module):
    root = Path(stack.dir) / f"token-registry-{uuid.uuid4().hex[:8]}"
    team = f"team{uuid.uuid4().hex[:8]}"
    tokens = TokenServer(root / "tokens", service=SERVICE, issuer=ISSUER, users={
        # the reader may list the catalog and pull the team's repositories, nothing else
        READER: (READER_PW, [Grant("registry", "catalog", ("*",)), Grant("repository", f"{team}/*", ("pull",))]),
        PUSHER: (PUSHER_PW, [Grant("repository", "*", ("pull", "push"))]),
    })
    try:
        with running_registry(root, ready=401, what="token registry", auth=f"""
                token:
                  realm: {tokens.realm}
                  service: {SERVICE}
                  issuer: {ISSUER}
                  rootcertbundle: {tokens.cert}""") as (address, headers, log_path):
            challenge = str(headers.get("Www-Authenticate") or "")
            assert challenge.startswith(f'Bearer realm="{tokens.realm}",service="{SERVICE}"'), challenge
            cli_config = root / "docker-config"
            cli_config.mkdir()
            # the real CLI logs in (through the engine, which does the token flow) and pushes
            stack.docker("--config", str(cli_config), "login", "-u", PUSHER, "--password-stdin", address,
                         input=PUSHER_PW)
            reg = TokenRegistry(address, tokens, root, log_path, str(cli_config), team)
            for repo, tags in ((f"{team}/web", ("1.0", "latest")), (f"{team}/db", ("2.1",)), ("ops/tool", ("v1",))):
                img = make_image_module()
                for tag in tags:
                    ref = f"{address}/{repo}:{tag}"
                    make_image_module.refs.append(ref)
                    stack.docker("tag", img.ref, ref)
                    stack.docker("--config", str(cli_config), "push", ref)
                    stack.docker("rmi", ref)
            yield reg
    finally:
        tokens.close()


@pytest.fixture(scope="module")
def make_image_module(stack):
    from tests.conftest import ImageFactory

    factory = ImageFactory(stack)
    yield factory
    factory.cleanup()


def settings(stack, tmp_path, **kw) -> Settings:
    kw.setdefault("docker_config", str(tmp_path / "no-docker-config"))
    return Settings(docker_host=stack.docker_host, state_dir=str(tmp_path / "state"), **kw)


async def run(stack, tmp_path, line: str, **kw):
    services = build_services(settings(stack, tmp_path, **kw))
    try:
        reply = await dispatch(line, ME, services)
    finally:
        await close_services(services)
    return reply, render(reply)


def secret_forms(*passwords: str) -> list[str]:
    forms = []
    for user, password in ((READER, READER_PW), (PUSHER, PUSHER_PW), *((READER, p) for p in passwords)):
        pair = f"{user}:{password}".encode()
        forms += [password, base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()]
    return forms


def assert_never_shown(where: str, text: str, *passwords: str) -> None:
    for form in secret_forms(*passwords):
        assert form not in text, f"a form of a password is in {where}"


def scopes_asked(reg: TokenRegistry, user: str = READER) -> list[str]:
    return [s for r in reg.tokens.seen(user) for s in r.scopes]


# --------------------------------------------------------------------------
# (a) search with the right credentials, from the settings and from config.json


async def test_search_lists_catalog_and_tags_through_the_token_flow(stack, token_registry, tmp_path, caplog):
    reg = token_registry
    caplog.set_level(logging.DEBUG)
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"search {reg.address}/{reg.team}", registry_logins=(reg.login(),))
    assert reply.status is Status.OK, text
    assert NOTICE in text
    rows = sorted(line.split() for line in text.splitlines() if line.startswith(f"{reg.address}/"))
    assert rows == [[f"{reg.address}/{reg.team}/db", "tags:", "2.1", "0"],
                    [f"{reg.address}/{reg.team}/web", "tags:", "1.0,", "latest", "0"]], text
    # (e) the token server saw exactly the scopes Dockhand needed, for the reader, each once
    seen = reg.tokens.seen()
    assert {r.user for r in seen} == {READER} and all(r.status == 200 and r.method == "GET" for r in seen)
    assert sorted(scopes_asked(reg)) == sorted(["registry:catalog:*", f"repository:{reg.team}/db:pull",
                                                f"repository:{reg.team}/web:pull"])
    granted = {r.scopes[0]: r.access for r in seen}
    assert granted["registry:catalog:*"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert granted[f"repository:{reg.team}/web:pull"] == [{"type": "repository", "name": f"{reg.team}/web",
                                                           "actions": ["pull"]}]
    assert_never_shown("the reply", text)
    assert_never_shown("the log records", caplog.text + "\n".join(str(r.args) for r in caplog.records))


async def test_search_with_what_docker_login_wrote(stack, token_registry, tmp_path):
    reg = token_registry
    cfg = tmp_path / "reader-config"
    cfg.mkdir()
    stack.docker("--config", str(cfg), "login", "-u", READER, "--password-stdin", reg.address, input=READER_PW)
    # the login asked for a refresh token, and the CLI keeps it as the identity token, not the password
    entry = json.loads((cfg / "config.json").read_text())["auths"][reg.address]
    assert entry["identitytoken"].startswith("rt-") and READER_PW not in json.dumps(entry)
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"search {reg.address}/{reg.team}", docker_config=str(cfg))
    assert reply.status is Status.OK and f"{reg.address}/{reg.team}/web" in text and "tags: 1.0, latest" in text
    # Dockhand traded the identity token (OAuth2 refresh grant) for each scope's token
    seen = reg.tokens.seen()
    assert {(r.method, r.user, r.status) for r in seen} == {("POST refresh_token", READER, 200)}
    assert sorted(scopes_asked(reg)) == sorted(["registry:catalog:*", f"repository:{reg.team}/db:pull",
                                                f"repository:{reg.team}/web:pull"])
    # and so does the engine, pulling with the same config
    ref = f"{reg.address}/{reg.team}/web:1.0"
    stack.docker("rmi", ref, check=False)
    reg.tokens.clear()
    pulled, pulled_text = await run(stack, tmp_path, f"pull {ref}", docker_config=str(cfg))
    assert pulled.status is Status.OK, pulled_text
    assert [(r.method, r.user, r.scopes) for r in reg.tokens.seen()] == [
        ("POST refresh_token", READER, [f"repository:{reg.team}/web:pull"])]
    stack.docker("rmi", ref)
    # an identity token the service does not know: refused, and the reply names config.json
    entry["identitytoken"] = "rt-unknown"
    (cfg / "config.json").write_text(json.dumps({"auths": {reg.address: entry}}))
    refused, refused_text = await run(stack, tmp_path, f"search {reg.address}/{reg.team}", docker_config=str(cfg))
    assert refused.status is Status.FAILED
    assert f"its token service ({reg.tokens.address}) refused the credentials (HTTP 401)" in refused_text
    assert f"(from auths['{reg.address}'] in {cfg / 'config.json'})" in refused_text, refused_text


async def test_a_repository_the_user_may_not_pull_shows_its_tags_could_not_be_listed(stack, token_registry,
                                                                                     tmp_path):
    reg = token_registry
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"search {reg.address}/tool", registry_logins=(reg.login(),))
    assert reply.status is Status.OK, text
    assert f"{reg.address}/ops/tool" in text and "tags: (could not be listed)" in text
    asked = [r for r in reg.tokens.seen() if r.scopes == ["repository:ops/tool:pull"]]
    assert asked and all(r.access == [] for r in asked)  # asked, and granted nothing: the reader has no right to it


# --------------------------------------------------------------------------
# (b) wrong password, (c) none


async def test_wrong_password_names_the_registry_and_where_the_credentials_came_from(stack, token_registry,
                                                                                    tmp_path, caplog):
    reg = token_registry
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-" + secrets.token_urlsafe(12)
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"search {reg.address}/{reg.team}",
                            registry_logins=(reg.login(wrong),))
    assert reply.status is Status.FAILED, text
    assert (f"{reg.address} has no search endpoint, and its catalog could not be listed: registry {reg.address} "
            f"refused to list its repositories: its token service ({reg.tokens.address}) refused the "
            "credentials (HTTP 401)") in text, text
    assert (f"The registry refused the credentials Dockhand sent for {reg.address} "
            "(from the DOCKHAND_REGISTRY_TOK_* settings)") in text
    assert [(r.user, r.status) for r in reg.tokens.seen()] == [(READER, 401)]  # asked once, not again and again
    assert_never_shown("the reply", text, wrong)
    assert_never_shown("the log records", caplog.text + "\n".join(str(r.args) for r in caplog.records), wrong)


async def test_wrong_password_in_config_json_names_the_file(stack, token_registry, tmp_path):
    reg = token_registry
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(
        {"auths": {reg.address: {"auth": base64.b64encode(f"{READER}:nope".encode()).decode()}}}))
    reply, text = await run(stack, tmp_path, f"search {reg.address}/{reg.team}", docker_config=str(cfg))
    assert reply.status is Status.FAILED
    assert f"(from auths['{reg.address}'] in {cfg / 'config.json'})" in text, text


async def test_no_credentials_says_there_were_none_and_where_to_put_them(stack, token_registry, tmp_path):
    reg = token_registry
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"search {reg.address}/{reg.team}")
    assert reply.status is Status.FAILED, text
    assert f"registry {reg.address} refused to list its repositories (HTTP 401)" in text, text
    assert f"Dockhand sent no credentials for {reg.address}: it has none for it." in text
    assert f"DOCKHAND_REGISTRY_<NAME>_HOST={reg.address} with _USERNAME and _PASSWORD" in text
    # the anonymous token asked for granted nothing
    assert [(r.user, r.scopes, r.access) for r in reg.tokens.seen()] == [("", ["registry:catalog:*"], [])]


# --------------------------------------------------------------------------
# (d) pull -a


async def test_pull_all_tags_plans_from_the_tag_list(stack, token_registry, tmp_path):
    reg = token_registry
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"pull -a {reg.address}/{reg.team}/web",
                            registry_logins=(reg.login(),))
    assert any(isinstance(p, Confirmation) for p in reply.parts), text
    assert "This will pull 2 tags" in text and "1.0" in text and "latest" in text, text
    assert scopes_asked(reg) == [f"repository:{reg.team}/web:pull"]
    # not allowed to pull: the plan says so instead of listing anything
    denied, denied_text = await run(stack, tmp_path, f"pull -a {reg.address}/ops/tool",
                                    registry_logins=(reg.login(),))
    assert denied.status is Status.FAILED
    assert f"registry {reg.address} refused to list the tags of ops/tool (HTTP 401)" in denied_text, denied_text


# --------------------------------------------------------------------------
# (e) tokens are kept for their scope and credentials, and fetched again when refused


async def test_tokens_are_reused_per_scope_until_they_expire(token_registry):
    reg = token_registry
    now = [1000.0]
    client = RegistryClient(CredentialStore([reg.login()], docker_config="/nonexistent"), clock=lambda: now[0])
    reg.tokens.clear()
    for _ in range(3):
        assert f"{reg.team}/web" in await client.catalog(reg.address)
        assert sorted(await client.tags(reg.address, f"{reg.team}/web")) == ["1.0", "latest"]
    # one token per scope for three calls each
    assert scopes_asked(reg) == ["registry:catalog:*", f"repository:{reg.team}/web:pull"]
    now[0] += 300 - 30 + 1  # the server's expires_in is 300 s: kept until 30 s before
    await client.tags(reg.address, f"{reg.team}/web")
    assert scopes_asked(reg)[2:] == [f"repository:{reg.team}/web:pull"]
    # another person's credentials (or a rotated password) never use the first token
    other = RegistryClient(CredentialStore([reg.login(PUSHER_PW, PUSHER)], docker_config="/nonexistent"))
    await other.tags(reg.address, f"{reg.team}/db")
    assert [r.user for r in reg.tokens.seen()][-1] == PUSHER


async def test_a_token_the_registry_refuses_is_fetched_once_more(token_registry):
    reg = token_registry
    client = RegistryClient(CredentialStore([reg.login()], docker_config="/nonexistent"))
    await client.tags(reg.address, f"{reg.team}/db")
    # the kept token stops being accepted (as after a key rotation): one fresh token, then it works
    key = next(k for k in client._tokens._tokens if k[3] == f"repository:{reg.team}/db:pull")
    issued_for_another = reg.tokens.sign({"iss": ISSUER, "sub": READER, "aud": "someone-else", "exp": int(time.time()) + 300,
                                          "nbf": int(time.time()) - 1, "iat": int(time.time()), "jti": "x", "access": []})
    client._tokens.put(key, issued_for_another, 300)
    reg.tokens.clear()
    assert await client.tags(reg.address, f"{reg.team}/db") == ["2.1"]
    assert scopes_asked(reg) == [f"repository:{reg.team}/db:pull"]
    assert "token intended for another audience" in reg.registry_log()


# --------------------------------------------------------------------------
# the engine's own pull from the same registry, with the same credentials


async def test_the_engine_pulls_with_the_same_credentials(stack, token_registry, tmp_path):
    reg = token_registry
    ref = f"{reg.address}/{reg.team}/db:2.1"
    stack.docker("rmi", ref, check=False)
    reg.tokens.clear()
    reply, text = await run(stack, tmp_path, f"pull {ref}", registry_logins=(reg.login(),))
    assert reply.status is Status.OK, text
    assert f"Status: Downloaded newer image for {ref}" in text
    assert stack.docker("image", "inspect", ref, check=False).returncode == 0
    engine_asked = reg.tokens.seen(READER)
    assert engine_asked and all(r.status == 200 for r in engine_asked)
    assert [s for r in engine_asked for s in r.scopes] == [f"repository:{reg.team}/db:pull"]
    stack.docker("rmi", ref)
    # and the same refusal as Dockhand's own calls for a wrong password
    wrong = "Wrong-" + secrets.token_urlsafe(12)
    denied, denied_text = await run(stack, tmp_path, f"pull {ref}", registry_logins=(reg.login(wrong),))
    assert denied.status is Status.FAILED
    assert "DOCKHAND_REGISTRY_TOK_*" in denied_text
    assert_never_shown("the reply", denied_text, wrong)
    assert stack.docker("image", "inspect", ref, check=False).returncode != 0


def test_the_registry_verified_the_tokens_it_was_given(token_registry):
    """What the real registry logged: it accepted the tokens (x5c chain against
    its rootcertbundle) and refused the one meant for another audience."""
    text = token_registry.registry_log()
    assert 'msg="authorized request"' in text
    assert "unable to verify" not in text and "untrusted" not in text


def test_errors_module_is_the_handlers_one():
    assert E.RegistryUnauthorized.__module__ == "handlers.errors"


class OnlyThese:
    """A security decision that treats only the given names as insecure."""

    def __init__(self, *insecure: str):
        self.names = set(insecure)

    async def insecure(self, registry: str) -> bool:
        return registry in self.names


async def test_credentials_never_go_to_a_plain_http_realm_the_engine_would_not_use(token_registry):
    """The registry may be spoken to over HTTP (insecure), but its realm's host
    is one the engine treats as secure: Dockhand does not send it the password."""
    reg = token_registry
    reg.tokens.clear()
    client = RegistryClient(CredentialStore([reg.login()], docker_config="/nonexistent"),
                            security=OnlyThese(reg.address))
    with pytest.raises(E.RegistryUnauthorized) as info:
        await client.catalog(reg.address)
    assert info.value.message == (f"registry {reg.address} refused to list its repositories: its token service "
                                  f"({reg.tokens.address}) is not HTTPS, so Dockhand sent it no credentials")
    assert reg.tokens.seen() == []
    # with the realm's host insecure too (as the engine decides for 127.0.0.0/8), it is asked
    both = RegistryClient(CredentialStore([reg.login()], docker_config="/nonexistent"),
                          security=OnlyThese(reg.address, reg.tokens.address))
    assert f"{reg.team}/web" in await both.catalog(reg.address)
    assert [r.user for r in reg.tokens.seen()] == [READER]

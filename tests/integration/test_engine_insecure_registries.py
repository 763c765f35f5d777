"""Dockhand talks to a registry over plain HTTP (or HTTPS without checking
the certificate) exactly where the engine does: the engine's own
``--insecure-registry`` settings, read from ``docker info``.

The oracle is the engine itself: asked to pull from a registry that does not
answer, it names the URL it tried last, ``http://…`` for a registry it
treats as insecure and ``https://…`` for a secure one (the dockerd runs with
a dead proxy, so nothing leaves the machine). Two engines: the stack's
(``--insecure-registry 127.0.0.0/8``) and one started here with a registry
name and a CIDR of its own.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from bot.config import Settings
from bot.credentials import CredentialStore
from bot.engine import DockerEngine
from bot.insecure_registries import EngineRegistrySecurity, RegistrySecurityConfig
from bot.registry import RegistryClient
from bot.render.text import render
from bot.wiring import build_services, close_services
from handlers.dispatch import dispatch
from handlers.context import Actor
from handlers.replies import Confirmation, Status
from tests.fakes.registry_config import running_registry

pytestmark = pytest.mark.integration

stackmod = sys.modules["dockhand_test_stack"]  # loaded by tests/conftest.py
ME = Actor("U-insecure-test", "tester", via="shell")
OWN_FLAGS = ("myreg.test:5000", "10.99.0.0/16")


def loopback_alias() -> str:
    """This machine's host name when it resolves into 127.0.0.0/8 (Debian
    writes ``127.0.1.1 <hostname>`` in /etc/hosts): a name, not an address,
    that the engine treats as insecure because of what it resolves to."""
    name = socket.gethostname().lower()
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        return ""
    if name != "localhost" and addrs and all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8")
                                             for a in addrs):
        return name
    return ""


CANDIDATES = ["myreg.test:5000", "myreg.test:5001", "10.99.3.4:5000", "10.98.0.1:5000", "127.0.0.1:1",
              "127.0.1.1:1", "localhost:1"] + ([f"{loopback_alias()}:1"] if loopback_alias() else [])


@pytest.fixture(scope="module")
def own_engine(stack):
    """A dockerd of this test's own with ``--insecure-registry`` entries of its choosing."""
    root = tempfile.mkdtemp(prefix="dh-insec-", dir="/tmp")  # short: unix socket paths are limited
    p = stackmod.Paths(root)
    for d in (p.data_root, p.exec_root):
        os.makedirs(d, mode=0o711, exist_ok=True)
    Path(p.daemon_json).write_text("{}\n")
    argv = [stackmod.which_any("dockerd"), "--data-root", p.data_root, "--exec-root", p.exec_root,
            "--pidfile", p.dockerd_pid, "--host", p.docker_host, "--config-file", p.daemon_json,
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"]
    for flag in OWN_FLAGS:
        argv += ["--insecure-registry", flag]
    proc = stackmod.start_process(argv, p.dockerd_log, stackmod.safety_env(), p.root, "insecure-registry test")
    try:
        deadline = time.monotonic() + 60
        while not stackmod.engine_ping(p, timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the test's own dockerd did not start: {Path(p.dockerd_log).read_text()[-800:]}")
            time.sleep(0.1)
        yield p.docker_host
    finally:
        stackmod.stop_dockerd(p)
        proc.wait(10)
        subprocess.run(["rm", "-rf", root], check=False)


def engine_decision(stack, docker_host: str, registry: str) -> bool:
    """Does the engine treat ``registry`` as insecure? Its own pull says."""
    r = subprocess.run([stackmod.docker_cli(), "-H", docker_host, "pull", f"{registry}/oracle/none:1"],
                       capture_output=True, text=True, env=stack.env, timeout=120)
    m = re.search(r'Get "(https?)://([^/"]+)/v2/', r.stderr)
    assert r.returncode != 0 and m and m.group(2) == registry, r.stderr
    return m.group(1) == "http"


async def dockhand_decision(docker_host: str, registry: str) -> tuple[bool, RegistrySecurityConfig]:
    engine = DockerEngine(docker_host, timeout=30)
    try:
        security = EngineRegistrySecurity(engine.info)
        return await security.insecure(registry), await security.config()
    finally:
        await engine.close()


@pytest.mark.parametrize("registry", CANDIDATES)
async def test_same_decision_as_the_stack_engine(stack, registry):
    insecure, config = await dockhand_decision(stack.docker_host, registry)
    assert config.from_engine and [str(c) for c in config.cidrs] == ["127.0.0.0/8"]
    assert insecure is engine_decision(stack, stack.docker_host, registry)


@pytest.mark.parametrize("registry", CANDIDATES)
async def test_same_decision_as_an_engine_with_its_own_settings(stack, own_engine, registry):
    insecure, config = await dockhand_decision(own_engine, registry)
    # what that engine reports: the name as an IndexConfigs entry, the CIDR, and loopback (added by the engine)
    assert config.indexes == {"docker.io": True, "myreg.test:5000": False}
    assert sorted(str(c) for c in config.cidrs) == ["10.99.0.0/16", "127.0.0.0/8"]
    assert insecure is engine_decision(stack, own_engine, registry)


async def test_the_settings_decide_not_a_fixed_list(stack, own_engine):
    """The same names, two engines, two answers: it is the engine's settings that count."""
    assert (await dockhand_decision(own_engine, "myreg.test:5000"))[0] is True
    assert (await dockhand_decision(stack.docker_host, "myreg.test:5000"))[0] is False
    assert (await dockhand_decision(own_engine, "10.99.3.4:5000"))[0] is True
    assert (await dockhand_decision(stack.docker_host, "10.99.3.4:5000"))[0] is False


# --------------------------------------------------------------------------
# end to end: the catalog fallback uses the scheme the engine would




@pytest.fixture(scope="module")
def tls_registry(stack):
    """A registry on loopback that speaks only HTTPS, with a self-signed
    certificate: the engine (loopback is insecure) pulls from it without
    checking the certificate, and so must Dockhand's catalog calls."""
    root = Path(stack.dir) / f"tls-registry-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(root / "key.pem"),
                    "-out", str(root / "cert.pem"), "-days", "2", "-subj", "/CN=dockhand test registry",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    with running_registry(root, ready=400, what="TLS registry", http=f"""
            tls:
              certificate: {root / "cert.pem"}
              key: {root / "key.pem"}""") as (address, _, _):  # 400: "an HTTP request to an HTTPS server"
        yield address


async def run(stack, tmp_path, line: str):
    services = build_services(Settings(docker_host=stack.docker_host, state_dir=str(tmp_path / "state"),
                                       docker_config=str(tmp_path / "none")))
    try:
        reply = await dispatch(line, ME, services)
    finally:
        await close_services(services)
    return reply, render(reply)


async def test_search_lists_an_https_registry_with_a_self_signed_certificate(stack, tls_registry, make_image,
                                                                            tmp_path):
    name = f"tls-{uuid.uuid4().hex[:10]}"
    img = make_image()
    ref = f"{tls_registry}/team/{name}:v1"
    make_image.refs.append(ref)
    stack.docker("tag", img.ref, ref)
    stack.docker("push", ref)  # the engine: HTTPS, certificate not checked (an insecure registry)
    reply, text = await run(stack, tmp_path, f"search {tls_registry}/{name}")
    assert reply.status is Status.OK, text
    assert f"{tls_registry}/team/{name}" in text and "tags: v1" in text, text
    plan, plan_text = await run(stack, tmp_path, f"pull -a {tls_registry}/team/{name}")
    assert any(isinstance(p, Confirmation) for p in plan.parts) and "v1" in plan_text, plan_text


async def test_an_insecure_registry_by_name_is_listed_over_http(stack, tmp_path):
    alias = loopback_alias()
    if not alias:
        pytest.skip(f"this machine's host name ({socket.gethostname()}) does not resolve into 127.0.0.0/8")
    port = stack.registry.rsplit(":", 1)[1]
    registry = f"{alias}:{port}"  # the stack's plain-HTTP registry, under a name
    assert engine_decision(stack, stack.docker_host, f"{alias}:1")  # the engine: insecure (resolves to loopback)
    engine = DockerEngine(stack.docker_host, timeout=30)
    try:
        client = RegistryClient(CredentialStore(docker_config=str(tmp_path)), security=EngineRegistrySecurity(engine.info))
        assert "dockhand/busybox" in await client.catalog(registry)
        assert sorted(await client.tags(registry, "dockhand/busybox")) == ["1.35", "1.36", "latest"]
    finally:
        await engine.close()
    reply, text = await run(stack, tmp_path, f"pull -a {registry}/dockhand/busybox")
    assert any(isinstance(p, Confirmation) for p in reply.parts), text
    assert "This will pull 3 tags" in text, text

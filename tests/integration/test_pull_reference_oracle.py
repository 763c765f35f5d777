"""A reference the engine refuses is refused before anything is announced,
in the engine's words; one the engine accepts is never refused.

The oracle is the engine's own pull (``POST /images/create``) on the same
references: engines differ on an uppercase first component (``UPPER/x``),
which current distribution/reference reads as a registry host and a 20.10
engine refuses as "repository name must be lowercase"."""

from __future__ import annotations

import pytest

from handlers.dispatch import engine_preflight, parse_command
from handlers.replies import Status
from tests.fakes.slack_harness import engine_services  # noqa: F401

pytestmark = pytest.mark.integration

# every one passes Dockhand's own grammar check; the engine decides the rest
REFERENCES = ["UPPER/x", "Upper/x:1", "UPPER:5000/x", "Registry.Example/team/app:2",
              "MiXeD/a/b@sha256:" + "a" * 64, "localhost/x", "lower/x"]


def engine_pull_refusal(docker_client, ref: str) -> str:
    """What the engine's own pull says of ``ref``: its error, or "" when it
    got past parsing (it then fails to reach the registry: the stack's
    engine has a dead proxy and these hosts do not exist)."""
    repo, tag = ref, None
    if "@" not in ref and ref.rfind(":") > ref.rfind("/"):
        repo, tag = ref.rsplit(":", 1)
    elif "@" not in ref:
        tag = "latest"
    try:
        for ev in docker_client.api.pull(repo, tag=tag, stream=True, decode=True):
            if ev.get("error"):
                return ev["error"]
    except Exception as exc:  # noqa: BLE001 - the engine's answer is what we compare
        return str(getattr(exc, "explanation", "") or exc)
    return ""


@pytest.mark.parametrize("ref", REFERENCES)
async def test_refused_exactly_when_the_engine_refuses(ref, docker_client, engine_services):
    services = engine_services()
    engine_says = engine_pull_refusal(docker_client, ref)
    engine_refuses = "invalid reference format" in engine_says
    reply = await engine_preflight(parse_command(f"docker pull {ref}"), services)
    if engine_refuses:
        assert reply is not None and reply.status is Status.USAGE
        message = reply.parts[0].message
        assert message.startswith("Error response from daemon: invalid reference format")
        assert message.split("daemon: ", 1)[1] in engine_says  # the engine's own words
    else:
        assert reply is None, f"{ref}: the engine accepts it ({engine_says!r}), Dockhand refused it"


def test_this_engine_refuses_an_uppercase_first_component(docker_client):
    # keeps the parametrized test meaningful: on this engine both outcomes occur
    assert "repository name must be lowercase" in engine_pull_refusal(docker_client, "UPPER/x")
    assert "invalid reference format" not in engine_pull_refusal(docker_client, "UPPER:5000/x")

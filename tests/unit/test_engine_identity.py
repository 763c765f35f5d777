"""Which engine answers: the sample engine says so in every reply's context line,
and hints name only what an installed Dockhand has (handlers/engine_identity.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.render.blockkit import render as blockkit
from bot.render.text import context_note
from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.engine_identity import SAMPLE_NOTE, mirror_images
from handlers.errors import EngineUnreachable, RegistryUnreachable
from tests.unit.fake_engine import FakeEngine, image

ME = Actor("u1", "me", via="shell")
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_LABELS = ["org.dockhand.engine=sample", "org.dockhand.mirror=hello-world:latest,ubuntu:16.04"]


class LabelledEngine(FakeEngine):
    def __init__(self, labels=(), **kw):
        super().__init__(**kw)
        self.labels = list(labels)
        self.info_calls = 0

    async def info(self):
        self.info_calls += 1
        return {**await super().info(), "Labels": self.labels}


class UnreachablePull(LabelledEngine):
    async def pull(self, repository, tag, *, owner="", platform=""):
        raise RegistryUnreachable('Get "https://registry-1.docker.io/v2/": proxyconnect tcp: connection refused')
        yield  # pragma: no cover


def context_text(message: dict) -> str:
    return "\n".join(e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"])


async def test_every_reply_from_the_sample_engine_says_so_in_its_context_line():
    engine = LabelledEngine(SAMPLE_LABELS, images=[image("a", ["x:1"])])
    s = Services(engine=engine, host_label="h")
    for line in ("images", "rmi nothere:1", "bogus-command"):
        reply = await dispatch(line, ME, s)
        assert reply.engine_note == SAMPLE_NOTE, line
        assert context_note(reply) == f"[{SAMPLE_NOTE}]"
        assert "Dockhand's sample engine" in context_text(blockkit(reply))
    assert engine.info_calls == 1  # learnt once


async def test_a_real_host_has_no_note():
    s = Services(engine=LabelledEngine(["com.example.role=web"]), host_label="prod")
    reply = await dispatch("images", ME, s)
    assert reply.engine_note == "" and context_note(reply) == ""
    assert "sample" not in context_text(blockkit(reply))
    assert reply.engine_version == "20.10.24"


async def test_a_pull_the_sample_engine_cannot_serve_gets_a_hint_that_fits():
    s = Services(engine=UnreachablePull(SAMPLE_LABELS), host_label="h")
    reply = await dispatch("pull nginx", ME, s)
    hint = reply.parts[-1].hint
    assert "Dockhand's sample engine" in hint and "hello-world:latest, ubuntu:16.04" in hint
    assert "network" not in hint
    real = await dispatch("pull nginx", ME, Services(engine=UnreachablePull(), host_label="h"))
    assert real.parts[-1].hint == RegistryUnreachable.default_hint


def test_the_mirror_label_is_data_never_markup():
    info = {"Labels": ["org.dockhand.mirror=hello-world:latest,<!channel>,`x`,*bold*,ubuntu:16.04"]}
    assert mirror_images(info) == ("hello-world:latest", "ubuntu:16.04")
    assert mirror_images({"Labels": None}) == ()


def _user_facing_strings(path: Path):
    """String constants of a module, docstrings excepted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def test_hints_name_only_what_an_installed_dockhand_has():
    found = []
    for path in sorted([*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]):
        for text in _user_facing_strings(path):
            if any(word in text for word in ("tests/", "scripts/", "stack.py")):
                found.append(f"{path.relative_to(ROOT)}: {text[:80]!r}")
    assert found == []
    hint = EngineUnreachable("unix:///nowhere.sock").hint
    assert "DOCKER_HOST" in hint and "tests/" not in hint

"""Whatever a person types, dispatch answers with a Reply: never an exception,
never an internal error, and never an engine call with unvalidated input."""

import asyncio
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.dispatch import dispatch
from handlers.context import Actor, Services
from handlers.replies import ErrorPart, Status
from tests.unit.fake_engine import FakeEngine, image, result

WORDS = ["docker", "/docker", "images", "image", "ls", "list", "rm", "remove", "prune", "pull", "rmi", "search",
         "info", "version", "help", "system", "-a", "-q", "-f", "--filter", "--digests", "--no-trunc", "--limit",
         "--force", "-h", "--help", "-v", "--version", "dangling=true", "label=a=b", "reference=x*", "is-official=true",
         "stars=3", "ubuntu", "ubuntu:16.04", "127.0.0.1:5000/a/b:1", "sha256:" + "a" * 64, "aaaa", "--", "10",
         "0", "101", "Ubuntu", "a@sha256:" + "b" * 64, "'quoted words'", '"', "$(id)", ";", "|", "é", "\u202e", "x" * 300]

SAFE = set(string.ascii_letters + string.digits + "._-/:@*?[]^!= ")


def engine():
    return FakeEngine(images=[image("a", ["ubuntu:latest", "ubuntu:16.04"]), image("b", [])],
                      results=[result("ubuntu", 10, True)])


def check(line: str) -> None:
    eng = engine()
    reply = asyncio.run(dispatch(line, Actor("fuzz"), Services(engine=eng)))
    assert reply.status in (Status.OK, Status.FAILED, Status.USAGE)
    for part in reply.parts:
        if isinstance(part, ErrorPart):
            assert "Internal error" not in part.message, (line, part)
            assert "Traceback" not in part.message and len(part.message) < 2000
    for call in eng.calls:
        for arg in call[1:]:
            if isinstance(arg, str):
                assert set(arg) <= SAFE, (line, call)
            elif isinstance(arg, dict):
                for key, values in arg.items():
                    for value in values:
                        if key == "label":  # labels may hold any printable text; it travels as JSON
                            assert value.isprintable() and len(value) <= 512, (line, call)
                        else:
                            assert set(value) <= SAFE, (line, call)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_word_salad(words):
    check(" ".join(words))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text(text):
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["images", "search", "pull", "rmi", "images -f", "images -f label=", "images -f before=",
                        "images -f reference=", "search --filter", "search -f stars=", "search --limit"]),
       st.text(min_size=1, max_size=80))
def test_any_argument(command, arg):
    quoted = "'" + arg.replace("'", "'\\''") + "'"
    check(f"{command}{quoted}" if command.endswith("=") else f"{command} {quoted}")

"""Text a registry sends is data: in a channel it is never formatting, a link
or a mention (a registry that answers a pull with `*URGENT* re-auth at …`)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fakes.slack_api import message_problems
from tests.fakes.slack_harness import clean_slack_env, engine_services, fake_slack, slack_app  # noqa: F401

HOSTILE = "*URGENT* re-auth at https://evil.example/login <!channel> <@UBOSS> _now_ ~or else~"


class _Registry(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.rstrip("/") == "/v2":
            body, status = b"{}", 200
        else:
            body = json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE}]}).encode()
            status = 403
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


@pytest.fixture
def hostile_registry():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_registry_error_reaches_the_channel_as_plain_text(slack_app, engine_services, hostile_registry):
    h = await slack_app(engine_services(operators=frozenset({"UALICE"})))
    await h.command("/pull", f"{hostile_registry}/x/y{uuid.uuid4().hex[:6]}:1")
    final = (await h.fake.wait_for("api", "chat.update", where=lambda c: "could not pull" in c.text, timeout=60))[-1]
    assert message_problems(final.body) == []
    shown = [b["text"]["text"] for b in final.body["blocks"] if b.get("type") == "section"]
    error = next(t for t in shown if "URGENT" in t)  # the registry's words are there, as data:
    assert error.startswith(":x: ")
    body = error[len(":x: "):].split("\n:bulb: ")[0]  # the hint after it is Dockhand's own words
    assert (body.startswith("`") and body.endswith("`") and body.count("`") == 2) or \
        (body.startswith("\n```\n") and body.endswith("\n```") and body.count("```") == 2)
    for block_text in shown:
        assert "<!channel>" not in block_text and "<@UBOSS>" not in block_text
        assert "<https://evil" not in block_text
    assert "<!channel>" not in final.body["text"]


class _Index(BaseHTTPRequestHandler):
    """A search index whose only result has a hostile description."""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/v1/search"):
            body = json.dumps({"num_pages": 1, "num_results": 1, "page_size": 25, "page": 1, "query": "evil",
                               "results": [{"name": "evil/x", "description": HOSTILE, "star_count": 7,
                                            "is_official": False, "is_automated": False}]}).encode()
        else:
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hostile_index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_an_index_description_in_a_native_table_is_a_raw_text_cell(slack_app, engine_services, hostile_index):
    h = await slack_app(engine_services())
    reply = await h.reply(await h.command("/search", f"--no-trunc {hostile_index}/evil"), timeout=60)
    assert message_problems(reply.body) == []
    [table] = [b for b in reply.body["blocks"] if b["type"] == "data_table"]
    assert [c["text"] for c in table["rows"][0]] == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    name, description, stars, official = table["rows"][1]
    # the description is data: a plain-text cell holding exactly what the index sent
    assert description == {"type": "raw_text", "text": HOSTILE}
    assert stars == {"type": "raw_number", "value": 7, "text": "7"} and official == {"type": "raw_text", "text": "-"}
    assert not [c for row in table["rows"] for c in row if c["type"] == "rich_text"]
    for block in reply.body["blocks"]:
        if block["type"] in ("section", "context"):
            shown = json.dumps(block)
            assert "<!channel>" not in shown and "<@UBOSS>" not in shown and "<https://evil" not in shown
    # the notification text (the CLI's text) holds it escaped, in a code fence
    assert "<!channel>" not in reply.body["text"] and "&lt;!channel&gt;" in reply.body["text"]
    assert reply.body["text"].count("```") == 2

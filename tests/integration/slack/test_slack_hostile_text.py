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

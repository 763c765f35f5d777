"""The front door's parts on their own: the flood log, following a request's
bytes, the connection limit under the file limit."""

from __future__ import annotations

import logging
import resource

from bot.slack import front_door
from bot.slack.front_door import CHUNKED, MAX_BODY, READING, RECEIVED, FloodLog, _Conn, connection_limit


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Transport:
    def get_extra_info(self, key):
        return ("192.0.2.7", 5555)


def test_the_flood_log_writes_a_few_lines_however_many_refusals(caplog):
    caplog.set_level(logging.WARNING, logger="test.flood")
    clock = Clock()
    flood = FloodLog(logging.getLogger("test.flood"), interval=10, clock=clock)
    for i in range(100_000):
        flood.note("read timeout" if i % 3 else "evicted at the connection limit", "192.0.2.7")
        if i % 1000 == 0:
            clock.now += 0.2  # 20 s in all
            flood.flush()
    flood.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert flood.lines == len(lines) <= 3, lines
    assert "refused a request from 192.0.2.7: evicted at the connection limit" in lines[0]
    assert "read timeout: " in lines[1] and "refused " in lines[1]
    assert not any(r.exc_info for r in caplog.records)
    clock.now += 60
    flood.flush()  # what was left is summed up
    assert "refused 999 more" in caplog.records[-1].getMessage()
    # quiet for a while: the next refusal is a first line again
    clock.now += 60
    flood.flush()
    flood.note("body too large", "192.0.2.8")
    assert "refused a request from 192.0.2.8: body too large" in caplog.records[-1].getMessage()


def test_a_request_is_received_when_its_head_and_announced_body_are_here():
    c = _Conn(None, Transport(), 0)
    assert c.take(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n") == ""
    assert c.state == READING
    assert c.take(b"\r\nab") == "" and c.state == READING and c.need == 3
    assert c.take(b"cde") == "" and c.state == RECEIVED
    c = _Conn(None, Transport(), 0)
    c.take(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.state == RECEIVED
    c = _Conn(None, Transport(), 0)
    c.take(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\n")
    assert c.need == CHUNKED and c.state == READING  # the app reads it, within the time left


def test_an_oversized_body_or_head_is_refused_from_the_head():
    c = _Conn(None, Transport(), 0)
    assert c.take(b"POST / HTTP/1.1\r\ncontent-length: %d\r\n\r\n" % (MAX_BODY + 1)) == "body too large"
    c = _Conn(None, Transport(), 0)
    assert c.take(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % MAX_BODY) == ""
    c = _Conn(None, Transport(), 0)
    assert c.take(b"POST / HTTP/1.1\r\nX: " + b"a" * (front_door.HEAD_LIMIT + 10)) == "head too large"


def test_the_connection_limit_stays_under_the_file_limit(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1024, 1024))
    assert connection_limit(256) == 256
    assert connection_limit(5000) == (1024 - front_door.FD_RESERVE) // 2
    monkeypatch.setattr(resource, "getrlimit", lambda what: (40, 40))
    assert connection_limit(256) == 8


def test_a_client_waiting_for_100_continue_is_handed_to_the_app_at_once():
    c = _Conn(None, Transport(), 0)
    c.take(b"POST /slack/events HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
    assert c.need == CHUNKED  # the app answers 100 Continue and reads the body within the time left

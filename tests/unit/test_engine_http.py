"""bot/engine_http.py against a unix-socket server that answers with bytes
written here: what the Engine API sends (Content-Length, chunked streams,
kept-alive connections) and what a broken peer sends."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from bot.connection import from_url
from bot.engine_http import BadAnswer, EngineConnection


class Server:
    """Accepts connections on a unix socket; for each request (read up to the
    blank line, then Content-Length bytes), sends the next canned answer. A
    None after an answer closes the connection once that answer is sent."""

    def __init__(self, path: Path, answers: list[bytes | None]):
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                file = conn.makefile("rb")
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = file.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    self.requests.append(head + file.read(length))
                    conn.sendall(self.answers.pop(0))
                    if self.answers and self.answers[0] is None:
                        self.answers.pop(0)
                        break

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(*answers):
        path = tmp_path / f"s{len(servers)}.sock"
        server = Server(path, list(answers))
        servers.append(server)
        return server, EngineConnection(from_url(f"unix://{path}"), 5.0)

    yield start
    for s in servers:
        s.close()


def test_a_content_length_answer_and_the_request_as_sent(serve):
    server, conn = serve(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n'
                         b'{"Version":"1.2"}')
    conn.request("GET", "/version")
    response = conn.getresponse()
    assert (response.status, response.reason) == (200, "OK")
    assert response.getheader("content-type") == "application/json"
    assert response.read() == b'{"Version":"1.2"}'
    assert response.read() == b""
    conn.close()
    assert server.requests[0].startswith(b"GET /version HTTP/1.1\r\nHost: localhost\r\n")


def test_a_chunked_stream_arrives_piece_by_piece_with_extensions_and_trailers(serve):
    body = (b"7;ext=1\r\n{\"a\":1}\r\n"
            b"8\r\n\n{\"b\":2}\r\n"
            b"0\r\nX-Trailer: t\r\n\r\n")
    _, conn = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    conn.request("POST", "/images/create?fromImage=x&tag=1", headers={"Content-Length": "0"})
    response = conn.getresponse()
    pieces = []
    while True:
        piece = response.read1(4)
        if not piece:
            break
        assert len(piece) <= 4
        pieces.append(piece)
    assert b"".join(pieces) == b'{"a":1}\n{"b":2}'


def test_the_connection_is_kept_alive_and_made_again_after_the_engine_closes_it(serve):
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
    server, conn = serve(ok, ok, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]", ok)
    for i in range(4):
        conn.request("DELETE", f"/images/x{i}")
        assert conn.getresponse().read() == b"[]"
    conn.close()
    assert server.connections == 2  # the third answer said close: the fourth request reconnected
    assert [r.split(b" ")[1] for r in server.requests] == [b"/images/x0", b"/images/x1", b"/images/x2",
                                                           b"/images/x3"]


def test_a_body_of_a_post_is_sent_with_its_length(serve):
    server, conn = serve(b"HTTP/1.1 204 No Content\r\n\r\n")
    conn.request("POST", "/x", body=b"hello")
    response = conn.getresponse()
    assert response.status == 204 and response.read() == b""
    assert server.requests[0].endswith(b"Content-Length: 5\r\n\r\nhello")


def test_an_interim_100_answer_is_skipped(serve):
    _, conn = serve(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!")
    conn.request("GET", "/images/nope/json")
    response = conn.getresponse()
    assert (response.status, response.reason, response.read()) == (404, "Not Found", b"no!")


def test_an_answer_without_length_is_read_to_the_end_of_the_connection(serve):
    _, conn = serve(b"HTTP/1.0 200 OK\r\n\r\nall of it", None)
    conn.request("GET", "/x")
    assert conn.getresponse().read() == b"all of it"


@pytest.mark.parametrize("answer, words", [
    (b"SSH-2.0-OpenSSH_9\r\n\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY", "does not end where its size says"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", "too long"),
])
def test_a_broken_answer_is_a_bad_answer_never_a_hang(serve, answer, words):
    _, conn = serve(answer, None)
    conn.request("GET", "/x")
    with pytest.raises(BadAnswer, match=words):
        conn.getresponse().read()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nshort",
    b"",
])
def test_an_answer_cut_short_is_a_bad_answer(serve, answer):
    _, conn = serve(answer, None)
    conn.request("GET", "/x")
    with pytest.raises(BadAnswer, match="closed the connection"):
        conn.getresponse().read()


def test_a_header_with_a_line_break_is_refused_before_sending(serve):
    server, conn = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ValueError, match="line break"):
        conn.request("GET", "/x", headers={"X-Registry-Auth": "a\r\nInjected: 1"})
    assert server.requests == []


def test_the_engine_closing_mid_answer_is_mapped_as_a_closed_connection(serve):
    from bot.engine_errors import map_error
    from handlers.errors import EngineUnreachable

    _, conn = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", None)
    conn.request("GET", "/x")
    with pytest.raises(BadAnswer) as caught:
        conn.getresponse().read()
    error = map_error(caught.value, host="unix:///x.sock", operation="pull", timeout=5.0)
    assert isinstance(error, EngineUnreachable)
    assert "the engine closed the connection" in (error.detail or error.message)

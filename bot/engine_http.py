"""HTTP/1.1 to the engine on a connection Dockhand opens itself.

A request goes out (request line, headers, an optional body); the answer
comes back as a status, headers and a body read by its ``Content-Length``,
in chunks (``Transfer-Encoding: chunked``, the pull's progress stream), or
to the end of the connection. The connection is kept alive between requests
(a plan's batched removals) and opened again when the engine closed it.

Only what Dockhand's own engine connections need: the pull, reads as JSON
(``bot/engine_reads.py``) and batched removals. The Python standard
library's ``http.client`` would do it too, but importing it loads the email
package: about 8 ms of every one-shot command's start-up on these machines.
docker-py, for everything else, brings its own HTTP stack.
"""

from __future__ import annotations

import socket
from typing import BinaryIO, Callable

from bot.connection import EngineTarget

MAX_LINE = 65_536  # bytes in a status line, a header line or a chunk-size line
MAX_HEADERS = 100


class BadAnswer(ConnectionError):
    """The engine's answer ended early or is not HTTP/1.x: the connection is
    not usable any more (mapped as "the engine closed the connection")."""


class EngineConnection:
    """One HTTP/1.1 connection to ``target``: a unix socket, TCP, or TLS over
    TCP with the target's CA, certificate and key (:meth:`EngineTarget.connect`).

    ``connect_timeout`` bounds making the connection; ``read_timeout`` then
    bounds every wait for the engine (the pull's stall timeout). ``on_socket``
    gets the socket as soon as it exists, so another thread can shut it down
    to wake a reader (a pull being stopped)."""

    def __init__(self, target: EngineTarget, connect_timeout: float, read_timeout: float | None = None,
                 on_socket: Callable[[socket.socket], None] | None = None):
        self._target = target
        self._connect_timeout = connect_timeout
        self._read_timeout = connect_timeout if read_timeout is None else read_timeout
        self._on_socket = on_socket
        self._host = "localhost" if target.unix_path is not None else "%s:%d" % target.address
        self.sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._reusable = False

    def connect(self) -> None:
        sock = self._target.connect(self._connect_timeout, self._on_socket)
        sock.settimeout(self._read_timeout)
        self.sock, self._file = sock, sock.makefile("rb")
        self._reusable = True

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: bytes = b"") -> None:
        """Send one request; a kept-alive connection the engine closed is made again."""
        if self.sock is None or not self._reusable:
            self.close()
            self.connect()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}", "Accept-Encoding: identity"]
        given = {k.lower() for k in (headers or {})}
        for name, value in (headers or {}).items():
            if "\r" in name + value or "\n" in name + value:
                raise ValueError(f"header {name!r} has a line break")
            lines.append(f"{name}: {value}")
        if body or (method in ("POST", "PUT") and "content-length" not in given):
            lines.append(f"Content-Length: {len(body)}")
        self._reusable = False  # until this request's answer has been read to its end
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def getresponse(self) -> "EngineResponse":
        """The answer to the request just sent: status and headers read, the
        body left to read."""
        if self._file is None:
            raise BadAnswer("no request was sent")
        return EngineResponse(self._file, on_end=self._answered)

    def _answered(self, keep_alive: bool) -> None:
        self._reusable = keep_alive

    def close(self) -> None:
        file, sock = self._file, self.sock
        self._file = self.sock = None
        self._reusable = False
        for thing in (file, sock):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass


class EngineResponse:
    """One answer: ``status``, ``reason``, ``headers`` (names in lower case)
    and its body, read with :meth:`read` (all or up to ``n`` bytes) or
    :meth:`read1` (what has arrived, for streams)."""

    def __init__(self, file: BinaryIO, on_end: Callable[[bool], None] = lambda keep_alive: None):
        self._file = file
        self._on_end = on_end
        status_line = self._line()
        while True:
            version, _, rest = status_line.partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise BadAnswer(f"not an HTTP answer: {status_line[:80]!r}")
            self.status, self.reason = int(code), reason.strip()
            self.headers = self._headers()
            if self.status >= 200 or self.status == 101:
                break
            status_line = self._line()  # 100 Continue and other interim answers: the real one follows
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._chunked = chunked
        self._chunk_left = 0
        if self.status in (204, 304) or 100 <= self.status < 200:
            self._left: int | None = 0
        elif chunked:
            self._left = None
        elif length is not None:
            if not length.strip().isdigit():
                raise BadAnswer(f"bad Content-Length {length[:40]!r}")
            self._left = int(length)
        else:
            self._left = -1  # to the end of the connection
        self._keep_alive = self.headers.get("connection", "").lower() != "close" and self._left != -1
        self._done = False
        if self._left == 0:
            self._end()

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def _line(self) -> str:
        raw = self._file.readline(MAX_LINE + 1)
        if not raw:
            raise BadAnswer("the engine closed the connection before answering")
        if len(raw) > MAX_LINE:
            raise BadAnswer("a line of the answer is too long")
        return raw.decode("latin-1").rstrip("\r\n")

    def _headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if not line:
                return out
            name, sep, value = line.partition(":")
            if not sep:
                raise BadAnswer(f"not a header line: {line[:80]!r}")
            key = name.strip().lower()
            out[key] = f"{out[key]}, {value.strip()}" if key in out else value.strip()
        raise BadAnswer(f"more than {MAX_HEADERS} header lines")

    def _end(self) -> None:
        if not self._done:
            self._done = True
            self._on_end(self._keep_alive)

    def read1(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes of the body as they arrive (one read of the
        connection at most); b"" at its end."""
        if self._done:
            return b""
        if self._chunked:
            if self._chunk_left == 0 and not self._next_chunk():
                return b""
            data = self._file.read1(min(n, self._chunk_left))
            if not data:
                raise BadAnswer("the engine closed the connection in the middle of its answer")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self._chunk_end()
            return data
        if self._left == -1:
            data = self._file.read1(n)
            if not data:
                self._end()
            return data
        data = self._file.read1(min(n, self._left))
        if not data:
            raise BadAnswer("the engine closed the connection in the middle of its answer")
        self._left -= len(data)
        if self._left == 0:
            self._end()
        return data

    def read(self, n: int | None = None) -> bytes:
        """The rest of the body, or up to ``n`` bytes of it."""
        parts: list[bytes] = []
        got = 0
        while n is None or got < n:
            data = self.read1(65536 if n is None else min(65536, n - got))
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _next_chunk(self) -> bool:
        """Start the next chunk; False (and the body ended) after the last."""
        line = self._line()
        size_text = line.split(";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise BadAnswer(f"bad chunk size {size_text[:20]!r}")
        if size == 0:
            for _ in range(MAX_HEADERS + 1):  # trailers, then the blank line
                if not self._line():
                    break
            else:
                raise BadAnswer(f"more than {MAX_HEADERS} trailer lines")
            self._end()
            return False
        self._chunk_left = size
        return True

    def _chunk_end(self) -> None:
        if self._file.readline(3) not in (b"\r\n", b"\n"):
            raise BadAnswer("a chunk of the answer does not end where its size says")

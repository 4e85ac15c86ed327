"""http11, the pull path's HTTP/1.1 client, against a scripted server on loopback (raw sockets).

Each test server thread answers each request it reads with the next canned
response, so that framing (Content-Length, chunked, to the connection's end),
keep-alive, redirects and cut connections are exactly what the test wrote.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from berth.images import http11

Answer = bytes | tuple[bytes, str] | None


class Server:
    """Serve `answers`, each a function of the request head -> raw bytes to send, None to
    hang up instead, or (bytes, "close") to send them and hang up."""

    def __init__(self, answers: list[Callable[[bytes], Answer]]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    self.requests.append(head)
                    out = self.answers.pop(0)(head)
                    if out is None:
                        break
                    if isinstance(out, tuple):
                        conn.sendall(out[0])
                        break
                    conn.sendall(out)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(*answers: Callable[[bytes], Answer]) -> Server:
        servers.append(Server(list(answers)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def fixed(body: bytes, status: str = "200 OK", extra: str = "") -> Callable[[bytes], bytes]:
    return lambda _: (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
                      .encode() + body)


def test_urls_split_and_join() -> None:
    assert http11.split_url("https://h:5000/a/b?c=d") == ("https", "h", 5000, "/a/b?c=d")
    assert http11.split_url("http://[::1]/") == ("http", "::1", 80, "/")
    assert http11.split_url("http://h?x") == ("http", "h", 80, "/?x")
    with pytest.raises(ValueError):
        http11.split_url("ftp://h/x")
    assert http11.join_url("http://h:1/v2/a/blobs/x", "/other?s=1") == "http://h:1/other?s=1"
    assert http11.join_url("http://h:1/v2/a", "https://cdn/x") == "https://cdn/x"
    assert http11.join_url("http://h:1/v2/a", "b") == "http://h:1/v2/b"
    assert http11.urlencode([("scope", "repository:a/b:pull")]) == \
        "scope=repository%3Aa%2Fb%3Apull"


def test_lengths_chunks_and_one_kept_connection(serve: Callable[..., Server]) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n")
    srv = serve(fixed(b"first"), lambda _: chunked, fixed(b"", "204 No Content"))
    pool = http11.Pool()
    resp, _ = http11.fetch(pool, "GET", srv.url + "/a")
    assert (resp.status, resp.read_all(100)) == (200, b"first")
    resp, _ = http11.fetch(pool, "GET", srv.url + "/b")
    assert resp.read(3) == b"hel"
    assert resp.read_all(100) == b"lo world"
    resp, _ = http11.fetch(pool, "POST", srv.url + "/c", body=b"xyz")
    assert resp.status == 204 and resp.read() == b""
    assert srv.accepted == 1  # all three on one connection
    assert b"Content-Length: 3" in srv.requests[2]
    pool.close()


def test_a_body_up_to_the_connections_end(serve: Callable[..., Server]) -> None:
    srv = serve(lambda _: (b"HTTP/1.0 200 OK\r\n\r\nall of it", "close"), fixed(b"again"))
    pool = http11.Pool()
    resp, _ = http11.fetch(pool, "GET", srv.url + "/")
    assert resp.read_all(100) == b"all of it"
    resp, _ = http11.fetch(pool, "GET", srv.url + "/")  # a new connection
    assert resp.read_all(100) == b"again"
    pool.close()


def test_a_cut_body_is_a_failure_not_an_end(serve: Callable[..., Server]) -> None:
    srv = serve(lambda _: (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
                           "close"))
    pool = http11.Pool()
    resp, _ = http11.fetch(pool, "GET", srv.url + "/")
    with pytest.raises(http11.HTTPFailure, match="ended 91 bytes before"):
        while resp.read(100):
            pass
    pool.close()


def test_a_kept_connection_the_server_closed_is_reopened(serve: Callable[..., Server]) -> None:
    srv = serve(fixed(b"one"), lambda _: None, fixed(b"two"))
    pool = http11.Pool()
    assert http11.fetch(pool, "GET", srv.url + "/")[0].read_all(10) == b"one"
    # the server closes that connection when the next request arrives on it
    assert http11.fetch(pool, "GET", srv.url + "/")[0].read_all(10) == b"two"
    assert srv.accepted == 2
    pool.close()


def test_redirects_keep_the_token_only_on_the_same_origin(serve: Callable[..., Server]) -> None:
    cdn = serve(fixed(b"blob"))
    reg = serve(fixed(b"", "307 Temporary Redirect", "Location: /v2/moved\r\n"),
                fixed(b"", "302 Found", f"Location: {cdn.url}/signed?sig=1\r\n"))
    pool = http11.Pool()
    resp, url = http11.fetch(pool, "GET", reg.url + "/v2/a", {"Authorization": "Bearer t"})
    assert (resp.read_all(10), url) == (b"blob", cdn.url + "/signed?sig=1")
    assert b"Authorization: Bearer t" in reg.requests[1]  # same origin: kept
    assert b"Authorization" not in cdn.requests[0]  # another origin: dropped
    pool.close()


def test_nobody_listening_is_a_connect_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(http11.ConnectFailed):
        http11.fetch(http11.Pool(), "GET", f"http://127.0.0.1:{port}/")

"""A small blocking HTTP/1.1 client for the registry (pull, push, login; and each unpack worker).

What it owns: one request at a time on a connection kept alive between
requests; responses framed by Content-Length, the chunked transfer coding or
the connection's end; https through ssl (imported only for https) with or
without certificate checks; redirects followed by `fetch`, with the
Authorization header dropped when the redirect leaves the origin (a blob
store's signed URL must not see the registry's token).

Why not http.client, the standard library's: importing it costs ~32 ms a
process (it imports email.parser and ssl whatever the URL), and a pull runs a
client in every unpack worker; five workers starting together on two cores
took ~115 ms longer with it (docs/architecture.md, images). aiohttp (~170 ms
to import) stays for the servers; images/ does not import it.

What it must not do: decide anything about registries (auth, retries, what a
status means: registry.py does), decompress (it asks for identity), or
import more than `_socket` on the plain-http path.
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_HEAD = 64 << 10  # status line and headers of one response
MAX_LINE = 8 << 10  # one chunk-size line
REDIRECTS = 5
USER_AGENT = "berth/0.1"


class HTTPFailure(ConnectionError):
    """The connection failed, or the response was cut or malformed."""


class ConnectFailed(HTTPFailure):
    """No connection at all: the name does not resolve or nobody answers."""


def split_url(url: str) -> tuple[str, str, int, str]:
    """`https://h:5000/a?b` -> ("https", "h", 5000, "/a?b"); the host keeps no brackets."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, target = rest[:cut], rest[cut:] or "/"
    if target.startswith("?"):
        target = "/" + target
    netloc = netloc.rpartition("@")[2]
    if netloc.startswith("["):
        host, _, port_s = netloc[1:].partition("]")
        port_s = port_s.removeprefix(":")
    else:
        host, _, port_s = netloc.partition(":")
    port = int(port_s) if port_s else (443 if scheme == "https" else 80)
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    return scheme, host, port, target


def join_url(base: str, location: str) -> str:
    """A Location header against the URL it answered (absolute, or a path on the same origin)."""
    if "://" in location.partition("?")[0]:
        return location
    scheme, host, port, target = split_url(base)
    origin = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
    if location.startswith("//"):
        return f"{scheme}:{location}"
    if location.startswith("/"):
        return origin + location
    path = target.partition("?")[0]
    return origin + path[: path.rfind("/") + 1] + location


def quote(s: str) -> str:
    """Percent-encode everything but unreserved characters (for query values)."""
    safe = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in s.encode())


def urlencode(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)


def _tls_context(verify: bool) -> Any:
    import ssl
    if verify:
        return ssl.create_default_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Connection:
    """One TCP (or TLS) connection to an origin; `request` reconnects as needed."""

    def __init__(self, scheme: str, host: str, port: int, *, tls_verify: bool = True,
                 timeout: float = 60.0, connect_timeout: float = 10.0) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.tls_verify = tls_verify
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.sock: Any = None
        self.buf = b""
        self.busy: Response | None = None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.buf = b""

    def _connect(self) -> None:
        try:
            infos = _socket.getaddrinfo(self.host, self.port, 0, _socket.SOCK_STREAM)
        except OSError as e:
            raise ConnectFailed(f"cannot resolve {self.host}: {e}") from None
        last: OSError | None = None
        for family, kind, proto, _, addr in infos:
            sock = _socket.socket(family, kind, proto)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(addr)
                break
            except OSError as e:
                sock.close()
                last = e
        else:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {last}")
        sock.settimeout(self.timeout)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        if self.scheme == "https":
            import socket
            import ssl
            try:
                sock = _tls_context(self.tls_verify).wrap_socket(
                    socket.socket(fileno=sock.detach()), server_hostname=self.host)
            except ssl.SSLError as e:
                raise TLSFailed(str(e)) from None
            except OSError as e:
                raise ConnectFailed(f"TLS handshake with {self.host}:{self.port}: {e}") \
                    from None
        self.sock = sock
        self.buf = b""

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes = b"") -> Response:
        """Send one request and read the response's head; the body is read from the Response.

        A kept-alive connection the server closed meanwhile is reopened once,
        when nothing of the answer had arrived.
        """
        if self.busy is not None:
            self.busy.close()
        for attempt in (0, 1):
            fresh = self.sock is None
            if fresh:
                self._connect()
            try:
                self._send(method, target, headers, body)
                return self._response(method)
            except HTTPFailure as e:
                self.close()
                if fresh or attempt or not getattr(e, "before_answer", False):
                    raise
        raise AssertionError("unreachable")

    def _send(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != (443 if self.scheme == "https" else 80):
            host += f":{self.port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}",
                 "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.sock.sendall(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self.sock.sendall(body)
        except OSError as e:
            failure = HTTPFailure(f"sending to {self.host}:{self.port}: {e}")
            failure.before_answer = True  # type: ignore[attr-defined]
            raise failure from None

    def _recv(self, n: int) -> bytes:
        try:
            return self.sock.recv(n)
        except TimeoutError:
            raise HTTPFailure(f"{self.host}:{self.port}: no answer for {self.timeout:g} s") \
                from None
        except OSError as e:
            raise HTTPFailure(f"{self.host}:{self.port}: {e}") from None

    def _response(self, method: str) -> Response:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise HTTPFailure(f"{self.host}:{self.port}: response head over 64 KiB")
            data = self._recv(65536)
            if not data:
                failure = HTTPFailure(f"{self.host}:{self.port}: connection closed without an "
                                      "answer" if not self.buf else "in the response head")
                failure.before_answer = not self.buf  # type: ignore[attr-defined]
                raise failure
            self.buf += data
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HTTPFailure(f"{self.host}:{self.port}: not an HTTP/1.x answer: "
                              f"{status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip().lower()
            if key in headers and key != "www-authenticate":  # keep the first challenge
                headers[key] += ", " + value.strip()
            else:
                headers.setdefault(key, value.strip())
        status = int(code)
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return self._response(method)
        resp = Response(self, status, reason, headers, version == "HTTP/1.0",
                        bodyless=method == "HEAD" or status in (204, 304))
        self.busy = resp
        return resp


class TLSFailed(ConnectFailed):
    """The TLS handshake failed (an untrusted certificate, or no TLS at all)."""


class Response:
    """A response whose body is read on demand; close() returns the connection for reuse."""

    def __init__(self, conn: Connection, status: int, reason: str, headers: dict[str, str],
                 http10: bool, bodyless: bool = False) -> None:
        self.conn, self.status, self.reason, self.headers = conn, status, reason, headers
        self.chunked = not bodyless and "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self.length = int(length) if length is not None and length.isdigit() else None
        # bytes of the body still to come; None: up to the connection's end
        self.remaining: int | None = 0 if bodyless else None if self.chunked else self.length
        self.chunk_left = 0
        self.done = False
        self.keep = not http10 and "close" not in headers.get("connection", "").lower() \
            and (self.chunked or self.remaining is not None)

    def _take(self, n: int) -> bytes:
        """Up to n bytes from the connection (b"": it ended)."""
        conn = self.conn
        if conn.buf:
            data, conn.buf = conn.buf[:n], conn.buf[n:]
            return data
        return conn._recv(n)

    def _line(self) -> bytes:
        conn = self.conn
        while (end := conn.buf.find(b"\r\n")) < 0:
            if len(conn.buf) > MAX_LINE:
                raise HTTPFailure(f"{conn.host}:{conn.port}: a chunk header over 8 KiB")
            data = conn._recv(65536)
            if not data:
                raise HTTPFailure(f"{conn.host}:{conn.port}: the chunked body was cut")
            conn.buf += data
        line, conn.buf = conn.buf[:end], conn.buf[end + 2:]
        return line

    def read(self, n: int = 1 << 20) -> bytes:
        """Up to n bytes of the body; b"" at its end. HTTPFailure if the connection breaks."""
        if self.done:
            return b""
        if self.chunked:
            if not self.chunk_left:
                size = self._line().partition(b";")[0].strip()
                try:
                    self.chunk_left = int(size, 16)
                except ValueError:
                    raise HTTPFailure(f"{self.conn.host}: bad chunk size {size[:20]!r}") \
                        from None
                if self.chunk_left == 0:
                    while self._line():  # trailers, up to the empty line
                        pass
                    self._finish()
                    return b""
            data = self._take(min(n, self.chunk_left))
            if not data:
                raise HTTPFailure(f"{self.conn.host}:{self.conn.port}: the chunked body was "
                                  "cut")
            self.chunk_left -= len(data)
            if not self.chunk_left:
                self._line()  # the CRLF after the chunk's data
            return data
        if self.remaining == 0:
            self._finish()
            return b""
        data = self._take(n if self.remaining is None else min(n, self.remaining))
        if not data:
            if self.remaining is not None:
                raise HTTPFailure(f"{self.conn.host}:{self.conn.port}: the connection ended "
                                  f"{self.remaining} bytes before the body's end")
            self.keep = False
            self._finish()
            return b""
        if self.remaining is not None:
            self.remaining -= len(data)
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body; HTTPFailure past `limit` bytes."""
        parts, got = [], 0
        while data := self.read(1 << 20):
            got += len(data)
            if got > limit:
                self.close()
                raise HTTPFailure(f"{self.conn.host}: answer over {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def _finish(self) -> None:
        self.done = True
        if self.conn.busy is self:
            self.conn.busy = None
        if not self.keep:
            self.conn.close()

    def close(self) -> None:
        """Done with it: an unread body (up to 64 KiB) is drained to keep the connection."""
        if self.done:
            return
        if self.keep and (self.remaining or 0) <= 65536 and not self.chunked:
            try:
                while self.read(65536):
                    pass
                return
            except HTTPFailure:
                pass
        self.keep = False
        self._finish()


class Pool:
    """One kept-alive connection per origin (scheme, host, port)."""

    def __init__(self, *, tls_verify: bool = True, timeout: float = 60.0) -> None:
        self.tls_verify, self.timeout = tls_verify, timeout
        self.conns: dict[tuple[str, str, int], Connection] = {}

    def get(self, scheme: str, host: str, port: int) -> Connection:
        key = (scheme, host, port)
        conn = self.conns.get(key)
        if conn is None:
            conn = self.conns[key] = Connection(scheme, host, port, tls_verify=self.tls_verify,
                                                timeout=self.timeout)
        return conn

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


def fetch(pool: Pool, method: str, url: str, headers: dict[str, str] | None = None,
          body: bytes = b"") -> tuple[Response, str]:
    """A request, redirects followed; (the final response, its URL).

    GET and HEAD follow every redirect; other methods only 307 and 308 (with
    their body). Authorization goes along only while the origin stays the same.
    """
    headers = dict(headers or {})
    first = split_url(url)[:3]
    for _ in range(REDIRECTS + 1):
        scheme, host, port, target = split_url(url)
        resp = pool.get(scheme, host, port).request(method, target, headers, body)
        location = resp.headers.get("location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return resp, url
        if method not in ("GET", "HEAD") and resp.status not in (307, 308):
            return resp, url
        resp.close()
        url = join_url(url, location)
        if split_url(url)[:3] != first:
            headers.pop("Authorization", None)
    raise HTTPFailure(f"more than {REDIRECTS} redirects from {url}")

"""A small web server on loopback, for tests: feeds, article pages and robots.txt that a test changes as it goes.

The feed tests fetch from it with the real fetcher over real HTTP (the machine has no internet, and a
test must never reach one). Each path answers what the test put there: a body with its type, a
status, a redirect, an ETag or Last-Modified for conditional requests (answered 304 when they
match), a pause before answering (to time a request out), or a body streamed without a length.
Every request is recorded with its headers.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Page:
    """What one path answers."""

    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None  # for a redirect
    delay: float = 0.0  # seconds to wait before answering
    stream_bytes: int = 0  # send this many bytes with no Content-Length instead of `body`
    gate: threading.Event | None = None  # answered only once it is set (at most 30 s later: then 503)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class Website:
    """Start it, put pages at paths, point the fetcher at `url(path)`, read `requests`."""

    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scheme = "http"
        self.address = "127.0.0.1"
        # Requests arrived and not yet answered: a request leaves as its answer starts, since a client that got the
        # answer may send its next request before this server's thread has finished writing it.
        self.in_flight = 0
        self.most_in_flight = 0  # the most at once
        self.arrived = threading.Event()  # set at each request

    def start(self, tls: ssl.SSLContext | None = None, address: str = "127.0.0.1") -> Website:
        """Serve on a free port of `address` (a loopback one: 127.0.0.1, 127.0.0.2, ... are all this machine's);
        over HTTPS with `tls` (a server context with its certificate)."""
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                site._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.address = address
        self._server = _Server((address, 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="website", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # slow answers stop waiting
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.address}:{self.port}{path}"

    def put(self, path: str, body: bytes | str, content_type: str = "text/html; charset=utf-8", **options: Any) -> Page:
        page = Page(body.encode() if isinstance(body, str) else body, content_type, **options)
        with self._lock:
            self.pages[path] = page
        return page

    def remove(self, path: str) -> None:
        with self._lock:
            self.pages.pop(path, None)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[Request]:
        with self._lock:
            return self.requests[mark:]

    # -- the server side ------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrived.set()
        handler.waiting = True  # type: ignore[attr-defined]
        try:
            self._answer_one(handler)
        finally:
            self._answering(handler)

    def _answering(self, handler: BaseHTTPRequestHandler) -> None:
        """The request's answer starts: it is no longer in flight."""
        with self._lock:
            if getattr(handler, "waiting", False):
                handler.waiting = False  # type: ignore[attr-defined]
                self.in_flight -= 1

    def _answer_one(self, handler: BaseHTTPRequestHandler) -> None:
        request = Request(handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with self._lock:
            self.requests.append(request)
            page = self.pages.get(handler.path)
        if page is None:
            request.status = 404
            self._send(handler, 404, b"not found", "text/plain")
            return
        if page.delay and self._released.wait(page.delay):
            return
        if page.gate is not None and not page.gate.wait(30):
            request.status = 503
            self._send(handler, 503, b"the gate was never opened", "text/plain")
            return
        if page.location is not None:
            request.status = page.status or 302
            self._send(handler, request.status, b"", "text/plain", {"Location": page.location})
            return
        headers: dict[str, str] = {}
        if page.etag:
            headers["ETag"] = page.etag
        if page.last_modified:
            headers["Last-Modified"] = page.last_modified
        matches_etag = page.etag is not None and request.headers.get("if-none-match") == page.etag
        matches_date = page.last_modified is not None and request.headers.get("if-modified-since") == page.last_modified
        if page.status == 200 and (matches_etag or matches_date):
            request.status = 304
            self._send(handler, 304, b"", None, headers)
            return
        request.status = page.status
        if page.stream_bytes:
            self._answering(handler)
            handler.send_response(page.status)
            handler.send_header("Content-Type", page.content_type)
            handler.send_header("Connection", "close")
            handler.end_headers()
            try:
                for piece in _pieces(page.stream_bytes):
                    handler.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the fetcher stopped reading at its size cap
            handler.close_connection = True
            return
        self._send(handler, page.status, page.body, page.content_type, headers)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._answering(handler)
        self.write(handler, status, body, content_type, headers)

    @staticmethod
    def write(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None, headers: dict[str, str] | None = None
    ) -> None:
        """One whole answer."""
        try:
            handler.send_response(status)
            if content_type:
                handler.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            if status != 304:
                handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if status != 304:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@dataclass
class ForwardProxy:
    """A plain HTTP forward proxy on loopback (an egress proxy stand-in): it answers absolute-form GETs by
    fetching the URL itself, tunnels CONNECT (https), and records each URL (or CONNECT target) and Host
    header it was asked for."""

    asked: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> ForwardProxy:
        import http.client
        from urllib.parse import urlsplit

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                proxy.asked.append((self.path, self.headers.get("Host", "")))
                target = urlsplit(self.path)
                if target.hostname not in ("127.0.0.1", "localhost"):  # this stand-in reaches loopback only
                    Website.write(self, 502, b"not a loopback target", "text/plain")
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                upstream.request("GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers)
                answer = upstream.getresponse()
                body = answer.read()
                passed = {k: v for k, v in answer.getheaders() if k.lower() in ("etag", "last-modified", "location")}
                Website.write(self, answer.status, body, answer.getheader("Content-Type"), passed)
                upstream.close()

            def do_CONNECT(self) -> None:  # noqa: N802 (https: a tunnel to the address asked for)
                import select
                import socket

                proxy.asked.append((f"CONNECT {self.path}", self.headers.get("Host", "")))
                host, _, port = self.path.rpartition(":")
                if host not in ("127.0.0.1", "localhost"):
                    Website.write(self, 502, b"not a loopback target", "text/plain")
                    return
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                ends = [self.connection, upstream]
                try:
                    while True:
                        ready, _, _ = select.select(ends, [], [], 10)
                        if not ready:
                            return
                        for end in ready:
                            data = end.recv(65536)
                            if not data:
                                return
                            (upstream if end is self.connection else self.connection).sendall(data)
                except OSError:
                    return
                finally:
                    upstream.close()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="proxy", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a fetcher that hung up at its size cap is fine
            super().handle_error(request, client_address)


def _pieces(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    chunk = b"<p>" + b"x" * (size - 7) + b"</p>\n"
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


def http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


def rss(title: str, items: list[dict[str, str]], link: str = "http://127.0.0.1/") -> str:
    """An RSS 2.0 document; each item may have title, link, pubDate, description, guid."""
    parts = [f"<item>{''.join(f'<{k}>{_xml(v)}</{k}>' for k, v in item.items())}</item>" for item in items]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{_xml(title)}</title><link>{_xml(link)}</link><description>test feed</description>"
        + "".join(parts)
        + "</channel></rss>\n"
    )


def atom(title: str, entries: list[dict[str, str]]) -> str:
    """An Atom document; each entry has title, link, updated (ISO), summary."""
    parts = []
    for entry in entries:
        parts.append(
            f'<entry><title>{_xml(entry["title"])}</title><link href="{_xml(entry["link"])}"/>'
            f"<id>{_xml(entry['link'])}</id><updated>{entry['updated']}</updated>"
            f"<summary>{_xml(entry.get('summary', ''))}</summary></entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{_xml(title)}</title><id>urn:test</id><updated>2026-01-01T00:00:00Z</updated>" + "".join(parts) + "</feed>\n"
    )


def article_page(title: str, paragraphs: list[str], *, site: str | None = None, published: str | None = None) -> str:
    """A news page with its article in <article>, and page furniture around it."""
    meta = ""
    if site:
        meta += f'<meta property="og:site_name" content="{_xml(site)}">'
    if published:
        meta += f'<meta property="article:published_time" content="{published}">'
    body = "".join(f"<p>{_xml(p)}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{_xml(title)}</title>{meta}</head><body>"
        '<nav><a href="/">Home</a> <a href="/world">World</a></nav>'
        f"<article><h1>{_xml(title)}</h1>{body}</article>"
        "<footer>Copyright the test outlet.</footer></body></html>"
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

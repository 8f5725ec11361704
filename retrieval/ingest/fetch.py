"""Fetching feeds and pages from the web, safely and politely.

Safely: only http(s), and never from a loopback, private, link-local, multicast or otherwise
non-public address (cloud metadata services live at link-local ones), checked after DNS resolution
and again on every redirect. The request then goes to the address that was checked (the host name
stays in the Host header and TLS's server name), so a second DNS answer cannot point it elsewhere.
A host named in `allowed_hosts` may resolve anywhere (an intranet feed; tests on loopback).

Politely: a user agent naming newsbot, robots.txt respected (RFC 9309: a missing one allows
everything, an unreachable one nothing), at most `per_host` requests to one host at once and a pause
between two (or the host's Crawl-delay), conditional requests, and on every response a timeout, a size
cap and a bounded number of redirects. The fetcher is shared by the threads of a poll.

Through a proxy (`proxy`, setting fetch_proxy) every target is checked the same way before anything is
sent. An http request is sent to the proxy pinned to the checked address, so it never resolves a name;
an https one is a tunnel (CONNECT) to the checked host name, as TLS must name it, which the proxy resolves.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import httpx

logger = logging.getLogger(__name__)

# The product token robots.txt rules name (the start of the user agent).
ROBOTS_AGENT = "newsbot"
_ROBOTS_TTL_S = 24 * 3600  # RFC 9309: a robots.txt should not be cached for more than a day
_MAX_CLIENTS = 64  # one HTTP client per host name (its connections carry that host's TLS name)
_REDIRECTS = {301, 302, 303, 307, 308}

Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """A URL that could not be fetched, and why (in words an admin can act on)."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url, self.reason, self.status = url, reason, status  # status: the HTTP status that refused it
        super().__init__(f"{url}: {reason}")


@dataclass(frozen=True)
class FetchPolicy:
    """The limits every request obeys (settings fetch_*)."""

    user_agent: str = "newsbot/0.1 (news feed reader)"
    timeout: float = 20.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    host_pause: float = 1.0
    allowed_hosts: frozenset[str] = frozenset()
    concurrency: int = 8  # hosts fetched from at once (`Collector.poll`)
    per_host: int = 1  # requests one host gets at once
    proxy: str = ""  # an HTTP proxy for every request ("" for none)

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        return cls(
            user_agent=settings.fetch_user_agent,
            timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            host_pause=settings.fetch_host_pause_seconds,
            allowed_hosts=frozenset(host.lower() for host in settings.fetch_allowed_hosts),
            concurrency=settings.fetch_concurrency,
            per_host=settings.fetch_per_host,
            proxy=settings.fetch_proxy,
        )


@dataclass(frozen=True)
class Fetched:
    """A response: 200 with its body, or 304 (`not_modified`) to a conditional request."""

    url: str  # after redirects
    status: int
    content: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(host, f"the host name {host!r} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def public_address(address: str) -> bool:
    """True for an address on the public internet (not loopback, private, link-local, reserved, ...).

    An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by that one too.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not public_address(str(embedded)):
            return False
        if ip.ipv4_mapped is not None:
            return True
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allowed_hosts: frozenset[str] = frozenset()) -> httpx.URL:
    """The parsed URL, if it is one newsbot may fetch at all (http or https, with a host); before any DNS."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(url, "not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise FetchError(url, f"only http and https URLs can be fetched, not {parsed.scheme or 'a bare name'}")
    if not parsed.host:
        raise FetchError(url, "the URL has no host")
    if parsed.userinfo:
        raise FetchError(url, "URLs with a user name or password are not fetched")
    host = parsed.host.lower()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and host not in allowed_hosts and not public_address(host):
        raise FetchError(url, f"{host} is not a public address (setting fetch_allowed_hosts)")
    if (host == "localhost" or host.endswith(".localhost")) and host not in allowed_hosts:
        raise FetchError(url, f"{host} is not a public address (setting fetch_allowed_hosts)")
    return parsed


@dataclass
class _Robots:
    parser: RobotFileParser | None  # None: robots.txt unreachable, so nothing may be fetched
    fetched: float
    reason: str = ""


@dataclass
class Fetcher:
    """GET with the policy's safety and politeness; thread-safe, one instance for the process."""

    policy: FetchPolicy = field(default_factory=FetchPolicy)
    resolver: Resolver = system_resolver
    respect_robots: bool = True
    # Certificates are verified against the URL's host name (not the address connected to); a context
    # with other trusted roots may be given.
    verify: ssl.SSLContext | bool = True
    # How the per-host pause reads the time and waits.
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._clients: dict[str, httpx.Client] = {}
        self._robots: dict[str, _Robots] = {}
        self._last: dict[str, float] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}  # `policy.per_host` requests to a host at once
        self._robots_locks: dict[str, threading.Lock] = {}  # one robots.txt fetch a host, however many threads ask
        self._lock = threading.Lock()
        self.requests = 0  # requests sent (robots.txt included): what a poll cost

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None, accept: str = "*/*") -> Fetched:
        """Fetch `url`, following redirects; a conditional request when `etag` or `last_modified` is given."""
        return self._get(url, etag=etag, last_modified=last_modified, accept=accept, robots=self.respect_robots)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- one request, and the redirects after it --------------------------------------------

    def _get(self, url: str, *, etag: str | None, last_modified: str | None, accept: str, robots: bool) -> Fetched:
        seen: set[str] = set()
        current = url
        for _ in range(self.policy.max_redirects + 1):
            parsed = check_url(current, self.policy.allowed_hosts)
            if str(parsed) in seen:
                raise FetchError(url, f"redirect loop (back to {current})")
            seen.add(str(parsed))
            if robots:
                self._check_robots(parsed, url)
            response = self._request(parsed, etag=etag, last_modified=last_modified, accept=accept, original=url)
            if isinstance(response, str):  # a redirect's Location
                current = urljoin(str(parsed), response)
                continue
            return response
        raise FetchError(url, f"too many redirects (more than {self.policy.max_redirects}, setting fetch_max_redirects)")

    def _address(self, parsed: httpx.URL, original: str) -> str:
        """The address to connect to: resolved here and checked, unless the host is allowed by name."""
        host = parsed.host.lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self.resolver(host, port)
        if not addresses:
            raise FetchError(original, f"the host name {host!r} does not resolve")
        if host not in self.policy.allowed_hosts:
            refused = [a for a in addresses if not public_address(a)]
            if refused:
                raise FetchError(
                    original, f"{host} resolves to {refused[0]}, which is not a public address (setting fetch_allowed_hosts)"
                )
        return addresses[0]

    def _request(
        self, parsed: httpx.URL, *, etag: str | None, last_modified: str | None, accept: str, original: str
    ) -> Fetched | str:
        """One GET: a `Fetched`, or the Location of a redirect. Raises FetchError for everything else."""
        address = self._address(parsed, original)
        host = parsed.host.lower()
        pinned = parsed.copy_with(host=address)
        if self.policy.proxy and parsed.scheme == "https":
            # A tunnel (CONNECT) cannot be asked for an address while TLS names the host (httpx names the
            # tunnel's host to TLS): it is asked for the name, which was checked here first.
            pinned = parsed
        headers = {"Host": parsed.netloc.decode("ascii"), "Accept": accept, "Accept-Encoding": "gzip, deflate"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        with self._slot(host):
            self._pause(host)
            return self._send(parsed, pinned, headers, extensions, original)

    def _slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = threading.BoundedSemaphore(self.policy.per_host)
            return slot

    def _send(
        self, parsed: httpx.URL, pinned: httpx.URL, headers: dict[str, str], extensions: dict[str, Any], original: str
    ) -> Fetched | str:
        host = parsed.host.lower()
        deadline = time.monotonic() + self.policy.timeout
        client = self._client(host)
        try:
            with self._lock:
                self.requests += 1
            with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(original, f"redirect ({response.status_code}) without a Location")
                    return location
                if response.status_code == 304:
                    return Fetched(
                        str(parsed), 304, etag=headers.get("If-None-Match"), last_modified=headers.get("If-Modified-Since")
                    )
                if response.status_code != 200:
                    raise FetchError(
                        original,
                        f"the server answered {response.status_code} {response.reason_phrase}".rstrip(),
                        response.status_code,
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
                    raise FetchError(original, self._too_large(int(declared)))
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.policy.max_bytes:
                        raise FetchError(original, self._too_large(None))
                    if time.monotonic() > deadline:
                        raise FetchError(original, f"timed out after {self.policy.timeout:g} s (setting fetch_timeout_seconds)")
                return Fetched(
                    str(parsed),
                    200,
                    bytes(body),
                    response.headers.get("content-type", ""),
                    response.headers.get("etag"),
                    response.headers.get("last-modified"),
                )
        except httpx.TimeoutException as exc:
            raise FetchError(original, f"timed out after {self.policy.timeout:g} s (setting fetch_timeout_seconds)") from exc
        except httpx.HTTPError as exc:
            raise FetchError(original, f"could not be fetched ({type(exc).__name__}: {exc})") from exc

    def _too_large(self, size: int | None) -> str:
        limit = f"{self.policy.max_bytes / 1e6:.1f} MB"
        shown = f" ({size / 1e6:.1f} MB)" if size is not None else ""
        return f"the response is larger than {limit}{shown} (setting fetch_max_bytes)"

    def _client(self, host: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                if len(self._clients) >= _MAX_CLIENTS:
                    oldest = next(iter(self._clients))
                    self._clients.pop(oldest).close()
                # trust_env off: a proxy from the environment is never used; the one of the settings is
                # asked only for targets checked here (the module's docstring).
                client = httpx.Client(
                    timeout=httpx.Timeout(self.policy.timeout),
                    follow_redirects=False,
                    headers={"User-Agent": self.policy.user_agent},
                    trust_env=False,
                    verify=self.verify,
                    proxy=self.policy.proxy or None,
                )
                self._clients[host] = client
            return client

    def _pause(self, host: str) -> None:
        """Wait until this host's pause (or its robots.txt Crawl-delay) since the last request has passed."""
        pause = self.policy.host_pause
        robots = self._robots.get(host)
        if robots is not None and robots.parser is not None:
            delay = robots.parser.crawl_delay(ROBOTS_AGENT)
            if delay is not None:
                pause = max(pause, min(float(delay), 60.0))
        with self._lock:
            now = self.clock()
            wait = self._last.get(host, -1e9) + pause - now
            self._last[host] = now + max(wait, 0.0)
        if wait > 0:
            self.sleep(wait)

    # -- robots.txt -------------------------------------------------------------------------

    def _check_robots(self, parsed: httpx.URL, original: str) -> None:
        host = parsed.host.lower()
        origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
        with self._lock:
            loading = self._robots_locks.setdefault(host, threading.Lock())
        with loading:
            robots = self._robots.get(host)
            if robots is None or time.monotonic() - robots.fetched > _ROBOTS_TTL_S:
                robots = self._load_robots(origin)
                self._robots[host] = robots
        if robots.parser is None:
            raise FetchError(original, f"{origin}/robots.txt cannot be read ({robots.reason}), so nothing there is fetched")
        if not robots.parser.can_fetch(ROBOTS_AGENT, str(parsed)):
            raise FetchError(original, "robots.txt does not allow newsbot to fetch it")

    def _load_robots(self, origin: str) -> _Robots:
        parser = RobotFileParser()
        try:
            response = self._get(f"{origin}/robots.txt", etag=None, last_modified=None, accept="text/plain", robots=False)
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500:  # no rules (RFC 9309 2.3.1.3)
                parser.parse([])
                return _Robots(parser, time.monotonic())
            logger.warning("robots.txt of %s unreachable: %s", origin, exc.reason)
            return _Robots(None, time.monotonic(), exc.reason)
        parser.parse(response.content.decode("utf-8", errors="replace").splitlines())
        return _Robots(parser, time.monotonic())

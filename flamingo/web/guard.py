"""The REST API's door: every request passes the same checks, in one place,
before any route (or Klein's routing) sees it.

A browser must not be able to drive the API. Without a token the API listens
on loopback only, which keeps other machines out but not the web pages the
operator opens: they can send simple POSTs to 127.0.0.1 (CSRF), and DNS
rebinding lets a page read and write as if it were same-origin. So, in order:

1. ``Host`` must name loopback, ``localhost``, ``web.host`` or an entry of
   ``web.allowed_hosts`` (``*``: any) — else 421: a rebound name is refused.
2. ``Origin``, when sent, must be the API's own (``http(s)://<Host>``) — else
   403, reads included. No CORS header is ever sent.
3. Credentials, when ``web.token`` is set — else 401. ``authenticated()`` is
   the one question; more credential sources plug in with ``add_credential``.
4. The body must fit ``web.max_body`` — else 413.

The rules are pure functions of header values; :class:`Guard` is the thin
resource that applies them, answers refusals in JSON and logs every request.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from flamingo.config import WebConfig, is_loopback_host
from flamingo.logs import logger

__all__ = ["Guard", "Refusal", "HostRule", "parse_host", "same_origin", "bearer_credential"]

log = logger("flamingo.web")

#: ``name`` or ``[v6]``, then an optional ``:port`` — nothing else (no userinfo, no path).
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSPECIFIED = frozenset({"0.0.0.0", "::", ""})

#: A request that may go on, or that may not, say the credential sources.
Credential = Callable[[IRequest], bool]


@attrs.frozen
class Refusal:
    """An answer given instead of the route's: ``{"error", "detail"}``."""

    status: int
    error: str
    detail: object = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def render(self, request: IRequest) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        for name, value in self.headers:
            request.setHeader(name, value)
        return json.dumps({"error": self.error, "detail": self.detail}).encode("ascii")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``"[::1]:4711"`` -> ``("::1", 4711)``; None when it is not a plain host[:port]."""
    m = _HOST.fullmatch(value.strip().lower())
    if m is None:
        return None
    name, port = m.group(1), m.group(2)
    if name.startswith("["):
        name = name[1:-1]
    elif name.endswith("."):
        name = name[:-1]
    if port is not None and not 0 < int(port) < 65536:
        return None
    return name, int(port) if port is not None else None


@attrs.frozen
class HostRule:
    """Which ``Host`` names this API answers to (ports do not matter)."""

    names: frozenset[str]
    any_host: bool = False

    @classmethod
    def from_config(cls, web: WebConfig) -> HostRule:
        names = {n for n in web.allowed_hosts if n != "*"}
        own = parse_host(f"[{web.host}]" if ":" in web.host else web.host)
        if own is not None and own[0] not in _UNSPECIFIED:  # 0.0.0.0 names no host
            names.add(own[0])
        return cls(frozenset(names), "*" in web.allowed_hosts)

    def allows(self, host: str | None) -> bool:
        if host is None:
            return False
        parsed = parse_host(host)
        if parsed is None:
            return False
        name = parsed[0]
        return self.any_host or name in self.names or is_loopback_host(name)


def same_origin(origin: str, host: str) -> bool:
    """Is ``Origin`` this API's own origin, i.e. ``http(s)://`` + the ``Host`` asked for?

    ``null`` (sandboxed frames, file: pages) and anything unparsable are foreign.
    Both schemes count, for a TLS proxy in front; the port must match too.
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or parts.query \
            or parts.username is not None:
        return False
    ours = parse_host(host)
    if ours is None:
        return False
    default = _DEFAULT_PORTS[scheme]
    theirs = (parts.hostname.lower().rstrip("."), port if port is not None else default)
    return theirs == (ours[0], ours[1] if ours[1] is not None else default)


def bearer_credential(token: str) -> Credential:
    """``Authorization: Bearer <token>``, compared in constant time."""
    expected = f"Bearer {token}".encode()

    def check(request: IRequest) -> bool:
        given = request.getHeader(b"authorization") or b""
        if isinstance(given, str):
            given = given.encode("latin-1", "replace")
        return hmac.compare_digest(given, expected)

    return check


def _one(request: IRequest, name: bytes) -> tuple[bool, str | None]:
    """(present more than once?, the value as text)."""
    values = request.requestHeaders.getRawHeaders(name) or []
    if not values:
        return False, None
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return len(values) > 1, text


def _body_size(request: IRequest) -> int:
    """What BoundedRequest counted (it stops buffering past the limit), else the buffer's size."""
    counted = getattr(request, "body_bytes", None)  # server.BoundedRequest
    if isinstance(counted, int) and counted:
        return counted
    content = getattr(request, "content", None)
    if content is None:
        return 0
    pos = content.tell()
    content.seek(0, 2)
    size: int = content.tell()
    content.seek(pos)
    return size


class Guard(Resource):
    """Wraps the API's resource: refuses before routing, logs every request.

    ``authenticated(request)`` is the single "may this request act?" answer;
    with ``web.token`` unset every request is. A further credential source
    (a session cookie, say) is ``guard.add_credential(check)``.
    """

    isLeaf = True

    def __init__(self, inner: IResource, web: WebConfig) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted leaves Resource untyped
        self.inner = inner
        self.hosts = HostRule.from_config(web)
        self.max_body = web.max_body
        self.token_required = bool(web.token)
        self._credentials: list[Credential] = (
            [bearer_credential(web.token)] if web.token else [])

    #: Paths whose request log line is DEBUG, not INFO (the dashboard's 1 s poll).
    quiet_paths: frozenset[str] = frozenset()

    def add_credential(self, check: Credential) -> None:
        """Accept requests ``check`` vouches for too (only matters with web.token set)."""
        self._credentials.append(check)

    def authenticated(self, request: IRequest) -> bool:
        return not self.token_required or any(c(request) for c in self._credentials)

    def refusal(self, request: IRequest) -> Refusal | None:
        """Why this request gets no further, or None."""
        twice, host = _one(request, b"host")
        # No Host at all is an HTTP/1.0 tool, never a browser: it passes.
        if twice or (host is not None and not self.hosts.allows(host)):
            return Refusal(421, "misdirected request", {
                "host": host, "allowed": "loopback, localhost, web.host, web.allowed_hosts"})
        twice, origin = _one(request, b"origin")
        if origin is not None and (twice or host is None or not same_origin(origin, host)):
            return Refusal(403, "cross-origin request refused",
                           {"origin": origin, "allowed": "the API's own origin only"})
        if not self.authenticated(request):
            return Refusal(401, "unauthorized", "send Authorization: Bearer <web.token>",
                           ((b"www-authenticate", b'Bearer realm="flamingo"'),))
        size = _body_size(request)
        if size > self.max_body:
            return Refusal(413, "body too large",
                           {"limit": f"web.max_body: at most {self.max_body} bytes",
                            "size": size})
        return None

    def render(self, request: Request) -> bytes | int:
        """The refusal, else the route's answer (bytes, or NOT_DONE_YET while a Deferred runs)."""
        started = time.monotonic()
        request.notifyFinish().addBoth(_log_request, request, started, self.quiet_paths)
        refused = self.refusal(request)
        if refused is not None:
            return refused.render(request)
        answer: bytes | int = self.inner.render(request)
        return answer


def _log_request(result: object, request: Request, started: float,
                 quiet_paths: frozenset[str] = frozenset()) -> None:
    path = urlsplit(request.uri.decode("latin-1")).path
    emit = log.debug if path in quiet_paths else log.info
    emit("{method} {path} {status} {ms:.1f}ms", method=request.method.decode("latin-1"),
         path=path, status=request.code, ms=(time.monotonic() - started) * 1000.0)

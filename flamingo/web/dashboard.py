"""The live dashboard (``GET /dashboard``): one HTML page, its CSS and
JavaScript, a vendored chart library, and one JSON snapshot the page polls.

Why polling and not Server-Sent Events: the daemon's rates are one-second
buckets, so a 1 s poll of :func:`snapshot` is as live as a push would be; a
poll is an ordinary request, so it goes through exactly the same token,
Origin/Host and body checks as every other route, holds no response open in
the reactor, and picks up again by itself after the daemon restarts. The
snapshot carries the last five minutes of events/s from the daemon's own ring
(``Stats.per_second``), so the chart is full the moment the page opens.

Auth: with ``web.token`` set, ``/dashboard?token=T`` answers the page with an
HttpOnly, SameSite=Strict cookie; that cookie then authenticates the page's
own API calls (:func:`authenticates` is the extra credential source the API's
token check consults). The cookie holds an HMAC of the token, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from twisted.web.iweb import IRequest
from twisted.web.server import Request

from flamingo._types import JsonObject
from flamingo.app import App
from flamingo.domain import catalog
from flamingo.domain.subscription import Subscription
from flamingo.web import documents

__all__ = ["COOKIE", "CSP", "PAGE_PATH", "DATA_PATH", "STATIC_PREFIX", "PARAM_KEYS",
           "cookie_value", "authenticates", "credential", "page", "static", "snapshot"]

PAGE_PATH = "/dashboard"
DATA_PATH = "/dashboard/data.json"
STATIC_PREFIX = "/dashboard/static/"
COOKIE = b"flamingo_dashboard"
STATIC_DIR = Path(__file__).with_name("static")

#: No inline script or style, nothing from another origin, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

#: v1.1's params the form offers first, by stream (other sources: their catalog params)
PARAM_KEYS = {"filter": ("track", "follow", "locations"), "sample": (), "firehose": ()}


def param_keys(source: str, stream: str) -> tuple[str, ...]:
    """The params the form offers for this source's stream, in order."""
    if source == "twitter":
        return PARAM_KEYS.get(stream, ())
    return catalog.spec_for(source).params

#: Files the page may load: relative path under static/ -> Content-Type.
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", "": "text/plain; charset=utf-8"}

# --- auth ---------------------------------------------------------------------

def cookie_value(token: str) -> bytes:
    """What the cookie holds for ``token``: an HMAC, so the cookie never is the token."""
    return hmac.new(token.encode(), b"flamingo dashboard cookie v1", hashlib.sha256) \
        .hexdigest().encode("ascii")


def _query_token(request: IRequest) -> bytes | None:
    query = urlsplit(request.uri).query
    values = parse_qs(query.decode("latin-1") if isinstance(query, bytes) else query)
    given = values.get("token")
    return given[0].encode("latin-1", "replace") if given else None


def _path(request: IRequest) -> str:
    path: str = urlsplit(request.uri.decode("latin-1")).path
    return path


def authenticates(request: IRequest, token: str) -> bool:
    """True when the dashboard cookie, or on ``GET /dashboard`` a ``?token=``,
    carries ``token``. The API's Bearer check stays the other source."""
    cookie = request.getCookie(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie, cookie_value(token)):
        return True
    if request.method == b"GET" and _path(request) == PAGE_PATH:
        given = _query_token(request)
        return given is not None and hmac.compare_digest(given, token.encode())
    return False


def credential(token: str) -> Callable[[IRequest], bool]:
    """:func:`authenticates` as a one-argument check, for an API guard's list of
    credential sources (next to the Bearer header)."""
    return lambda request: authenticates(request, token)


# --- the page and its files ---------------------------------------------------------

def _secure_headers(request: IRequest, content_type: str) -> None:
    request.setHeader(b"content-type", content_type.encode())
    request.setHeader(b"content-security-policy", CSP.encode())
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")  # ?token= never leaves in a Referer
    request.setHeader(b"x-frame-options", b"DENY")


def page(request: Request, token: str | None) -> bytes:
    """The HTML page; sets the cookie when opened with a valid ``?token=``."""
    if token:
        given = _query_token(request)
        if given is not None and hmac.compare_digest(given, token.encode()):
            request.addCookie(COOKIE, cookie_value(token), path=b"/", httpOnly=True,
                              sameSite="strict")
    _secure_headers(request, "text/html; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return (STATIC_DIR / "dashboard.html").read_bytes()


def static_file(name: str) -> Path | None:
    """The file under static/ that ``name`` names, or None (no escaping the folder)."""
    if not name or name.startswith("/") or "\\" in name:
        return None
    path = (STATIC_DIR / name).resolve()
    root = STATIC_DIR.resolve()
    if root not in path.parents or not path.is_file() or path.name == "dashboard.html":
        return None
    return path


def static(request: IRequest, name: str) -> bytes | None:
    """A file of the page (None when there is no such file)."""
    path = static_file(name)
    if path is None:
        return None
    ctype = STATIC_TYPES.get(path.suffix, "application/octet-stream")
    _secure_headers(request, ctype)
    request.setHeader(b"cache-control", b"no-cache")
    return path.read_bytes()


# --- the snapshot the page polls ------------------------------------------------------

def snapshot(app: App) -> JsonObject:
    """Everything the page and ``flamingo top`` show, read at one instant."""
    config = app.config
    store = app.store
    stats = app.stats.snapshot() if app.stats is not None else {}
    history = app.stats.per_second(300) if app.stats is not None else []
    wader = documents.wader_state(app)
    delivery = documents.delivery_status(app)
    subs = store.subscriptions() if store is not None else {}
    queues = stats.get("queues") or {}
    stream = config.stream
    params = documents.stream_params(app)
    keys = list(param_keys(config.source, stream))
    keys += sorted(k for k in params if k not in keys)
    return {
        "time": time.time(),
        "wader": wader,
        "stream": {"name": stream, "params": params, "keys": keys},
        "events": stats.get("events", {}),
        "rates": stats.get("rates", {}),
        "history": [{"t": t, "events": n} for t, n in history],
        "limit": stats.get("limit", {}),
        "connection": stats.get("connection", {}),
        "journal": delivery.get("journal") or stats.get("journal") or {},
        "sink": delivery.get("redis") or {},
        "backlog": delivery.get("backlog"),
        "redis": documents.redis_status(app),
        "subscriptions": [_subscription(app, subs[n], queues.get(n) or {}, store.prefix)
                          for n in sorted(subs)] if store is not None else [],
    }


def _subscription(app: App, sub: Subscription, queue: dict[str, int], prefix: str) -> JsonObject:
    doc = sub.to_dict()
    doc["queue"] = sub.queue_key(prefix)
    doc["length"] = queue.get("length")
    doc["trimmed"] = queue.get("trimmed", 0)
    doc["pushed"] = queue.get("pushed", 0)
    if sub.format == "stream":
        doc["stream"] = documents.stream_stats(app, sub.name)
    return doc

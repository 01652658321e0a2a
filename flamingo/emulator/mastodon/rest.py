"""The REST side: instance discovery, the timelines, tokens and the rate limit.

``/api/v2/instance`` names the streaming server (``configuration.urls.streaming``,
another port of the emulator, as big instances use another host);
``/api/v1/streaming`` on this host redirects there. Timelines page as
Mastodon's do: newest first, ``limit`` at most 40 (default 20), ``since_id``
/ ``max_id`` / ``min_id``, and a ``Link`` header whose ``next`` goes back
(``max_id``) and ``prev`` forward (``min_id``), keeping only ``limit``,
``local`` and ``remote`` as Mastodon does. Every answer counts against the
token's budget (300 per 5 minutes by default): ``X-RateLimit-*`` headers, 429
when spent.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import attrs
import orjson
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from flamingo.emulator.mastodon.corpus import LOCAL_DOMAIN
from flamingo.emulator.mastodon.streaming import json_error, token_of
from flamingo.emulator.mastodon.timeline import LISTS, StreamKey

if TYPE_CHECKING:
    from flamingo.emulator.mastodon.server import MastodonEmulator

__all__ = ["RestResource", "RateLimit", "MAX_LIMIT"]

MAX_LIMIT = 40


@attrs.define
class RateLimit:
    """A fixed window per caller, as Mastodon's rack-attack throttle counts."""

    limit: int
    period: float
    windows: dict[str, tuple[float, int]] = attrs.Factory(dict)

    def take(self, who: str, now: float) -> tuple[bool, int, float]:
        """(allowed, remaining, reset time) after one request by ``who``."""
        start, used = self.windows.get(who, (now, 0))
        if now >= start + self.period:
            start, used = now, 0
        used += 1
        self.windows[who] = (start, used)
        return used <= self.limit, max(0, self.limit - used), start + self.period


def _arg(request: Request, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[0].decode() if values else None


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(max(t, 0), tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class RestResource(Resource):
    """Every REST path the emulator answers, routed by hand (a small table)."""

    isLeaf = True

    def __init__(self, emu: MastodonEmulator) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted.web's Resource
        self.emu = emu

    def render_GET(self, request: Request) -> bytes:
        emu = self.emu
        path = "/" + "/".join(p.decode() for p in request.postpath or [])
        emu.counters["rest_requests"] += 1
        if path == "/api/v1/streaming" or path.startswith("/api/v1/streaming/"):
            request.redirect(emu.streaming_url.replace("ws", "http", 1).encode() + request.uri)
            return b""
        if path == "/api/v2/instance" and emu.instance_v2:
            return self._json(request, emu.instance_document())
        if path == "/api/v1/instance":  # 3.x's shape: urls.streaming_api
            return self._json(request, {"uri": LOCAL_DOMAIN, "title": "Mastodon (Flamingo emulator)",
                                        "version": "3.5.3", "urls": {"streaming_api": emu.streaming_url}})
        token = token_of(request)
        if token is not None:
            problem = emu.token_problem(token, streaming=False)
            if problem is not None:
                return json_error(request, 401, problem)
        who = token or str(request.getClientAddress())
        allowed, remaining, reset = emu.rate_limit.take(str(who), emu.clock.seconds())
        request.setHeader("x-ratelimit-limit", str(emu.rate_limit.limit))
        request.setHeader("x-ratelimit-remaining", str(remaining))
        request.setHeader("x-ratelimit-reset", _iso(reset))
        if not allowed:
            emu.counters["rate_limited"] += 1
            return json_error(request, 429, "Too many requests")
        key = self._timeline_key(path, request)
        if key is None:
            return json_error(request, 404, "Record not found")
        if emu.fail_timelines is not None:  # a REST API in trouble (tests)
            return json_error(request, emu.fail_timelines, "Something went wrong on our end")
        if key[0] in ("list", "user") and token is None:
            return json_error(request, 401, "The access token is invalid")
        gate = emu.hold_timelines
        if gate is not None and not gate.called:  # a slow server: answered when released
            emu.counters["timelines_held"] += 1

            gone: list[object] = []
            request.notifyFinish().addBoth(gone.append)  # the client went away meanwhile

            def answer(result: object) -> object:
                if not gone:
                    request.write(self._timeline(request, path, key))
                    request.finish()
                return result

            gate.addCallback(answer)
            return NOT_DONE_YET  # type: ignore[return-value]  # twisted.web's int marker
        return self._timeline(request, path, key)

    def _timeline_key(self, path: str, request: Request) -> StreamKey | None:
        parts = path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "timelines"] or len(parts) < 4:
            return None
        local = (_arg(request, "local") or "").lower() in ("true", "1")
        remote = (_arg(request, "remote") or "").lower() in ("true", "1")
        if parts[3:] == ["public"]:
            return ("public:local",) if local else ("public:remote",) if remote else ("public",)
        if parts[3] == "tag" and len(parts) == 5 and parts[4]:
            return ("hashtag:local" if local else "hashtag", parts[4].lower())
        if parts[3] == "list" and len(parts) == 5 and parts[4] in LISTS:
            return ("list", parts[4])
        if parts[3:] == ["home"]:
            return ("user",)
        return None

    def _timeline(self, request: Request, path: str, key: StreamKey) -> bytes:
        emu = self.emu
        try:
            limit = min(MAX_LIMIT, max(1, int(_arg(request, "limit") or 20)))
        except ValueError:
            return json_error(request, 422, "limit must be a number")
        since, max_id, min_id = _arg(request, "since_id"), _arg(request, "max_id"), _arg(request, "min_id")
        page = emu.timeline.page(key, since_id=since, max_id=max_id, min_id=min_id, limit=limit)
        emu.counters["timeline_pages"] += 1
        if page:
            newest = orjson.loads(page[0])["id"]
            oldest = orjson.loads(page[-1])["id"]
            keep = [("limit", str(limit))] + [(k, v) for k in ("local", "remote")
                                              if (v := _arg(request, k)) is not None]
            base = emu.url + quote(path)
            nxt = base + "?" + urlencode(keep + [("max_id", oldest)])
            prv = base + "?" + urlencode(keep + [("min_id", newest)])
            request.setHeader("link", f'<{nxt}>; rel="next", <{prv}>; rel="prev"')
        request.setHeader("content-type", "application/json; charset=utf-8")
        return b"[" + b",".join(page) + b"]"

    def _json(self, request: Request, obj: object) -> bytes:
        request.setHeader("content-type", "application/json; charset=utf-8")
        return orjson.dumps(obj)


def instance_document(url: str, streaming_url: str, version: str = "4.3.2") -> dict[str, object]:
    """``/api/v2/instance`` with the parts clients read (Instance entity, 4.x)."""
    return {
        "domain": LOCAL_DOMAIN, "title": "Mastodon (Flamingo emulator)", "version": version,
        "source_url": "https://github.com/mastodon/mastodon",
        "description": "A local stand-in for a Mastodon instance: statuses made continuously.",
        "usage": {"users": {"active_month": 1234}},
        "thumbnail": {"url": f"{url}/packs/media/images/preview.png"},
        "languages": ["en"],
        "configuration": {
            "urls": {"streaming": streaming_url, "status": None, "about": f"{url}/about",
                     "privacy_policy": f"{url}/privacy-policy", "terms_of_service": None},
            "vapid": {"public_key": "BCk-QqERU0q-CfYZjcuB6lnyyOYfJ2AifKqfeGIm7Z-HiTU5T9eTG5GxVA0_OH5m"},
            "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
            "statuses": {"max_characters": 500, "max_media_attachments": 4,
                         "characters_reserved_per_url": 23},
            "media_attachments": {"image_size_limit": 16777216, "video_size_limit": 103809024},
            "polls": {"max_options": 4, "max_characters_per_option": 50},
            "translation": {"enabled": False},
        },
        "registrations": {"enabled": False, "approval_required": False, "message": None},
        "api_versions": {"mastodon": 2},
        "contact": {"email": f"admin@{LOCAL_DOMAIN}", "account": None},
        "rules": [],
    }

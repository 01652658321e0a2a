"""The streaming server: WebSocket multiplexing, SSE, health, and its faults.

One ``StreamingResource`` serves ``/api/v1/streaming`` (the WebSocket, by
autobahn's server protocol), ``/api/v1/streaming/health`` and the SSE paths
(``/api/v1/streaming/public/local``, ``/hashtag?tag=``...). The token is
checked before the upgrade, so a refusal is a plain HTTP answer with
Mastodon's ``{"error": ...}`` body. Sessions subscribe to stream keys and
get the timeline's events for them: WebSocket frames
``{"stream": [...], "event": ..., "payload": "<JSON string>"}``, SSE
``event:``/``data:`` lines. Pings (WebSocket) and ``:thump`` (SSE) run on
the emulator's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from flamingo.emulator.http import as_tcp
from flamingo.emulator.mastodon.timeline import LISTS, Event, StreamKey

if TYPE_CHECKING:
    from flamingo.emulator.mastodon.server import MastodonEmulator

__all__ = ["StreamingResource", "Session", "stream_key", "SSE_PATHS", "StreamError"]

#: SSE path (after /api/v1/streaming/) -> stream name
SSE_PATHS = {"public": "public", "public/local": "public:local", "public/remote": "public:remote",
             "hashtag": "hashtag", "hashtag/local": "hashtag:local", "list": "list", "user": "user",
             "user/notification": "user:notification", "direct": "direct"}
_STREAMS = frozenset(SSE_PATHS.values())


class StreamError(Exception):
    """A subscription the server refuses: Mastodon's error frame."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def stream_key(stream: str, tag: str | None = None, list_id: str | None = None) -> StreamKey:
    """The key of one subscription (``("hashtag", "python")``), or StreamError."""
    if stream not in _STREAMS:
        raise StreamError(400, "Unknown stream type")
    if stream.startswith("hashtag"):
        if not tag:
            raise StreamError(400, "No tag for stream provided")
        return (stream, tag.lower().lstrip("#"))
    if stream == "list":
        if not list_id:
            raise StreamError(400, "No list for stream provided")
        if list_id not in LISTS:
            raise StreamError(404, "Not authorized to stream this list")
        return (stream, list_id)
    return (stream,)


def _first(params: Mapping[bytes, Sequence[bytes]] | Mapping[str, Sequence[str]], name: str) -> str | None:
    for k, v in params.items():
        key = k.decode() if isinstance(k, bytes) else k
        if key == name and v:
            value = v[0]
            return value.decode() if isinstance(value, bytes) else value
    return None


def token_of(request: Request) -> str | None:
    """Authorization: Bearer, Sec-WebSocket-Protocol, or ``access_token`` (legacy)."""
    auth = request.getHeader("authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    proto = request.getHeader("sec-websocket-protocol")
    if proto:
        return proto.split(",")[0].strip()
    return _first(request.args, "access_token")


def json_error(request: Request, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader("content-type", "application/json; charset=utf-8")
    return orjson.dumps({"error": message})


class Session:
    """What every streaming connection shares: its keys, its heartbeat, fault states."""

    kind = "?"

    def __init__(self, emu: MastodonEmulator) -> None:
        self.emu = emu
        self.keys: set[StreamKey] = set()
        self.beat: IDelayedCall | None = None
        self.stalled = False
        self.sent = 0

    def deliver(self, event: Event) -> None:
        if self.stalled:
            return
        for key in self.keys & event.keys:
            self.send_event(key, event)
            self.sent += 1

    def send_event(self, key: StreamKey, event: Event) -> None:
        raise NotImplementedError

    def heartbeat(self) -> None:
        raise NotImplementedError

    def start_beat(self, interval: float) -> None:
        if interval > 0:
            self.beat = self.emu.clock.callLater(interval, self._beat, interval)

    def _beat(self, interval: float) -> None:
        self.beat = self.emu.clock.callLater(interval, self._beat, interval)
        if not self.stalled:
            self.heartbeat()

    def stop_beat(self) -> None:
        if self.beat is not None and self.beat.active():
            self.beat.cancel()
        self.beat = None

    def drop(self) -> None:
        raise NotImplementedError

    def stall(self, on: bool) -> None:
        raise NotImplementedError


class WsSession(WebSocketServerProtocol):
    """One multiplexed WebSocket connection."""

    factory: _WsFactory
    session: _WsState | None = None  # set by the handshake

    def onConnect(self, request: ConnectionRequest) -> str | None:
        self.session = session = _WsState(self.factory.emu, self)
        stream = _first(request.params, "stream")
        if stream:  # a single-purpose connection: ?stream=hashtag&tag=...
            try:
                session.keys.add(stream_key(stream, _first(request.params, "tag"),
                                                 _first(request.params, "list")))
            except StreamError:
                pass
        return request.protocols[0] if request.protocols else None

    def onOpen(self) -> None:
        if self.session is not None:
            self.factory.emu.session_opened(self.session)
            self.session.start_beat(self.factory.emu.options.ping_interval)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None:
            self.session.message(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:  # None: the handshake never got that far
            self.session.stop_beat()
            self.factory.emu.session_closed(self.session)


class _WsState(Session):
    kind = "websocket"

    def __init__(self, emu: MastodonEmulator, proto: WsSession) -> None:
        super().__init__(emu)
        self.proto = proto

    def message(self, payload: bytes) -> None:
        try:
            msg = orjson.loads(payload)
            kind = msg.get("type")
            raw_list = msg.get("list")
            key = stream_key(str(msg.get("stream", "")), msg.get("tag"),
                             None if raw_list is None else str(raw_list))
        except (orjson.JSONDecodeError, AttributeError):
            self._send({"error": "Error parsing request body", "status": 400})
            return
        except StreamError as e:
            self._send({"error": e.message, "status": e.status})
            return
        self.emu.client_messages.append(msg)
        if kind == "subscribe":
            self.keys.add(key)
        elif kind == "unsubscribe":
            self.keys.discard(key)

    def _send(self, obj: object) -> None:
        if self.proto.state != WebSocketServerProtocol.STATE_OPEN:
            return  # dropped or closing: its onClose is on the way
        self.proto.sendMessage(orjson.dumps(obj))  # type: ignore[no-untyped-call]  # autobahn's is untyped

    def send_event(self, key: StreamKey, event: Event) -> None:
        self._send({"stream": list(key), "event": event.name, "payload": event.payload})

    def heartbeat(self) -> None:
        if self.proto.state == WebSocketServerProtocol.STATE_OPEN:
            self.proto.sendPing()

    def drop(self) -> None:
        self.stop_beat()
        self.stalled = True  # nothing more is sent
        self.proto.dropConnection(abort=True)

    def stall(self, on: bool) -> None:
        self.stalled = on
        transport = self.proto.transport
        if transport is not None:  # not reading either: pings go unanswered
            if on:
                as_tcp(transport).pauseProducing()
            else:
                as_tcp(transport).resumeProducing()


class _SseState(Session):
    kind = "sse"

    def __init__(self, emu: MastodonEmulator, request: Request, key: StreamKey) -> None:
        super().__init__(emu)
        self.request = request
        self.keys.add(key)

    def send_event(self, key: StreamKey, event: Event) -> None:
        self.request.write(b"event: " + event.name.encode() + b"\ndata: " + event.payload.encode() + b"\n\n")

    def heartbeat(self) -> None:
        self.request.write(b":thump\n")

    def drop(self) -> None:
        self.stop_beat()
        self.stalled = True
        transport = self.request.channel.transport
        if transport is not None:
            as_tcp(transport).abortConnection()

    def stall(self, on: bool) -> None:
        self.stalled = on


class _WsFactory(WebSocketServerFactory):
    protocol = WsSession  # type: ignore[assignment]  # autobahn's own protocol class attribute

    def __init__(self, emu: MastodonEmulator) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # autobahn's is untyped
        self.emu = emu


class StreamingResource(Resource):
    """``/api/v1/streaming`` and below: upgrade, health, SSE."""

    isLeaf = True

    def __init__(self, emu: MastodonEmulator) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted.web's Resource
        self.emu = emu
        self.ws = WebSocketResource(_WsFactory(emu))  # type: ignore[no-untyped-call]  # autobahn's

    def render_GET(self, request: Request) -> bytes | int:
        emu = self.emu
        full = "/".join(p.decode() for p in request.postpath or []).strip("/")
        if full != "api/v1/streaming" and not full.startswith("api/v1/streaming/"):
            return json_error(request, 404, "Not found")
        path = full[len("api/v1/streaming"):].strip("/")
        refusing = emu.faults.refusing()
        if path == "health":
            if refusing and not emu.faults.health_ok:
                request.setResponseCode(502)
                return b"Bad Gateway"
            request.setHeader("content-type", "text/plain")
            return b"OK"
        if refusing:
            emu.counters["refused"] += 1
            return json_error(request, 502, "Bad Gateway: the streaming server is down")
        token = token_of(request)
        problem = emu.token_problem(token, streaming=True)
        if problem is not None:
            emu.counters["unauthorized"] += 1
            return json_error(request, 401, problem)
        if path == "":
            upgrade = (request.getHeader("upgrade") or "").lower()
            if upgrade != "websocket":
                return json_error(request, 400, "Can only be used with a WebSocket upgrade or a stream path")
            emu.counters["websocket_connections"] += 1
            return self.ws.render(request)  # type: ignore[no-untyped-call,no-any-return]  # autobahn's
        stream = SSE_PATHS.get(path)
        if stream is None:
            return json_error(request, 404, "Not found")
        try:
            key = stream_key(stream, _first(request.args, "tag"), _first(request.args, "list"))
        except StreamError as e:
            return json_error(request, e.status, e.message)
        return self._sse(request, key)

    def _sse(self, request: Request, key: StreamKey) -> int:
        emu = self.emu
        emu.counters["sse_connections"] += 1
        request.setHeader("content-type", "text/event-stream")
        request.setHeader("cache-control", "no-store")
        request.write(b":)\n")
        session = _SseState(emu, request, key)
        emu.session_opened(session)
        session.start_beat(emu.options.thump_interval)

        def gone(_: object) -> None:
            session.stop_beat()
            emu.session_closed(session)

        request.notifyFinish().addBoth(gone)
        return NOT_DONE_YET



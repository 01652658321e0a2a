"""The WebSocket transport against a real autobahn server on 127.0.0.1.

The link's timers (connect timeout, pings, close) run on a ``task.Clock``;
the network is real loopback. Each test scripts the server's side.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.source import Fatal, Retry, Verdict
from flamingo.stream.websocket import (
    EndNotice,
    FrameError,
    WebSocketLink,
    close_verdict,
    handshake_verdict,
)
from tests.support.waiting import until


class Recorder:
    """LinkEvents that keep everything."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.frames: list[bytes] = []
        self.alives = 0

    def responded(self, link: Any) -> None:
        self.log.append(("responded", None))

    def refused(self, link: Any, verdict: Verdict) -> None:
        self.log.append(("refused", verdict))

    def alive(self, link: Any) -> None:
        self.alives += 1

    def messages(self, link: Any, frames: list[bytes]) -> None:
        self.frames.extend(frames)
        self.log.append(("messages", len(frames)))

    def ended(self, link: Any, verdict: Verdict) -> None:
        self.log.append(("ended", verdict))

    def names(self) -> list[str]:
        return [n for n, _ in self.log if n != "messages"]

    def last(self) -> Any:
        return self.log[-1][1]


class Stats:
    def __init__(self) -> None:
        self.errors: list[tuple[str, bytes]] = []

    def parse_error(self, kind: str, sample: bytes, n: int) -> None:
        self.errors.append((kind, sample))


class Server(WebSocketServerProtocol):  # type: ignore[misc]
    """A scriptable peer: the factory's ``script`` says what to do."""

    def onConnect(self, request: Any) -> None:
        self.factory.requests.append(request)
        deny = self.factory.script.get("deny")
        if deny:
            raise ConnectionDeny(*deny)

    def onOpen(self) -> None:
        self.factory.peers.append(self)
        for payload, binary in self.factory.script.get("send", ()):
            self.sendMessage(payload, isBinary=binary)
        close = self.factory.script.get("close")
        if close is not None:
            code, reason = close  # any code a server may send (sendClose allows 1000 and 3000-4999 only)
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode(), isReply=False)
        if self.factory.script.get("drop"):
            self.transport.loseConnection()  # written first, then TCP closes: no close frame

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.received.append(payload)

    def onPing(self, payload: bytes) -> None:
        self.factory.pings += 1
        super().onPing(payload)


class Silent(protocol.Protocol):
    """Accepts the TCP connection and never answers the handshake."""


class LinkTestBase(TestCase):
    timeout = 20

    def serve(self, **script: Any) -> str:
        factory = WebSocketServerFactory("ws://127.0.0.1")
        factory.protocol = Server
        factory.script = script
        factory.requests = []
        factory.peers = []
        factory.received = []
        factory.pings = 0
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.server = factory
        return f"ws://127.0.0.1:{port.getHost().port}/subscribe?wantedCollections=app.bsky.feed.post"

    def link(self, url: str, decoder: Any = None, **kw: Any) -> WebSocketLink:
        self.clock = task.Clock()
        self.events = Recorder()
        self.stats = Stats()
        request = StreamRequest("GET", url, None, (), "/subscribe")
        options: dict[str, Any] = dict(connect_timeout=10.0, ping_interval=15.0,
                                       max_message_bytes=1 << 20, user_agent="Flamingo/test")
        options.update(kw)
        link = WebSocketLink(request, {"X-Test": "yes"}, decoder or (lambda p, b: p), self.events,
                             reactor=reactor, clock=self.clock, turns=reactor, stats=self.stats,
                             **options)

        def cleanup() -> defer.Deferred[None]:
            return link.close()

        self.addCleanup(cleanup)
        return link


class WebSocketLinkTests(LinkTestBase):
    @defer.inlineCallbacks
    def test_open_messages_send_close(self) -> Any:
        url = self.serve(send=[(b'{"a":1}', False), (b"\x00binary", True)])
        link = self.link(url)
        yield until(lambda: len(self.events.frames) == 2)
        self.assertEqual(self.events.names(), ["responded"])
        self.assertEqual(self.events.frames, [b'{"a":1}', b"\x00binary"])
        self.assertGreater(self.events.alives, 0)
        request = self.server.requests[0]
        self.assertEqual(request.path, "/subscribe")
        self.assertEqual(request.params["wantedCollections"], ["app.bsky.feed.post"])
        self.assertEqual(request.headers["x-test"], "yes")
        self.assertEqual(request.headers["user-agent"], "Flamingo/test")
        self.assertTrue(link.send(b'{"type":"options_update"}'))
        yield until(lambda: self.server.received == [b'{"type":"options_update"}'])
        yield link.close()
        self.assertTrue(link.finished)
        self.assertEqual(self.events.names(), ["responded"])  # silent after close()
        self.assertFalse(link.send(b"late"))

    @defer.inlineCallbacks
    def test_closed_delivery_gate_pauses_reading_until_it_opens(self) -> Any:
        from flamingo.stream.flow import Flow

        flow = Flow()
        url = self.serve(send=[(b"1", False)])
        link = self.link(url)
        self.events.flow = flow  # type: ignore[attr-defined]  # the wader's LinkEvents.flow
        flow.close()  # the event log's writer is behind
        yield until(lambda: self.events.frames == [b"1"] and link.gate_wait is not None)
        transport = link.protocol.transport  # type: ignore[union-attr]
        self.assertNotIn(transport, reactor.getReaders())  # the socket is not read: TCP pushes back
        peer = self.server.peers[0]
        peer.sendMessage(b"2")
        peer.sendMessage(b"3")
        self.assertNotIn(transport, reactor.getReaders())
        flow.reopen()
        yield until(lambda: self.events.frames == [b"1", b"2", b"3"])  # nothing lost, in order
        self.assertIsNone(link.gate_wait)
        self.assertIn(transport, reactor.getReaders())

    @defer.inlineCallbacks
    def test_decoder_turns_frames_into_events(self) -> Any:
        def decode(payload: bytes, binary: bool) -> bytes | None:
            if payload == b"skip":
                return None
            if payload == b"bad":
                raise FrameError("zstd", payload)
            return payload.upper()

        url = self.serve(send=[(b"one", False), (b"skip", False), (b"bad", False), (b"two", True)])
        self.link(url, decoder=decode)
        yield until(lambda: len(self.events.frames) == 2)
        self.assertEqual(self.events.frames, [b"ONE", b"TWO"])
        self.assertEqual(self.stats.errors, [("zstd", b"bad")])

    @defer.inlineCallbacks
    def test_garbage_is_counted_and_logged_sparingly(self) -> Any:
        from twisted.logger import globalLogPublisher

        lines: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(lines.append)
        self.addCleanup(globalLogPublisher.removeObserver, lines.append)

        def decode(payload: bytes, binary: bool) -> bytes | None:
            if payload.startswith(b"bad"):
                raise FrameError("zstd", payload)
            return payload

        url = self.serve(send=[(b"bad%d" % i, True) for i in range(100)] + [(b"ok", False)])
        self.link(url, decoder=decode)
        yield until(lambda: self.events.frames == [b"ok"])
        self.assertEqual(len(self.stats.errors), 100)
        warned = [e for e in lines if "Undecodable" in str(e.get("log_format", ""))]
        self.assertEqual([e["n"] for e in warned], [1, 2, 4, 8, 16, 32, 64])

    @defer.inlineCallbacks
    def test_refused_handshake_by_status(self) -> Any:
        for status, expected in ((401, Fatal("http 401", "")), (403, Fatal("http 403", "")),
                                 (429, Retry("rate_limit", "")), (503, Retry("http", "")),
                                 (400, Retry("http", ""))):
            url = self.serve(deny=(status, "nope: bad token"))
            self.link(url)
            yield until(lambda: self.events.names() == ["refused"])
            verdict = self.events.last()
            self.assertEqual(type(verdict), type(expected), status)
            self.assertEqual(verdict.cause, expected.cause, status)
            self.assertIn(f"HTTP {status}", verdict.message)

    @defer.inlineCallbacks
    def test_connection_refused_is_network(self) -> Any:
        port = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        n = port.getHost().port
        yield port.stopListening()
        self.link(f"ws://127.0.0.1:{n}/subscribe")
        yield until(lambda: self.events.names() == ["refused"])
        self.assertEqual(self.events.last().cause, "network")

    @defer.inlineCallbacks
    def test_handshake_timeout_on_the_clock(self) -> Any:
        factory = protocol.Factory.forProtocol(Silent)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        link = self.link(f"ws://127.0.0.1:{port.getHost().port}/subscribe", connect_timeout=7.0)
        yield until(lambda: link.protocol is not None)  # TCP is up, the handshake is not
        self.clock.advance(6.9)
        self.assertEqual(self.events.names(), [])
        self.clock.advance(0.2)
        yield until(lambda: self.events.names() == ["refused"])
        self.assertEqual(self.events.last(), Retry("network", "no response within 7.0s"))

    @defer.inlineCallbacks
    def test_close_codes(self) -> Any:
        for close, cls, cause in (((1000, "bye"), Retry, "dropped"), ((1001, "shutting down"), Retry, "dropped"),
                                  ((1008, "bad options"), Fatal, "close 1008"),
                                  ((1011, "oops"), Retry, "http")):
            url = self.serve(send=[(b"x", False)], close=close)
            self.link(url)
            yield until(lambda: "ended" in self.events.names())
            verdict = self.events.last()
            self.assertIsInstance(verdict, cls)
            self.assertEqual(verdict.cause, cause)
            self.assertIn(close[1], verdict.message)
            self.assertEqual(self.events.frames, [b"x"])  # what came before the end is handed on

    @defer.inlineCallbacks
    def test_abrupt_drop_is_dropped(self) -> Any:
        url = self.serve(send=[(b"x", False)], drop=True)
        self.link(url)
        yield until(lambda: "ended" in self.events.names())
        self.assertEqual(self.events.last().cause, "dropped")
        self.assertEqual(self.events.frames, [b"x"])

    @defer.inlineCallbacks
    def test_end_notice_gives_the_verdict(self) -> Any:
        def decode(payload: bytes, binary: bool) -> bytes | None:
            if payload.startswith(b'{"$type":"error"'):
                raise EndNotice(Retry("dropped", "ConsumerTooSlow: behind"))
            return payload

        url = self.serve(send=[(b"a", False), (b'{"$type":"error","error":"ConsumerTooSlow"}', False)],
                         drop=True)
        self.link(url, decoder=decode)
        yield until(lambda: "ended" in self.events.names())
        self.assertEqual(self.events.last(), Retry("dropped", "ConsumerTooSlow: behind"))
        self.assertEqual(self.events.frames, [b"a"])

    @defer.inlineCallbacks
    def test_pings_on_the_clock_and_pongs_are_alive(self) -> Any:
        url = self.serve()
        link = self.link(url, ping_interval=15.0)
        yield until(lambda: self.events.names() == ["responded"])
        self.clock.advance(14.9)
        self.assertEqual(link.pings_sent, 0)
        alive = self.events.alives
        self.clock.advance(0.1)
        self.assertEqual(link.pings_sent, 1)
        yield until(lambda: link.pongs == 1)
        self.assertEqual(self.server.pings, 1)
        self.assertGreater(self.events.alives, alive)
        self.clock.advance(15)
        yield until(lambda: link.pongs == 2)

    @defer.inlineCallbacks
    def test_dead_peer_gives_no_pong_and_abort_ends_with_the_stall(self) -> Any:
        url = self.serve()
        link = self.link(url, ping_interval=15.0)
        yield until(lambda: self.events.names() == ["responded"])
        self.server.peers[0].transport.pauseProducing()  # the peer stops reading: no pong
        alive = self.events.alives
        self.clock.advance(15)
        self.assertEqual(link.pings_sent, 1)
        yield task.deferLater(reactor, 0.05, lambda: None)  # a pong would have had time (not asserted on)
        self.assertEqual(self.events.alives, alive)
        link.abort(Retry("stall", "no data for 30s"))
        yield until(lambda: "ended" in self.events.names())
        self.assertEqual(self.events.last(), Retry("stall", "no data for 30s"))

    @defer.inlineCallbacks
    def test_close_before_open_is_silent(self) -> Any:
        factory = protocol.Factory.forProtocol(Silent)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        link = self.link(f"ws://127.0.0.1:{port.getHost().port}/subscribe")
        yield link.close()
        self.assertEqual(self.events.names(), [])

    @defer.inlineCallbacks
    def test_close_waits_for_the_peer_then_drops_on_the_clock(self) -> Any:
        url = self.serve()
        link = self.link(url)
        yield until(lambda: self.events.names() == ["responded"])
        self.server.peers[0].transport.pauseProducing()  # never answers the close
        d = link.close()
        self.assertFalse(d.called)
        self.clock.advance(link.close_timeout)
        yield d
        self.assertEqual(self.events.names(), ["responded"])

    @defer.inlineCallbacks
    def test_oversize_message_ends_the_connection(self) -> Any:
        url = self.serve(send=[(b"x" * 5000, False)])
        self.link(url, max_message_bytes=1000)
        yield until(lambda: "ended" in self.events.names())
        self.assertIsInstance(self.events.last(), Retry)
        self.assertEqual(self.events.frames, [])


class TlsTests(LinkTestBase):
    def serve_tls(self) -> tuple[str, Any]:
        from tests.test_wader import _self_signed_context

        ctx = _self_signed_context()
        factory = WebSocketServerFactory()
        factory.protocol = Server
        factory.script, factory.requests, factory.peers, factory.received, factory.pings = {}, [], [], [], 0
        port = reactor.listenSSL(0, factory, ctx, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.server = factory
        from twisted.internet import ssl

        return f"wss://127.0.0.1:{port.getHost().port}/subscribe", ssl.Certificate(ctx.certificate)

    @defer.inlineCallbacks
    def test_wss_certificate_is_verified(self) -> Any:
        url, _ = self.serve_tls()
        self.link(url)
        yield until(lambda: self.events.names() == ["refused"])
        self.assertEqual(self.events.last().cause, "network")
        self.assertEqual(self.server.requests, [])  # no handshake reached the server
        from service_identity.exceptions import VerificationError

        self.flushLoggedErrors(VerificationError)

    @defer.inlineCallbacks
    def test_wss_with_a_trusted_certificate_opens(self) -> Any:
        url, cert = self.serve_tls()
        self.link(url, trust=cert)
        yield until(lambda: self.events.names() == ["responded"])


class VerdictTests(TestCase):
    def test_close_verdict(self) -> None:
        self.assertEqual(close_verdict(None, ""), Retry("dropped", "connection lost"))
        self.assertEqual(close_verdict(1000, ""), Retry("dropped", "close 1000"))
        self.assertEqual(close_verdict(1008, "invalid DID"), Fatal("close 1008", "close 1008: invalid DID"))
        self.assertEqual(close_verdict(1013, "later"), Retry("http", "close 1013: later"))
        self.assertEqual(close_verdict(4000, "app"), Retry("dropped", "close 4000: app"))

    def test_handshake_verdict(self) -> None:
        self.assertEqual(handshake_verdict(None, "", "", "refused"), Retry("network", "refused"))
        self.assertEqual(handshake_verdict(401, "Unauthorized", "bad token", ""),
                         Fatal("http 401", "HTTP 401 Unauthorized: bad token"))
        self.assertEqual(handshake_verdict(429, "Too Many Requests", "", ""),
                         Retry("rate_limit", "HTTP 429 Too Many Requests"))

"""A local Bluesky Jetstream (v1 ``/subscribe``) for tests, the demo and benchmarks.

``JetstreamEmulator`` makes seeded, realistic events at ``rate`` per second
(or when a test asks: ``make(n)``) into a retained ``Timeline`` and serves
them over WebSocket as Jetstream does:

- ``GET /subscribe?wantedCollections=…&wantedDids=…&cursor=…&compress=true``
  (400 for bad params, as Jetstream answers), ``Socket-Encoding: zstd`` too;
- ``cursor`` replays from the first event at or after it, then goes live;
- ``{"type":"options_update","payload":{…}}`` changes the filter on the open
  socket (bad options: close 1008, as Jetstream does); with
  ``requireHello=true`` nothing is sent before the first one;
- compressed messages are binary zstd frames made with Jetstream's dictionary;
- identity and account events pass any collection filter;
- scripted faults (``jet_faults``): drop, close, ConsumerTooSlow, stall, refuse.

Sending follows TCP flow control (a push producer per connection), so a slow
reader holds the server back instead of filling its memory. ``connections``
records every handshake for tests (params, cursor, options updates, how it
ended).
"""

from __future__ import annotations

import attrs
import orjson
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IPushProducer, IReactorTCP, IReactorTime
from zope.interface import implementer

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.emulator.http import TcpTransport, as_tcp
from flamingo.emulator.jet_corpus import Corpus
from flamingo.emulator.jet_faults import JetFault, JetFaults
from flamingo.emulator.jet_timeline import Timeline, Wants
from flamingo.emulator.running import stop_listening, tcp_address
from flamingo.errors import ValidationError
from flamingo.logs import logger
from flamingo.sources.jetstream_events import check_params

__all__ = ["JetstreamEmulator", "JetOptions", "ConnectionRecord"]

log = logger("flamingo.emulator")

TOO_SLOW = (b'{"$type":"error","error":"ConsumerTooSlow",'
            b'"message":"reading below the floor rate; reconnect with a cursor"}')


@attrs.define
class JetOptions:
    seed: int = 1
    rate: float = 0.0  # events made per second; 0: only when asked (make)
    mix: str = "network"  # jet_corpus.MIXES
    users: int = 2000
    retain: int = 200_000  # events kept for cursor replays
    batch: int = 500  # events sent per reactor turn per connection
    tick: float = 0.05  # seconds between batches of made events (at ``rate``)


@attrs.define
class ConnectionRecord:
    """One handshake and what became of it (tests read these)."""

    number: int
    path: str
    params: dict[str, list[str]]
    cursor: int | None = None
    compress: bool = False
    refused: int | None = None  # HTTP status of a refused handshake
    start: int | None = None  # timeline position the connection started at
    sent: int = 0
    options_updates: list[JsonObject] = attrs.Factory(list)
    fault: str | None = None
    ended: str | None = None


class _Server(WebSocketServerProtocol):
    """One /subscribe connection; the emulator does the work."""

    emulator: JetstreamEmulator
    record: ConnectionRecord
    sender: _Sender | None = None

    @property
    def tcp(self) -> TcpTransport:
        return as_tcp(self.transport)

    def send(self, payload: bytes, binary: bool) -> None:
        self.sendMessage(payload, isBinary=binary)  # type: ignore[no-untyped-call]  # autobahn: unannotated

    def onConnect(self, request: ConnectionRequest) -> None:
        self.emulator = self.factory.emulator
        self.record = self.emulator.handshake(request)

    def onOpen(self) -> None:
        self.sender = self.emulator.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.emulator.client_message(self, payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.sender is not None:
            self.sender.stop()
        record = getattr(self, "record", None)
        if record is not None and record.ended is None:
            record.ended = f"closed {code}" if wasClean else "lost"
        self.emulator.closed(self)


@implementer(IPushProducer)
class _Sender:
    """Sends one connection its events from ``pos`` on, as fast as TCP takes them."""

    def __init__(self, emu: JetstreamEmulator, proto: _Server, pos: int, wants: Wants,
                 compress: bool, fault: JetFault | None) -> None:
        self.emu = emu
        self.proto = proto
        self.pos = pos
        self.wants = wants
        self.compress = compress
        self.max_size = 0
        self.fault = fault
        self.paused = False
        self.stalled = False
        self.waiting = False  # requireHello: nothing is sent before the first options_update
        self.done = False
        self.call: IDelayedCall | None = None
        proto.tcp.registerProducer(self, True)
        emu.timeline.listeners.append(self.wake)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.wake()

    def stopProducing(self) -> None:
        self.stop()

    def stop(self) -> None:
        self.done = True
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None
        if self.wake in self.emu.timeline.listeners:
            self.emu.timeline.listeners.remove(self.wake)

    def wake(self) -> None:
        if self.call is None and not self.done:
            self.call = self.emu.turns.callLater(0, self.pump)

    def pump(self) -> None:
        self.call = None
        if self.done or self.paused or self.stalled or self.waiting:
            return
        if self._fault_due():
            return
        tl, record, batch = self.emu.timeline, self.proto.record, self.emu.options.batch
        self.pos = max(self.pos, tl.base)
        sent = scanned = 0
        while self.pos < tl.end and sent < batch and scanned < batch * 20:
            seq = self.pos
            self.pos += 1
            scanned += 1
            if not tl.wanted(seq, self.wants):
                continue
            raw = tl.raw(seq)
            if self.max_size and len(raw) > self.max_size:
                continue
            if self.compress:
                self.proto.send(tl.compressed(seq), True)
            else:
                self.proto.send(raw, False)
            sent += 1
            record.sent += 1
            if self._fault_due():
                return
            if self.paused or self.done:
                return
        if self.pos < tl.end:
            self.wake()

    def _fault_due(self) -> bool:
        f = self.fault
        if f is None or self.proto.record.sent < f.after:
            return False
        self.fault = None
        record = self.proto.record
        record.fault = f.kind
        transport = self.proto.tcp
        log.info("Jetstream emulator: fault {kind} on connection {n} after {sent} events",
                 kind=f.kind, n=record.number, sent=record.sent)
        if f.kind == "drop":
            record.ended = "dropped"
            self.stop()
            transport.abortConnection()
        elif f.kind == "close":
            code = f.code or 1011
            record.ended = f"close {code}"
            self.stop()
            self.proto.sendCloseFrame(code=code, reasonUtf8=b"emulator: scripted close", isReply=False)
        elif f.kind == "too_slow":
            record.ended = "ConsumerTooSlow"
            self.stop()
            self.proto.send(TOO_SLOW, False)
            transport.loseConnection()  # v1 has no error frames: its clients see the connection end
        elif f.kind == "stall":
            self.stalled = True
            transport.pauseProducing()  # read nothing: pings go unanswered
            self.emu.clock.callLater(f.seconds, self._unstall)
        return True

    def _unstall(self) -> None:
        if self.done:
            return
        self.stalled = False
        self.proto.tcp.resumeProducing()
        self.wake()


class _Factory(WebSocketServerFactory):
    emulator: JetstreamEmulator


class JetstreamEmulator:
    """The emulator: ``start(host, port)``, ``url``, ``make(n)``, ``faults``, ``connections``."""

    def __init__(self, options: JetOptions | None = None, *, reactor: IReactorTCP | None = None,
                 clock: IReactorTime | None = None) -> None:
        reactor = maybe_global_reactor(reactor)
        self.options = options or JetOptions()
        self.reactor = reactor
        if not IReactorTime.providedBy(reactor):
            raise TypeError("the reactor runs the senders' turns: it needs timers")
        #: the senders' turns (``callLater(0, ...)``): the reactor's, even with a test's ``clock``
        self.turns: IReactorTime = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.timeline = Timeline(Corpus(self.options.seed, self.options.users, self.options.mix),
                                 lambda: int(self.clock.seconds() * 1_000_000), self.options.retain)
        self.faults = JetFaults(self.clock.seconds)
        self.connections: list[ConnectionRecord] = []
        self.open: list[_Server] = []
        self.port: IListeningPort | None = None
        self._loop: task.LoopingCall | None = None
        self._made_since = 0
        self._t0 = 0.0

    # -- life ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        factory = _Factory()  # type: ignore[no-untyped-call]  # autobahn; no URL: any Host is served
        factory.protocol = _Server
        factory.emulator = self
        factory.noisy = False
        factory.setProtocolOptions(  # type: ignore[no-untyped-call]  # autobahn: unannotated
            openHandshakeTimeout=10, closeHandshakeTimeout=1, autoPingInterval=0)
        self.port = self.reactor.listenTCP(port, factory, interface=host)
        if self.options.rate > 0:
            self._t0 = self.clock.seconds()
            self._loop = task.LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.options.tick, now=False)

    @property
    def url(self) -> str:
        assert self.port is not None, "start() first"
        addr = tcp_address(self.port)
        return f"ws://{addr.host}:{addr.port}"

    def stop(self) -> defer.Deferred[None]:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for proto in list(self.open):
            if proto.sender is not None:
                proto.sender.stop()
            proto.tcp.abortConnection()
        port, self.port = self.port, None
        return stop_listening(port) if port is not None else defer.succeed(None)

    def pause(self) -> None:
        """Stop making events at ``rate`` (what was made is still served)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def make(self, n: int) -> None:
        """Make ``n`` events now (tests; the CLI's ``--rate`` does it on a timer)."""
        self.timeline.make(n)

    def _tick(self) -> None:
        due = int(self.options.rate * (self.clock.seconds() - self._t0)) - self._made_since
        # a late tick catches up over the next ones: never a long pause for the readers
        due = min(due, max(1, int(self.options.rate * self.options.tick * 4)))
        if due > 0:
            self._made_since += due
            self.timeline.make(due)

    # -- connections -------------------------------------------------------------------

    def handshake(self, request: ConnectionRequest) -> ConnectionRecord:
        params = {k: list(v) for k, v in request.params.items()}
        record = ConnectionRecord(len(self.connections) + 1, request.path, params)
        self.connections.append(record)

        def deny(code: int, message: str) -> ConnectionDeny:
            record.refused = code
            record.ended = f"refused {code}"
            return ConnectionDeny(code, message)  # type: ignore[no-untyped-call]  # autobahn

        refusal = self.faults.refusal()
        if refusal is not None:
            raise deny(refusal, "emulator: scripted refusal")
        if request.path != "/subscribe":
            raise deny(404, f"not found: {request.path}")
        try:
            check_params(params)
        except ValidationError as e:
            raise deny(400, f"InvalidRequest: {e}") from None
        raw_cursor = params.get("cursor", [""])[0]
        if raw_cursor:
            if not raw_cursor.isdigit():
                raise deny(400, f"InvalidRequest: bad cursor {raw_cursor!r}")
            record.cursor = int(raw_cursor)
        record.compress = (params.get("compress", [""])[0] == "true"
                           or "zstd" in request.headers.get("socket-encoding", ""))
        return record

    def opened(self, proto: _Server) -> _Sender:
        record = proto.record
        self.open.append(proto)
        params = record.params
        wants = Wants.of(params.get("wantedCollections", []), params.get("wantedDids", []))
        pos = self.timeline.position(record.cursor)
        record.start = pos
        sender = _Sender(self, proto, pos, wants, record.compress, self.faults.for_connection())
        sender.waiting = params.get("requireHello", [""])[0] == "true"
        sender.wake()
        return sender

    def client_message(self, proto: _Server, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            proto.sendCloseFrame(code=1007, reasonUtf8=b"bad SubscriberSourcedMessage envelope", isReply=False)
            return
        if not isinstance(message, dict) or message.get("type") != "options_update":
            return  # v1 ignores other messages
        body = message.get("payload")
        if not isinstance(body, dict):
            proto.sendCloseFrame(code=1007, reasonUtf8=b"bad options_update payload", isReply=False)
            return
        collections = [str(c) for c in body.get("wantedCollections") or []]
        dids = [str(d) for d in body.get("wantedDids") or []]
        try:
            check_params({"wantedCollections": collections, "wantedDids": dids})
        except ValidationError as e:
            proto.sendCloseFrame(code=1008, reasonUtf8=str(e).encode()[:120], isReply=False)
            return
        proto.record.options_updates.append(body)
        if proto.sender is not None:
            proto.sender.wants = Wants.of(collections, dids)
            size = body.get("maxMessageSizeBytes")
            proto.sender.max_size = size if isinstance(size, int) and size > 0 else 0
            if proto.sender.waiting:
                proto.sender.waiting = False
                proto.sender.wake()

    def closed(self, proto: _Server) -> None:
        if proto in self.open:
            self.open.remove(proto)

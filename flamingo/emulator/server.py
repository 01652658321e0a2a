"""The in-reactor emulator: listening port, routing table, journal, faults.

Routing is a table of endpoint handlers keyed by path (``Emulator.endpoints``)
so X API v2 endpoints can be added later as more rows, each a callable
``(emulator, protocol, request, record) -> None``.

Exposure: ``start`` refuses an interface beyond loopback unless credentials
with a secret are configured (anyone who can reach the port could otherwise
stream from it); requests must be complete within ``header_timeout``; at most
``max_connections`` are open at once (one more gets 503 and is closed). Both
are counted in ``counters`` and recorded in the journal.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime

from flamingo._reactor import maybe_global_reactor
from flamingo.domain.matching import Predicates
from flamingo.domain.predicates import validate_params
from flamingo.emulator.authcheck import AuthChecker
from flamingo.emulator.faults import FaultPlan
from flamingo.emulator.http import HTTPServerFactory, HTTPServerProtocol, Request
from flamingo.emulator.journal import ConnectionRecord
from flamingo.emulator.options import EmulatorOptions
from flamingo.emulator.pool import PoolSource, ReplaySource, Source, build_pool
from flamingo.emulator.running import stop_listening, tcp_address
from flamingo.emulator.session import StreamSession
from flamingo.emulator.timeline import Timeline

if TYPE_CHECKING:  # pragma: no cover
    from flamingo.emulator.x.service import XService

__all__ = ["Emulator", "Endpoint", "V1_ENDPOINTS", "ExposureError", "is_loopback"]


class ExposureError(ValueError):
    """Listening beyond loopback without credentials."""


def is_loopback(host: str) -> bool:
    """``host`` is a loopback address or ``localhost`` (names are not resolved)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

Handler = Callable[["Emulator", HTTPServerProtocol, Request, ConnectionRecord], None]


@attrs.frozen
class Endpoint:
    """One route: which methods, and the handler that answers them."""

    name: str
    methods: tuple[str, ...]
    handler: Handler


def _stream_handler(stream: str) -> Handler:
    def handle(emu: Emulator, proto: HTTPServerProtocol, request: Request, record: ConnectionRecord) -> None:
        emu._serve_v1_stream(stream, proto, request, record)

    return handle


V1_ENDPOINTS: dict[str, Endpoint] = {
    "/1.1/statuses/filter.json": Endpoint("filter", ("GET", "POST"), _stream_handler("filter")),
    "/1.1/statuses/sample.json": Endpoint("sample", ("GET", "POST"), _stream_handler("sample")),
    "/1.1/statuses/firehose.json": Endpoint("firehose", ("GET", "POST"), _stream_handler("firehose")),
}

PREDICATE_KEYS = ("track", "follow", "locations", "language", "filter_level")


class Emulator:
    """A faithful local Streaming API (v1.1) in the running reactor.

    ``reactor`` listens; ``clock`` (default: the reactor) runs every timer
    (keep-alives, rates, stalls, refusal windows) so tests can pass a
    ``Clock``; ``now`` is the wall clock OAuth timestamps are checked against.
    """

    def __init__(
        self,
        options: EmulatorOptions | None = None,
        reactor: IReactorTCP | None = None,
        clock: IReactorTime | None = None,
        now: Callable[[], float] = time.time,
    ):
        reactor = maybe_global_reactor(reactor)
        self.options = options or EmulatorOptions()
        self.reactor = reactor
        if clock is None:
            if not IReactorTime.providedBy(reactor):
                raise TypeError("a clock, or a reactor that is one")
            clock = reactor
        self.clock: IReactorTime = clock
        self.auth = AuthChecker(self.options, now)
        self.faults = FaultPlan(self.clock.seconds)
        self.journal: list[ConnectionRecord] = []
        self.sent_messages: list[list[bytes]] = []
        self.sessions: list[StreamSession] = []
        self.endpoints: dict[str, Endpoint] = dict(V1_ENDPOINTS)
        #: the X API v2 routes and state (``source="x"``), else None
        self.x: XService | None = None
        self._by_identity: dict[str, StreamSession] = {}
        self._idle_waiters: list[defer.Deferred[None]] = []
        self._cycle = 0
        #: rate mode: the one sequence every connection reads (see timeline.py)
        self.timeline: Timeline | None = None
        #: connections dropped for a slow request / refused over ``max_connections``
        self.counters = {"request_timeouts": 0, "over_capacity": 0}
        self._factory = HTTPServerFactory(self._handle, self._on_connect, clock=self.clock,
                                          request_timeout=self.options.header_timeout,
                                          on_timeout=self._on_timeout)
        self._port: IListeningPort | None = None
        self._journal_file = open(self.options.journal, "a", encoding="utf-8") if self.options.journal else None
        self.host = "127.0.0.1"
        self.port = 0
        if self.options.source == "x":
            from flamingo.emulator.x.service import XService

            self.x = XService(self)
            self.endpoints = self.x.endpoints()

    # -- lifecycle ----------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (useful with port 0).

        Raises ``ExposureError`` for an interface beyond loopback when no
        credentials with a secret are configured.
        """
        if not is_loopback(host) and not self.options.has_secret:
            raise ExposureError(
                f"refusing to listen on {host} without credentials: anyone who reaches it could "
                "stream; set --user/--password, --bearer-token or --oauth-consumer-key/"
                "--oauth-consumer-secret, or listen on 127.0.0.1")
        self._port = listening = self.reactor.listenTCP(port, self._factory, interface=host)
        if self.options.rate > 0 and not self.options.replay and self.timeline is None:
            self.timeline = Timeline(seed=self.options.seed, size=self.options.size,
                                     rate=self.options.rate, clock=self.clock,
                                     next_cycle=self.next_cycle, pool_size=self.options.pool_size)
        self.host = host
        self.port = tcp_address(listening).port
        return self.port

    @property
    def connections(self) -> list[HTTPServerProtocol]:
        """The open connections, streams included."""
        return list(self._factory.protocols)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> defer.Deferred[None]:
        """Stop listening and close every connection; fires when all are gone."""
        waits: list[defer.Deferred[None]] = []
        if self._port is not None:
            waits.append(stop_listening(self._port))
            self._port = None
        for session in list(self.sessions):
            session.close("emulator stopped", abort=True)
        if self.x is not None:
            self.x.stop()
        for proto in list(self._factory.protocols):
            d: defer.Deferred[None] = defer.Deferred()
            self._factory.waiters.setdefault(proto, []).append(d)
            waits.append(d)
            proto.tcp.abortConnection()
        if self._journal_file is not None:
            self._journal_file.close()
            self._journal_file = None
        return defer.gatherResults(waits).addCallback(lambda _: None)

    def streams_closed(self) -> defer.Deferred[None]:
        """Fires once no stream is open (e.g. after a client hung up)."""
        d: defer.Deferred[None] = defer.Deferred()
        if not self.sessions:
            d.callback(None)
        else:
            self._idle_waiters.append(d)
        return d

    def next_cycle(self) -> int:
        """A fresh id prefix for a pool cycle: ids only ever increase."""
        self._cycle += 1
        return self._cycle

    def broadcast_disconnect(self, code: int, reason: str | None = None) -> None:
        """Send every open stream a disconnect message and close it (e.g. code 1 shutdown)."""
        for session in list(self.sessions):
            session.disconnect(code, reason)

    # -- journal --------------------------------------------------------------
    def _log(self, record: ConnectionRecord, event: str) -> None:
        if self._journal_file is not None:
            self._journal_file.write(json.dumps({"event": event, **record.to_dict()}) + "\n")
            self._journal_file.flush()

    def _new_record(self, method: str | None, path: str | None, params: dict[str, list[str]],
                    outcome: str = "pending") -> ConnectionRecord:
        record = ConnectionRecord(self.clock.seconds(), method, path, params, None, outcome)
        self.journal.append(record)
        return record

    def _reject(self, proto: HTTPServerProtocol, record: ConnectionRecord, code: int, body: str,
                headers: dict[str, str] | None = None) -> None:
        record.outcome = f"http {code}"
        self._log(record, "rejected")
        if self.x is not None:  # X answers errors in JSON
            data, headers = self.x.error_body(code, body, headers)
            proto.respond(code, data, headers)
            return
        proto.respond(code, body.encode() + b"\n", headers)

    # -- requests -------------------------------------------------------------
    def _on_connect(self, proto: HTTPServerProtocol) -> bool:
        if self.faults.refusing():
            record = self._new_record(None, None, {}, "refused")
            self._log(record, "refused")
            return False
        if len(self._factory.protocols) > self.options.max_connections:
            self.counters["over_capacity"] += 1
            record = self._new_record(None, None, {})
            self._reject(proto, record, 503,
                         f"Too many connections (at most {self.options.max_connections})")
        return True

    def _on_timeout(self, proto: HTTPServerProtocol) -> None:
        self.counters["request_timeouts"] += 1
        record = self._new_record(None, None, {}, "request timeout")
        self._log(record, "timeout")

    def _handle(self, proto: HTTPServerProtocol, request: Request) -> None:
        params: dict[str, list[str]] = {}
        try:
            pairs = request.query_pairs + (request.form_pairs() if request.method == "POST" else [])
        except UnicodeDecodeError:
            record = self._new_record(request.method, request.path, {})
            self._reject(proto, record, 400, "Bad form encoding")
            return
        for key, value in pairs:
            params.setdefault(key, []).append(value)
        record = self._new_record(request.method, request.path, params)
        status = self.faults.take_status()
        if status is not None:
            headers = {"Retry-After": "60"} if status in (420, 429) else None
            self._reject(proto, record, status, f"Scripted status {status}", headers)
            return
        endpoint = self.endpoints.get(request.path)
        if endpoint is None:
            self._reject(proto, record, 404, "Unknown URL. See the Streaming API documentation.")
            return
        if request.method not in endpoint.methods:
            self._reject(proto, record, 405, "Method not allowed", {"Allow": ", ".join(endpoint.methods)})
            return
        host = request.headers.get("host", f"{self.host}:{self.port}")
        result = self.auth.check(request.method, f"http://{host}{request.path}",
                                 request.headers.get("authorization"), pairs)
        record.identity = result.identity
        if not result.ok:
            self._reject(proto, record, 401, f"Unauthorized: {result.reason}",
                         {"WWW-Authenticate": 'Basic realm="Firehose"'})
            return
        try:
            endpoint.handler(self, proto, request, record)
        except Exception:
            from twisted.python import log

            log.err(None, "emulator handler failed")
            if not proto.tcp.disconnecting:
                self._reject(proto, record, 500, "Internal error")

    def _serve_v1_stream(self, stream: str, proto: HTTPServerProtocol, request: Request,
                         record: ConnectionRecord) -> None:
        params = record.params
        problems = validate_params(stream, params, allow_count=self.options.allow_count)
        if problems:
            statuses = {p.status for p in problems}
            code = 413 if 413 in statuses else 416 if 416 in statuses else max(statuses)
            text = "\n".join(f"Parameter {p.field}: {p.message}" + (f" ({p.limit})" if p.limit else "")
                             for p in problems)
            self._reject(proto, record, code, text)
            return
        opts = self.options
        delimited = params.get("delimited") == ["length"]
        gzip = request.accepts_gzip
        record.outcome, record.gzip, record.delimited = "streaming", gzip, delimited
        filter_params = {k: v for k, v in params.items() if k in PREDICATE_KEYS} if stream == "filter" else {}
        source: Source
        if opts.replay:
            source = ReplaySource(opts.replay, delimited,
                                  predicates=Predicates.from_params(filter_params) if filter_params else None)
        elif self.timeline is not None and not (stream == "filter" and opts.delivery_cap):
            source = self.timeline.reader(filter_params or None, delimited)
        else:
            pool = build_pool(opts.seed, opts.size, delimited, opts.pool_size, filter_params or None)
            source = PoolSource(pool, self.next_cycle)
        capture: list[bytes] | None = None
        if opts.record:
            capture = []
            self.sent_messages.append(capture)
        session = StreamSession(
            transport=proto.tcp,
            clock=self.clock,
            source=source,
            record=record,
            stream_name=f"{record.identity or 'anonymous'}-{stream}",
            delimited=delimited,
            gzip=gzip,
            rate=opts.rate,
            keepalive=opts.keepalive_seconds,
            faults=self.faults.take_stream_faults(),
            stall_warnings=params.get("stall_warnings") == ["true"],
            stall_queue=opts.stall_queue,
            warning_percent=opts.stall_warning_percent,
            delivery_cap=opts.delivery_cap if stream == "filter" else None,
            random_disconnects=opts.random_disconnects,
            seed=opts.seed + len(self.journal),
            capture=capture,
            on_close=self._session_closed,
        )
        proto.on_lost = session.connection_lost
        identity = record.identity or "anonymous"
        older = self._by_identity.get(identity)
        if opts.one_connection_per_account and older is not None and not older.closed:
            older.disconnect(7, "Admin logout: the same credentials were used to connect a new stream "
                                "and the oldest was disconnected")
        self._by_identity[identity] = session
        self.sessions.append(session)
        self._log(record, "connected")
        proto.start_stream({"Content-Encoding": "gzip"} if gzip else {})
        session.start()

    def _session_closed(self, session: StreamSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
        for identity, current in list(self._by_identity.items()):
            if current is session:
                del self._by_identity[identity]
        self._log(session.record, "closed")
        if not self.sessions:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

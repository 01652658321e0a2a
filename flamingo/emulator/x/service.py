"""The X API v2 routes of the emulator: streams, rules, limits and X's error bodies.

``Emulator(EmulatorOptions(source="x"))`` builds one ``XService`` and serves
its ``endpoints()`` instead of the v1.1 ones; ``emu.x`` is this object
(``emu.x.rules`` the app's rule set, ``emu.x.world`` the sequence of posts).
The emulator stands for one app: its bearer token, one rule set, one
allowance of connections per stream (and partition), one rate-limit window
per kind of request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from twisted.internet.interfaces import IDelayedCall

from flamingo.emulator.http import HTTPServerProtocol, Request
from flamingo.emulator.journal import ConnectionRecord
from flamingo.emulator.session import StreamSession
from flamingo.emulator.x.connections import ENDPOINT_NAMES, HISTORY, XConnection, kill_all, list_connections
from flamingo.emulator.x.corpus import corpus_for
from flamingo.emulator.x.limits import RateWindow, UsageCap
from flamingo.emulator.x.problems import (
    invalid_request,
    no_rules,
    status_problem,
    too_many_connections,
    too_many_requests,
    unauthorized,
    usage_capped,
)
from flamingo.emulator.x.rulesapi import RulesApi, Tier
from flamingo.emulator.x.ruleset import RuleBook
from flamingo.emulator.x.stream import (
    STREAMS,
    StreamRequest,
    XStreamSession,
    XStreamSource,
    XWorld,
    parse_stream_request,
)

if TYPE_CHECKING:  # pragma: no cover
    from flamingo.emulator.server import Emulator, Endpoint

__all__ = ["XService", "TIERS", "RULES_PATH", "CONNECTIONS_PATH"]

RULES_PATH = "/2/tweets/search/stream/rules"
CONNECTIONS_PATH = "/2/connections"
JSON = {"Content-Type": "application/json; charset=utf-8"}

RECOVERY_WINDOW = 24 * 3600.0
RULES_GET_RATE = 450  # X: GET rules 450 / 15 min per app
#: tier -> (rules, characters per rule, connections per stream)
TIERS = {"pay-per-use": (1000, 1024, 1), "enterprise": (25000, 2048, 2)}


class XService:
    """State and handlers of the X routes (see the module docstring)."""

    def __init__(self, emu: Emulator):
        opts = emu.options
        self.emu = emu
        self.clock = emu.clock
        self.corpus = corpus_for(opts.seed)
        self.world = XWorld(opts.rate, emu.clock)
        rules, length, connections = TIERS[opts.tier]
        self.tier = Tier(opts.tier, opts.max_rules or rules, opts.max_rule_length or length)
        self.connections_allowed = opts.connections or connections
        self.rules = RuleBook([p.facts for p in self.corpus.posts], emu.clock, opts.rules_delay)
        self.rules.listeners.append(self._rules_changed)
        self.rules_post_limit = RateWindow(opts.rules_rate, opts.rate_window, emu.clock)
        self.rules_get_limit = RateWindow(RULES_GET_RATE, opts.rate_window, emu.clock)
        self.connect_limit = RateWindow(opts.connect_rate, opts.rate_window, emu.clock)
        #: the app's post allowance across its streams (``post_cap``; compliance events do not count)
        self.usage = UsageCap(opts.post_cap)
        self.api = RulesApi(self.rules, self.tier, emu.clock)
        #: open streams by (path, partition): X allows ``connections_allowed`` of each
        self.open: dict[tuple[str, int | None], list[StreamSession]] = {}
        self.counters = {"too_many_connections": 0, "rate_limited": 0, "no_rules": 0, "usage_capped": 0}
        #: every streaming connection served (the last ``HISTORY``), for the Connections API
        self.connections: list[XConnection] = []
        #: connections whose client went away that X still counts, by (path, partition)
        self.stale: dict[tuple[str, int | None], list[XConnection]] = {}
        self._stale_timers: dict[int, IDelayedCall] = {}

    def stop(self) -> None:
        """Cancel the timers of pending rule changes and stale connections."""
        self.rules.cancel()
        for timer in self._stale_timers.values():
            if timer.active():
                timer.cancel()
        self._stale_timers.clear()

    def _hold_stale(self, key: tuple[str, int | None], conn: XConnection) -> None:
        """X keeps counting a connection whose client vanished until it notices (``stale_seconds``)."""
        self.stale.setdefault(key, []).append(conn)
        conn.close = lambda reason: self._release(key, conn, reason)
        self._stale_timers[conn.serial] = self.clock.callLater(
            self.emu.options.stale_seconds, self._release, key, conn, "stale connection timed out")

    def _release(self, key: tuple[str, int | None], conn: XConnection, reason: str) -> None:
        timer = self._stale_timers.pop(conn.serial, None)
        if timer is not None and timer.active():
            timer.cancel()
        group = self.stale.get(key, [])
        if conn in group:
            group.remove(conn)
        conn.disconnected_at = self.clock.seconds()
        conn.disconnect_reason = reason

    def endpoints(self) -> dict[str, Endpoint]:
        from flamingo.emulator.server import Endpoint

        table = {path: Endpoint(spec.name, ("GET",), self._stream_handler) for path, spec in STREAMS.items()}
        table[RULES_PATH] = Endpoint("rules", ("GET", "POST"), self._rules_handler)
        table[RULES_PATH + "/counts"] = Endpoint("rules", ("GET",), self._rules_handler)
        table[CONNECTIONS_PATH] = Endpoint("connections", ("GET",), self._connections_handler)
        table[CONNECTIONS_PATH + "/all"] = Endpoint("connections", ("DELETE",), self._connections_handler)
        return table

    # -- errors -------------------------------------------------------------
    def error_body(self, code: int, text: str, headers: dict[str, str] | None) -> tuple[bytes, dict[str, str]]:
        """X's JSON body for an error the emulator's generic code answers (auth, 404, faults)."""
        out = dict(JSON)
        if code == 401:
            return unauthorized(), out
        if code == 429:
            out.update(self.connect_limit.headers())
            return too_many_requests(), out
        if headers and "Allow" in headers:
            out["Allow"] = headers["Allow"]
        return status_problem(code, text), out

    def _answer(self, proto: HTTPServerProtocol, record: ConnectionRecord, code: int, body: bytes,
                headers: dict[str, str]) -> None:
        record.outcome = f"http {code}"
        self.emu._log(record, "rejected" if code >= 400 else "answered")
        proto.respond(code, body, {**JSON, **headers})

    # -- rules --------------------------------------------------------------------
    def _rules_handler(self, emu: Emulator, proto: HTTPServerProtocol, request: Request,
                       record: ConnectionRecord) -> None:
        limit = self.rules_post_limit if request.method == "POST" else self.rules_get_limit
        if not limit.take():
            self.counters["rate_limited"] += 1
            self._answer(proto, record, 429, too_many_requests(), limit.headers())
            return
        if request.method == "POST":
            code, body = self.api.post(request.query_pairs, request.body)
        elif request.path.endswith("/counts"):
            code, body = self.api.counts(request.query_pairs)
        else:
            code, body = self.api.get(request.query_pairs)
        self._answer(proto, record, code, body, limit.headers())

    def _connections_handler(self, emu: Emulator, proto: HTTPServerProtocol, request: Request,
                             record: ConnectionRecord) -> None:
        if request.method == "DELETE":
            code, body = kill_all(self.connections)
        else:
            code, body = list_connections(self.connections, request.query_pairs)
        self._answer(proto, record, code, body, {})

    def _rules_changed(self) -> None:
        """Rate 0 filter streams that found nothing to send idle; a new rule may wake them."""
        if self.world.rate > 0:
            return
        for key, sessions in self.open.items():
            if key[0] == "/2/tweets/search/stream":
                for session in sessions:
                    if not session.paused and not session.closed:
                        session.resumeProducing()

    # -- streams ------------------------------------------------------------------
    def _stream_handler(self, emu: Emulator, proto: HTTPServerProtocol, request: Request,
                        record: ConnectionRecord) -> None:
        spec = STREAMS[request.path]
        parsed = parse_stream_request(spec, request.query_pairs)
        if not isinstance(parsed, StreamRequest):
            self._answer(proto, record, 400, invalid_request(parsed), {})
            return
        if parsed.start_time is not None:
            problem = self._recovery_problem(parsed.start_time)
            if problem:
                self._answer(proto, record, 400, invalid_request([("start_time", None, problem)]), {})
                return
        if not self.connect_limit.take():
            self.counters["rate_limited"] += 1
            self._answer(proto, record, 429, too_many_requests(), self.connect_limit.headers())
            return
        if parsed.spec.content == "posts" and not self.usage.remaining():
            self.counters["usage_capped"] += 1
            self._answer(proto, record, 429, orjson.dumps(usage_capped()), self.connect_limit.headers())
            return
        if parsed.spec.name == "filter" and not self.rules.rules and not self.emu.options.allow_no_rules:
            self.counters["no_rules"] += 1
            self._answer(proto, record, 409, orjson.dumps(no_rules()), self.connect_limit.headers())
            return
        key = (request.path, parsed.partition)
        sessions = [s for s in self.open.get(key, []) if not s.closed]
        if len(sessions) + len(self.stale.get(key, ())) >= self.connections_allowed:
            self.counters["too_many_connections"] += 1
            self._answer(proto, record, 429, orjson.dumps(too_many_connections()), self.connect_limit.headers())
            return
        self._open_stream(proto, request, record, parsed, key)

    def _recovery_problem(self, start_time: float) -> str | None:
        if self.world.rate <= 0:
            return "The emulator re-streams start_time/end_time only with a rate (--rate > 0): at rate 0 " \
                   "posts have no time"
        if start_time < self.clock.seconds() - RECOVERY_WINDOW:
            return "The `start_time` must be within the last 24 hours"
        return None

    def _open_stream(self, proto: HTTPServerProtocol, request: Request, record: ConnectionRecord,
                     parsed: StreamRequest, key: tuple[str, int | None]) -> None:
        emu, opts = self.emu, self.emu.options
        if proto.transport is None:  # pragma: no cover - the client is already gone
            return
        spec = parsed.spec
        if spec.content == "posts":
            lines = self.corpus.rendered(parsed.fields)
        else:
            lines = self.corpus.compliance_lines(spec.content)
        start, end = self.world.start(parsed.backfill_minutes), None
        if parsed.start_time is not None:
            start = self.world.position_at(parsed.start_time)
            end = self.world.position_at(parsed.end_time if parsed.end_time is not None else emu.clock.seconds())
        source = XStreamSource(
            self.world, lines, start=start, end=end,
            match=self.rules.suffix if spec.name == "filter" else None,
            partition=(spec.partitions, parsed.partition) if spec.partitions and parsed.partition else None,
            cap=self.usage if spec.content == "posts" else None)
        gzip = request.accepts_gzip
        record.outcome, record.gzip = "streaming", gzip
        capture: list[bytes] | None = None
        if opts.record:
            capture = []
            emu.sent_messages.append(capture)

        def closed(session: StreamSession) -> None:
            group = self.open.get(key, [])
            if session in group:
                group.remove(session)
            if session.record.close_reason == "client closed" and opts.stale_seconds > 0:
                self._hold_stale(key, conn)
            else:
                conn.disconnected_at = emu.clock.seconds()
                conn.disconnect_reason = session.record.close_reason
            emu._session_closed(session)

        session = XStreamSession(
            transport=proto.tcp, clock=emu.clock, source=source, record=record,
            stream_name=spec.name, gzip=gzip, rate=opts.rate, keepalive=opts.keepalive_seconds,
            faults=emu.faults.take_stream_faults(), stall_queue=opts.stall_queue,
            random_disconnects=opts.random_disconnects, seed=opts.seed + len(emu.journal),
            capture=capture, on_close=closed)
        conn = XConnection(len(emu.journal), ENDPOINT_NAMES[spec.name], emu.clock.seconds(), session.close)
        self.connections.append(conn)
        del self.connections[:-HISTORY]
        proto.on_lost = session.connection_lost
        self.open.setdefault(key, []).append(session)
        emu.sessions.append(session)
        emu._log(record, "connected")
        headers = {"Content-Type": "application/json; charset=utf-8", **self.connect_limit.headers()}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        proto.start_stream(headers)
        session.start()

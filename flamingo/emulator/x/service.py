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

from flamingo.emulator.http import HTTPServerProtocol, Request
from flamingo.emulator.journal import ConnectionRecord
from flamingo.emulator.session import StreamSession
from flamingo.emulator.x.corpus import corpus_for
from flamingo.emulator.x.limits import RateWindow
from flamingo.emulator.x.problems import (
    invalid_request,
    status_problem,
    too_many_connections,
    too_many_requests,
    unauthorized,
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

__all__ = ["XService", "TIERS", "RULES_PATH"]

RULES_PATH = "/2/tweets/search/stream/rules"
JSON = {"Content-Type": "application/json; charset=utf-8"}

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
        self.rules_get_limit = RateWindow(450, opts.rate_window, emu.clock)
        self.connect_limit = RateWindow(opts.connect_rate, opts.rate_window, emu.clock)
        self.api = RulesApi(self.rules, self.tier, emu.clock)
        #: open streams by (path, partition): X allows ``connections_allowed`` of each
        self.open: dict[tuple[str, int | None], list[StreamSession]] = {}
        self.counters = {"too_many_connections": 0, "rate_limited": 0}

    def endpoints(self) -> dict[str, Endpoint]:
        from flamingo.emulator.server import Endpoint

        table = {path: Endpoint(spec.name, ("GET",), self._stream_handler) for path, spec in STREAMS.items()}
        table[RULES_PATH] = Endpoint("rules", ("GET", "POST"), self._rules_handler)
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
        else:
            code, body = self.api.get(request.query_pairs)
        self._answer(proto, record, code, body, limit.headers())

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
        if not self.connect_limit.take():
            self.counters["rate_limited"] += 1
            self._answer(proto, record, 429, too_many_requests(), self.connect_limit.headers())
            return
        key = (request.path, parsed.partition)
        sessions = [s for s in self.open.get(key, []) if not s.closed]
        if len(sessions) >= self.connections_allowed:
            self.counters["too_many_connections"] += 1
            self._answer(proto, record, 429, orjson.dumps(too_many_connections()), self.connect_limit.headers())
            return
        self._open_stream(proto, request, record, parsed, key)

    def _open_stream(self, proto: HTTPServerProtocol, request: Request, record: ConnectionRecord,
                     parsed: StreamRequest, key: tuple[str, int | None]) -> None:
        emu, opts = self.emu, self.emu.options
        transport = proto.transport
        if transport is None:  # pragma: no cover - the client is already gone
            return
        spec = parsed.spec
        if spec.content == "posts":
            lines = self.corpus.rendered(parsed.fields)
        else:
            events = self.corpus.tweet_events if spec.content == "tweet_events" else self.corpus.user_events
            lines = [orjson.dumps(e)[:-1] for e in events]
        source = XStreamSource(
            self.world, lines, start=self.world.start(parsed.backfill_minutes),
            match=self.rules.suffix if spec.name == "filter" else None,
            partition=(spec.partitions, parsed.partition) if spec.partitions and parsed.partition else None)
        accept = request.headers.get("accept-encoding", "").lower()
        gzip = any(tok.split(";")[0].strip() == "gzip" and "q=0" not in tok.replace(" ", "")
                   for tok in accept.split(","))
        record.outcome, record.gzip = "streaming", gzip
        capture: list[bytes] | None = None
        if opts.record:
            capture = []
            emu.sent_messages.append(capture)

        def closed(session: StreamSession) -> None:
            group = self.open.get(key, [])
            if session in group:
                group.remove(session)
            emu._session_closed(session)

        session = XStreamSession(
            transport=transport, clock=emu.clock, source=source, record=record,
            stream_name=spec.name, gzip=gzip, rate=opts.rate, keepalive=opts.keepalive_seconds,
            faults=emu.faults.take_stream_faults(), stall_queue=opts.stall_queue,
            random_disconnects=opts.random_disconnects, seed=opts.seed + len(emu.journal),
            capture=capture, on_close=closed)
        proto.on_lost = session.connection_lost
        self.open.setdefault(key, []).append(session)
        emu.sessions.append(session)
        emu._log(record, "connected")
        headers = {"Content-Type": "application/json; charset=utf-8", **self.connect_limit.headers()}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        proto.start_stream(headers)
        session.start()

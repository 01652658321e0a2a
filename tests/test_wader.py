"""The wader against a scripted streaming server over real loopback HTTP.

Network I/O is real (twisted.web on 127.0.0.1); every delay the wader
chooses goes through a ``task.Clock``, so backoff schedules are asserted
exactly, with no sleeping.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from flamingo.config import from_mapping
from flamingo.stream.wader import Wader
from tests.support.fakes import MemoryStore, NullStats
from tests.support.waiting import until as _until

# --- a scripted Streaming API stand-in ----------------------------------------------


@attrs.define
class Script:
    """What the server does for one request."""

    code: int = 200
    body: bytes = b""  # for errors
    chunks: list[bytes] = attrs.Factory(list)  # written at once for a 200
    close: bool = False  # end the response after the chunks
    gzip: bool = False
    hold: bool = False  # do not answer until release()


@attrs.define
class Seen:
    time: float
    method: str
    path: str
    args: dict[str, list[str]]
    auth: str
    request: Any = None
    script: Script | None = None
    z: Any = None

    def write(self, data: bytes) -> None:
        if self.z is not None:
            data = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        self.request.write(data)

    def close(self) -> None:
        if not self.request.finished and not getattr(self.request, "_disconnected", False):
            self.request.finish()

    def drop(self) -> None:
        self.request.channel.transport.abortConnection()

    @property
    def disconnected(self) -> bool:
        return bool(self.request._disconnected)


class StubStream(resource.Resource):
    isLeaf = True

    def __init__(self, clock: task.Clock) -> None:
        super().__init__()
        self.clock = clock
        self.scripts: list[Script] = []
        self.journal: list[Seen] = []
        self.arrived: list[defer.Deferred[Seen]] = []

    def render(self, request: server.Request) -> Any:
        script = self.scripts.pop(0) if self.scripts else Script()
        args = {k.decode(): [x.decode() for x in v] for k, v in request.args.items()}
        seen = Seen(self.clock.seconds(), request.method.decode(), request.path.decode(), args,
                    (request.getHeader("authorization") or ""), request, script)
        self.journal.append(seen)
        request.notifyFinish().addErrback(lambda _: None)
        waiters, self.arrived = self.arrived, []
        for w in waiters:
            w.callback(seen)
        if script.hold:
            return server.NOT_DONE_YET
        return self.answer(seen)

    def answer(self, seen: Seen) -> Any:
        script, request = seen.script, seen.request
        assert script is not None
        request.setResponseCode(script.code)
        if script.code != 200:
            request.write(script.body)
            request.finish()
            return server.NOT_DONE_YET
        if script.gzip:
            request.setHeader(b"content-encoding", b"gzip")
            seen.z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        request.write(b"")  # send the headers now
        for c in script.chunks:
            seen.write(c)
        if script.close:
            if seen.z is not None:
                request.write(seen.z.flush())
            request.finish()
        return server.NOT_DONE_YET

    def release(self, seen: Seen) -> None:
        self.answer(seen)

    def next_request(self) -> defer.Deferred[Seen]:
        d: defer.Deferred[Seen] = defer.Deferred()
        self.arrived.append(d)
        return d


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.lines: list[str] = []
        self.waiters: list[tuple[int, defer.Deferred[None]]] = []

    def connection_started(self, request_line: str) -> None:
        self.lines.append(request_line)

    def messages_received(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)
        for n, d in list(self.waiters):
            if len(self.frames) >= n:
                self.waiters.remove((n, d))
                d.callback(None)

    def wait_for(self, n: int) -> defer.Deferred[None]:
        if len(self.frames) >= n:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self.waiters.append((n, d))
        return d


class RecordingStats(NullStats):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[str, bytes]] = []
        self.attempts: list[str] = []

    def parse_error(self, kind: str, sample: bytes | str, n: int = 1) -> None:
        super().parse_error(kind, sample, n)
        self.errors.append((kind, sample))  # type: ignore[arg-type]

    def connection_attempt(self, cause: str) -> None:
        super().connection_attempt(cause)
        self.attempts.append(cause)


def tweet(i: int) -> bytes:
    return json.dumps({"id": i, "id_str": str(i), "text": f"tweet {i} #etsy\nline two",
                       "user": {"id": 7}}).encode()


def frame(m: bytes, delimited: bool = True) -> bytes:
    return (b"%d\r\n" % (len(m) + 2) if delimited else b"") + m + b"\r\n"



def until(cond: Callable[[], object], timeout: float = 5.0) -> defer.Deferred[None]:
    return _until(cond, timeout, 0.002)


class WaderTestBase(TestCase):
    timeout = 10
    stream = "filter"
    params: dict[str, list[str]] = {"track": ["#etsy", "austin", "cheaptweet"]}
    wader_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.stub = StubStream(self.clock)
        self.port = reactor.listenTCP(0, server.Site(self.stub), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.store = MemoryStore({self.stream: self.params} if self.params else {})
        self.sink = RecordingSink()
        self.stats = RecordingStats()
        self.wader = self.make_wader()

    def make_wader(self, **wader_options: Any) -> Wader:
        opts = {"min_interval": 0, "debounce": 5, "stall_timeout": 90, "gzip": False,
                **self.wader_options, **wader_options}
        config = from_mapping({"username": "u", "password": "p", "stream": self.stream,
                               "api": {"url": self.url}, "wader": opts})
        wader = Wader(config, reactor, self.store, self.sink, self.stats, clock=self.clock)
        self.addCleanup(self._stop, wader)
        return wader

    def _stop(self, wader: Wader) -> Any:
        if wader.running:
            return wader.stopService()
        wader.source.close_idle()
        for seen in self.stub.journal:
            if seen.request is not None and not seen.request.finished and not seen.disconnected:
                seen.drop()
        return None

    @defer.inlineCallbacks
    def start(self, *scripts: Script) -> Any:
        self.stub.scripts.extend(scripts)
        arrived = self.stub.next_request()
        self.wader.startService()
        self.clock.advance(0)
        seen = yield arrived
        return seen

    def state(self) -> str:
        return self.wader.state.name

    @defer.inlineCallbacks
    def next_attempt(self) -> Any:
        """Advance the clock to the scheduled attempt; returns (delay, request seen)."""
        s = self.wader.state
        self.assertEqual(s.name, "retrying")
        delay = s.next_attempt_at - self.clock.seconds()
        arrived = self.stub.next_request()
        self.clock.advance(delay)
        seen = yield arrived
        return delay, seen


class DeliveryTests(WaderTestBase):
    @defer.inlineCallbacks
    def check_stream(self, delimited: bool, gz: bool, n: int = 300) -> Any:
        msgs = [tweet(i) for i in range(n)]
        data = b"\r\n".join([b""] * 3) + b"".join(frame(m, delimited) for m in msgs)
        chunks = [data[i:i + 997] for i in range(0, len(data), 997)]
        self.wader = self.make_wader(gzip=gz, delimited=delimited)
        seen = yield self.start(Script(chunks=chunks, gzip=gz))
        yield self.sink.wait_for(n)
        self.assertEqual(self.sink.frames, msgs)
        self.assertEqual(self.state(), "connected")
        self.assertEqual(self.sink.lines, ["/1.1/statuses/filter.json?track=%23etsy,austin,cheaptweet"])
        self.assertEqual(seen.method, "POST")
        self.assertEqual(seen.args["track"], ["#etsy,austin,cheaptweet"])
        self.assertEqual(seen.args["stall_warnings"], ["true"])
        self.assertEqual("delimited" in seen.args, delimited)
        self.assertEqual(self.stats.counters.get("keepalives"), 2)
        self.assertEqual(self.stats.errors, [])

    def test_delimited(self) -> Any:
        return self.check_stream(True, False)

    def test_plain(self) -> Any:
        return self.check_stream(False, False)

    def test_delimited_gzip(self) -> Any:
        return self.check_stream(True, True)

    def test_plain_gzip(self) -> Any:
        return self.check_stream(False, True)

    @defer.inlineCallbacks
    def test_basic_auth_sent(self) -> Any:
        seen = yield self.start(Script(chunks=[frame(tweet(1))]))
        scheme, _, token = seen.auth.partition(" ")
        self.assertEqual((scheme, base64.b64decode(token)), ("Basic", b"u:p"))

    @defer.inlineCallbacks
    def test_non_json_line_counted_and_stream_continues(self) -> Any:
        yield self.start(Script(chunks=[b"Exceeded connection limit for user\r\n", frame(tweet(1))]))
        yield self.sink.wait_for(1)
        self.assertEqual(self.stats.errors, [("non_json", b"Exceeded connection limit for user")])
        self.assertEqual(self.state(), "connected")


    @defer.inlineCallbacks
    def test_repeated_garbage_counted_but_logged_sparingly(self) -> Any:
        from twisted.logger import globalLogPublisher

        logged: list[dict[str, Any]] = []

        def observer(event: dict[str, Any]) -> None:
            if "parse error" in (event.get("log_format") or ""):
                logged.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        seen = yield self.start(Script(hold=True))
        seen.request.write(b"")
        for _ in range(100):
            seen.request.write(b"garbage!\r\n")
        seen.request.write(frame(tweet(1)))
        yield self.sink.wait_for(1)
        self.assertEqual(self.stats.counters["parse_errors.non_json"], 100)
        # at the 1st, 2nd, 4th... of the connection: at most 1, 2, 4, ..., 64
        self.assertLessEqual(len(logged), 7)
        self.assertGreaterEqual(len(logged), 1)
        self.assertEqual(logged[0]["sample"], b"garbage!")


class HttpErrorTests(WaderTestBase):
    @defer.inlineCallbacks
    def check_fatal(self, code: int) -> Any:
        yield self.start(Script(code=code, body=b"Server says no " + str(code).encode()))
        yield until(lambda: self.state() == "fatal")
        s = self.wader.state
        self.assertEqual(s.cause, f"http {code}")
        self.assertIn(f"Server says no {code}", s.message)
        self.clock.advance(10_000)
        self.assertEqual(len(self.stub.journal), 1)
        self.assertEqual(self.state(), "fatal")
        # an explicit restart tries again
        arrived = self.stub.next_request()
        self.wader.restart()
        self.clock.advance(0)
        yield arrived
        self.assertEqual(len(self.stub.journal), 2)

    def test_401(self) -> Any:
        return self.check_fatal(401)

    def test_403(self) -> Any:
        return self.check_fatal(403)

    def test_404(self) -> Any:
        return self.check_fatal(404)

    def test_406(self) -> Any:
        return self.check_fatal(406)

    def test_413(self) -> Any:
        return self.check_fatal(413)

    def test_416(self) -> Any:
        return self.check_fatal(416)

    @defer.inlineCallbacks
    def check_schedule(self, code: int, expected: list[float], cause: str) -> Any:
        yield self.start(*[Script(code=code, body=b"slow down")] * (len(expected) + 1))
        yield until(lambda: self.state() == "retrying")
        delays = []
        for _ in expected:
            yield until(lambda: self.state() == "retrying")
            self.assertEqual(self.wader.state.cause, cause)
            delay, _seen = yield self.next_attempt()
            delays.append(delay)
        self.assertEqual(delays, expected)
        # the journal (server side, Clock time) shows the same gaps
        times = [s.time for s in self.stub.journal]
        self.assertEqual([b - a for a, b in zip(times, times[1:])], expected)

    def test_420_sequence(self) -> Any:
        return self.check_schedule(420, [60.0, 120.0, 240.0, 480.0, 960.0, 960.0], "rate_limit")

    def test_429_like_420(self) -> Any:
        return self.check_schedule(429, [60.0, 120.0], "rate_limit")

    def test_503_exponential(self) -> Any:
        return self.check_schedule(503, [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0], "http")

    def test_500_exponential(self) -> Any:
        return self.check_schedule(500, [5.0, 10.0], "http")

    @defer.inlineCallbacks
    def test_rate_limit_cap_configurable(self) -> Any:
        self.wader = self.make_wader(backoff={"rate_limit": {"cap": 100}})
        yield self.start(*[Script(code=420)] * 3)
        yield until(lambda: self.state() == "retrying")
        d1, _ = yield self.next_attempt()
        yield until(lambda: self.state() == "retrying")
        d2, _ = yield self.next_attempt()
        self.assertEqual([d1, d2], [60.0, 100.0])

    @defer.inlineCallbacks
    def test_error_then_success_resets_after_healthy(self) -> Any:
        yield self.start(Script(code=503), Script(code=503), Script(chunks=[frame(tweet(1))]),
                         Script(code=503))
        for _ in range(2):
            yield until(lambda: self.state() == "retrying")
            yield self.next_attempt()
        yield until(lambda: self.state() == "connected")
        self.clock.advance(60)  # healthy_after
        self.assertEqual(self.wader.backoffs.attempts, {})
        self.stub.journal[-1].close()
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "dropped")
        delay, _ = yield self.next_attempt()
        self.assertEqual(delay, 0.0)  # an established connection that drops: at once
        yield until(lambda: self.state() == "retrying")
        delay, _ = yield self.next_attempt()
        self.assertEqual(delay, 5.0)  # http schedule starts again from its first wait


class NetworkTests(WaderTestBase):
    @defer.inlineCallbacks
    def test_refused_linear(self) -> Any:
        yield self.port.stopListening()
        self.wader.startService()
        self.clock.advance(0)
        delays = []
        for _ in range(4):
            yield until(lambda: self.state() == "retrying")
            self.assertEqual(self.wader.state.cause, "network")
            s = self.wader.state
            delays.append(s.next_attempt_at - self.clock.seconds())
            self.clock.advance(delays[-1])
            self.assertEqual(self.state(), "connecting")
        self.assertEqual(delays, [0.25, 0.5, 0.75, 1.0])

    @defer.inlineCallbacks
    def test_network_cap(self) -> Any:
        yield self.port.stopListening()
        self.wader = self.make_wader(backoff={"network": {"initial": 8, "step": 8, "cap": 16}})
        self.wader.startService()
        self.clock.advance(0)
        delays = []
        for _ in range(3):
            yield until(lambda: self.state() == "retrying")
            delays.append(self.wader.state.next_attempt_at - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [8.0, 16.0, 16.0])

    @defer.inlineCallbacks
    def test_disconnect_mid_message(self) -> Any:
        half = frame(tweet(2))[:40]
        seen = yield self.start(Script(chunks=[frame(tweet(1)), half]), Script(chunks=[frame(tweet(3))]))
        yield self.sink.wait_for(1)
        seen.drop()
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "dropped")
        delay, _ = yield self.next_attempt()
        self.assertEqual(delay, 0.0)
        yield self.sink.wait_for(2)
        self.assertEqual(self.sink.frames, [tweet(1), tweet(3)])

    @defer.inlineCallbacks
    def test_stall(self) -> Any:
        seen = yield self.start(Script(chunks=[frame(tweet(1))]), Script(chunks=[frame(tweet(2))]))
        yield self.sink.wait_for(1)
        self.clock.advance(89)
        seen.write(b"\r\n")  # a keep-alive re-arms the timer
        yield until(lambda: self.stats.counters.get("keepalives") == 1)
        self.clock.advance(89)
        self.assertEqual(self.state(), "connected")
        self.clock.advance(1)
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "stall")
        yield until(lambda: seen.disconnected)
        delay, _ = yield self.next_attempt()
        self.assertEqual(delay, 0.25)
        yield self.sink.wait_for(2)

    @defer.inlineCallbacks
    def test_connect_timeout(self) -> Any:
        seen = yield self.start(Script(hold=True), Script(chunks=[frame(tweet(1))]))
        self.clock.advance(30)
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "network")
        self.assertIn("no response", self.wader.state.message)
        yield until(lambda: seen.disconnected)

    @defer.inlineCallbacks
    def test_corrupt_gzip_recycles(self) -> Any:
        self.wader = self.make_wader(gzip=True)
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        seen.request.write(b"this is not gzip\r\n")
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.stats.errors[0][0], "gzip")


class DisconnectMessageTests(WaderTestBase):
    @defer.inlineCallbacks
    def check(self, code: int) -> Any:
        msg = json.dumps({"disconnect": {"code": code, "stream_name": "u-statuses",
                                         "reason": f"reason {code}"}}).encode()
        yield self.start(Script(chunks=[frame(tweet(1)), frame(msg)], close=True))
        yield until(lambda: self.state() in ("retrying", "fatal"))
        self.assertEqual(self.sink.frames, [tweet(1), msg])  # passed on as an event
        self.assertEqual(self.stats.counters[f"disconnects.{code}"], 1)
        return self.wader.state

    @defer.inlineCallbacks
    def test_duplicate_stream_is_fatal(self) -> Any:
        s = yield self.check(2)
        self.assertEqual((s.name, s.cause), ("fatal", "disconnect 2"))
        self.assertIn("reason 2", s.message)

    @defer.inlineCallbacks
    def test_admin_logout_is_fatal(self) -> Any:
        s = yield self.check(7)
        self.assertEqual(s.name, "fatal")

    @defer.inlineCallbacks
    def test_shed_load_reconnects(self) -> Any:
        s = yield self.check(12)
        self.assertEqual((s.name, s.cause), ("retrying", "dropped"))
        self.assertEqual(s.next_attempt_at, self.clock.seconds())


class ParamsTests(WaderTestBase):
    params: dict[str, list[str]] = {}

    @defer.inlineCallbacks
    def test_waits_for_params_then_connects(self) -> Any:
        from twisted.logger import formatEvent, globalLogPublisher

        lines: list[str] = []

        def observer(event: dict[str, Any]) -> None:
            lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.wader.startService()
        self.clock.advance(0)
        self.assertEqual(self.state(), "waiting_for_params")
        self.clock.advance(1000)
        self.assertEqual(self.stub.journal, [])
        arrived = self.stub.next_request()
        self.store.set_params("filter", {"track": ["a"]})
        self.clock.advance(4)
        self.store.set_params("filter", {"follow": ["12"]})  # debounce restarts
        self.clock.advance(4.9)
        self.assertEqual(self.stub.journal, [])
        self.clock.advance(0.1)
        seen = yield arrived
        self.assertEqual(seen.args["track"], ["a"])
        self.assertEqual(seen.args["follow"], ["12"])
        self.assertEqual(len(self.stub.journal), 1)
        retrying = [line for line in lines if "Wader state: retrying" in line]
        self.assertEqual(retrying, ["Wader state: retrying (restart, attempt 0) in 0.00s"])  # no ": None"

    @defer.inlineCallbacks
    def test_fatal_406_retried_when_params_change(self) -> Any:
        self.store.set_params("filter", {"track": ["x"]})
        yield self.start(Script(code=406, body=b"Parameter track item index 0 too long"))
        yield until(lambda: self.state() == "fatal")
        arrived = self.stub.next_request()
        self.store.set_params("filter", {"track": ["y"]})
        self.clock.advance(5)
        seen = yield arrived
        self.assertEqual(seen.args["track"], ["y"])


class OverlapTests(WaderTestBase):
    @defer.inlineCallbacks
    def test_predicate_change_no_loss_no_duplicates(self) -> Any:
        old = yield self.start(Script(chunks=[frame(tweet(i)) for i in range(1, 6)]),
                               Script(hold=True, chunks=[frame(tweet(i)) for i in range(6, 10)]))
        yield self.sink.wait_for(5)
        arrived = self.stub.next_request()
        self.store.set_params("filter", {"track": ["#etsy", "austin", "new"]})
        self.clock.advance(5)
        new = yield arrived
        self.assertEqual(new.args["track"], ["#etsy,austin,new"])
        # still connected on the old stream while the new one has not answered
        self.assertEqual(self.state(), "connected")
        old.write(frame(tweet(6)) + frame(tweet(7)))
        yield self.sink.wait_for(7)
        self.stub.release(new)  # 200, then 6..9: 6 and 7 were seen on the old one
        yield self.sink.wait_for(9)
        yield until(lambda: old.disconnected)
        self.assertEqual(self.sink.frames, [tweet(i) for i in range(1, 10)])
        self.assertEqual(self.stats.counters["duplicates"], 2)
        self.assertEqual(self.state(), "connected")
        self.assertIn("new", self.wader.state.request_line)
        self.assertEqual(len(self.sink.lines), 2)
        # after the overlap window ids are no longer checked
        self.clock.advance(30)
        self.assertFalse(self.wader.links.deduping)

    @defer.inlineCallbacks
    def test_old_stream_dropped_by_server_during_replacement(self) -> Any:
        """v1.1 disconnects the oldest stream (code 7) when the new one connects."""
        logout = json.dumps({"disconnect": {"code": 7, "reason": "admin logout"}}).encode()
        old = yield self.start(Script(chunks=[frame(tweet(1))]), Script(hold=True, chunks=[frame(tweet(2))]))
        yield self.sink.wait_for(1)
        arrived = self.stub.next_request()
        self.wader.restart()
        self.clock.advance(0)
        new = yield arrived
        old.write(frame(logout))
        old.close()
        yield until(lambda: self.wader.candidate is None)  # the old one gone: only the new dials
        self.assertEqual(self.state(), "connected")  # not fatal: a replacement is coming
        self.stub.release(new)
        yield self.sink.wait_for(3)
        self.assertEqual(self.sink.frames, [tweet(1), logout, tweet(2)])
        self.assertEqual(self.state(), "connected")

    @defer.inlineCallbacks
    def test_replacement_fails_after_old_dropped(self) -> Any:
        old = yield self.start(Script(chunks=[frame(tweet(1))]), Script(hold=True, code=503))
        yield self.sink.wait_for(1)
        arrived = self.stub.next_request()
        self.wader.restart()
        self.clock.advance(0)
        new = yield arrived
        old.close()
        yield until(lambda: self.wader.candidate is None)  # the old one gone: only the new dials
        self.stub.release(new)
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "http")

    @defer.inlineCallbacks
    def test_deletes_deduplicated_by_status_id(self) -> Any:
        delete = json.dumps({"delete": {"status": {"id": 5, "id_str": "5"}}}).encode()
        old = yield self.start(Script(chunks=[frame(tweet(1))]),
                               Script(hold=True, chunks=[frame(delete), frame(tweet(2))]))
        yield self.sink.wait_for(1)
        arrived = self.stub.next_request()
        self.wader.restart()
        self.clock.advance(0)
        new = yield arrived
        old.write(frame(delete))
        yield self.sink.wait_for(2)
        self.stub.release(new)
        yield self.sink.wait_for(3)
        self.assertEqual(self.sink.frames, [tweet(1), delete, tweet(2)])
        self.assertEqual(self.stats.counters["duplicates"], 1)

    @defer.inlineCallbacks
    def test_restart_overlaps(self) -> Any:
        old = yield self.start(Script(chunks=[frame(tweet(1))]), Script(chunks=[frame(tweet(2))]))
        yield self.sink.wait_for(1)
        arrived = self.stub.next_request()
        self.wader.restart()
        self.clock.advance(0)
        yield arrived
        yield self.sink.wait_for(2)
        yield until(lambda: old.disconnected)
        self.assertEqual(self.sink.frames, [tweet(1), tweet(2)])
        self.assertEqual(self.stats.attempts, ["initial", "restart"])

    @defer.inlineCallbacks
    def test_replacement_refused_keeps_old_stream(self) -> Any:
        old = yield self.start(Script(chunks=[frame(tweet(1))]), Script(code=503),
                               Script(chunks=[frame(tweet(2))]))
        yield self.sink.wait_for(1)
        arrived = self.stub.next_request()
        self.wader.restart()
        self.clock.advance(0)
        yield arrived
        yield until(lambda: self.wader.candidate is None)
        self.assertEqual(self.state(), "connected")
        self.assertFalse(old.disconnected)
        old.write(frame(tweet(5)))
        yield self.sink.wait_for(2)
        arrived = self.stub.next_request()
        self.clock.advance(5)
        yield arrived
        yield self.sink.wait_for(3)
        self.assertEqual(self.sink.frames, [tweet(1), tweet(5), tweet(2)])

    @defer.inlineCallbacks
    def test_stop_closes_everything(self) -> Any:
        old = yield self.start(Script(chunks=[frame(tweet(1))]))
        yield self.sink.wait_for(1)
        yield self.wader.stopService()
        self.assertEqual(self.state(), "stopped")
        yield until(lambda: old.disconnected)


class SampleStreamTests(WaderTestBase):
    stream = "sample"
    params: dict[str, list[str]] = {}

    @defer.inlineCallbacks
    def test_sample_is_get_without_params(self) -> Any:
        seen = yield self.start(Script(chunks=[frame(tweet(1))]))
        self.assertEqual(seen.method, "GET")
        self.assertEqual(seen.path, "/1.1/statuses/sample.json")
        yield self.sink.wait_for(1)
        self.assertEqual(self.sink.lines, ["/1.1/statuses/sample.json"])


class TlsTests(WaderTestBase):
    @defer.inlineCallbacks
    def test_unverifiable_certificate_is_refused(self) -> Any:
        """https is verified (service_identity): a self-signed server never gets a request."""
        ctx = _self_signed_context()
        port = reactor.listenSSL(0, server.Site(self.stub), ctx, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = f"https://127.0.0.1:{port.getHost().port}"
        self.wader = self.make_wader()
        self.wader.startService()
        self.clock.advance(0)
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "network")
        self.assertEqual(self.stub.journal, [])
        from service_identity.exceptions import VerificationError

        self.flushLoggedErrors(VerificationError)


def _self_signed_context() -> Any:
    """A server certificate valid for 127.0.0.1 (SAN) but signed by nobody trusted."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from twisted.internet import ssl

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    from OpenSSL import crypto

    return ssl.CertificateOptions(privateKey=crypto.PKey.from_cryptography_key(key),
                                  certificate=crypto.X509.from_cryptography(cert))

"""Every scripted fault, stall warnings, delivery-cap limit notices, replay, CLI parsing."""

from __future__ import annotations

import orjson
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator import Fault
from flamingo.emulator.cli import build_parser, load_script, options_from_args
from flamingo.emulator.journal import ConnectionRecord
from flamingo.emulator.pool import PoolSource, build_pool
from flamingo.emulator.session import StreamSession
from tests.support.emulator import request, start_emulator

FILTER = "/1.1/statuses/filter.json"
SAMPLE = "/1.1/statuses/sample.json"


def frames(body: bytes) -> list[bytes]:
    return body.split(b"\r\n")


class StatusAndRefusalTests(TestCase):
    @defer.inlineCallbacks
    def test_status_for_next_k_attempts(self):
        emu = start_emulator(self)
        emu.faults.respond_status(420, times=2)
        codes = []
        for _ in range(3):
            c = yield request(emu.port, testcase=self)
            yield c.wait_for(lambda: c.status is not None)
            codes.append(c.status)
        self.assertEqual(codes, [420, 420, 200])
        self.assertEqual([r.outcome for r in emu.journal], ["http 420", "http 420", "streaming"])

    @defer.inlineCallbacks
    def test_every_documented_status(self):
        emu = start_emulator(self)
        for code in (401, 403, 404, 406, 413, 416, 420, 429, 500, 503):
            emu.faults.respond_status(code)
            c = yield request(emu.port, testcase=self)
            yield c.wait_for(lambda: c.status is not None)
            self.assertEqual(c.status, code)

    @defer.inlineCallbacks
    def test_refuse_window_on_the_clock(self):
        clock = Clock()
        emu = start_emulator(self, clock=clock)
        emu.faults.refuse(10)
        c = yield request(emu.port, testcase=self)
        yield c.closed
        self.assertIsNone(c.status)
        clock.advance(10)
        c2 = yield request(emu.port, testcase=self)
        yield c2.wait_for(lambda: c2.status is not None)
        self.assertEqual(c2.status, 200)
        self.assertEqual([r.outcome for r in emu.journal], ["refused", "streaming"])


class StreamFaultTests(TestCase):
    @defer.inlineCallbacks
    def run_fault(self, fault: Fault, target=SAMPLE, **options):
        emu = start_emulator(self, **options)
        emu.faults.add(fault)
        c = yield request(emu.port, target=target, testcase=self)
        return emu, c

    @defer.inlineCallbacks
    def test_close_after_n(self):
        emu, c = yield self.run_fault(Fault("close_after", after=5))
        yield c.closed
        self.assertEqual(len([f for f in frames(c.body()) if f]), 5)
        self.assertTrue(c.body().endswith(b"\r\n"))
        self.assertEqual(emu.journal[0].messages_sent, 5)
        # the next connection is not faulted
        c2 = yield request(emu.port, testcase=self)
        yield c2.wait_for(lambda: len(frames(c2.body())) > 10)
        self.assertFalse(c2.lost)

    @defer.inlineCallbacks
    def test_close_mid_message(self):
        emu, c = yield self.run_fault(Fault("close_mid_message", after=3))
        yield c.closed
        parts = frames(c.body())
        self.assertEqual(len(parts), 4)
        self.assertTrue(parts[3])
        self.assertRaises(orjson.JSONDecodeError, orjson.loads, parts[3])

    @defer.inlineCallbacks
    def test_garbage_malformed_and_connection_limit_lines(self):
        emu = start_emulator(self)
        emu.faults.add(Fault("garbage", after=1, data=b"\x00\xff garbage"),
                       Fault("malformed_json", after=2), Fault("connection_limit", after=3))
        c = yield request(emu.port, testcase=self)
        yield c.wait_for(lambda: b"Exceeded connection limit for user\r\n" in c.body())
        body = c.body()
        self.assertIn(b"\x00\xff garbage", body)
        self.assertIn(b'"text":"unterminated\r\n', body)
        self.assertLess(body.index(b"\x00\xff"), body.index(b"unterminated"))

    @defer.inlineCallbacks
    def test_bad_length_prefixes(self):
        emu = start_emulator(self)
        emu.faults.bad_length(after=1, length="absurd")
        c = yield request(emu.port, target=SAMPLE + "?delimited=length", testcase=self)
        yield c.wait_for(lambda: b"4294967296\r\n{" in c.body())
        emu.faults.bad_length(after=0, length="truncated")
        c2 = yield request(emu.port, target=SAMPLE + "?delimited=length", testcase=self)
        yield c2.wait_for(lambda: c2.body().count(b"\r\n") > 2)
        first, rest = c2.body().split(b"\r\n", 1)
        self.assertLess(int(first), rest.index(b"\r\n"))

    @defer.inlineCallbacks
    def test_disconnect_message_then_close(self):
        emu, c = yield self.run_fault(Fault("disconnect", after=2, code=12))
        yield c.closed
        last = [f for f in frames(c.body()) if f][-1]
        self.assertEqual(orjson.loads(last)["disconnect"]["code"], 12)
        self.assertEqual(orjson.loads(last)["disconnect"]["reason"], "Shed load")

    @defer.inlineCallbacks
    def test_stall_sends_nothing_not_even_keepalives(self):
        clock = Clock()
        emu = start_emulator(self, clock=clock, rate=1, keepalive=30)
        emu.faults.stall(100, after=2)
        c = yield request(emu.port, testcase=self)
        yield c.wait_for(lambda: c.status is not None)
        clock.advance(1)
        clock.advance(1)
        yield c.wait_for(lambda: len(c.chunks()) == 2)
        for _ in range(100):  # the stall starts at t=3 (third message due) and lasts 100 s
            clock.advance(1)
        self.assertEqual(emu.journal[0].messages_sent, 2)  # nothing at all, not even keep-alives
        clock.advance(1)  # t=103: the message due at t=3 goes out; the rest was never queued
        sent = emu.journal[0].messages_sent
        self.assertIn(sent, (3, 4))  # the stalled message, maybe with the one due at t=103
        yield c.wait_for(lambda: len(c.chunks()) >= sent)
        self.assertNotIn(b"\r\n", c.chunks())  # no keep-alive ever went out
        self.assertEqual(c.body().count(b"\r\n\r\n"), 0)

    @defer.inlineCallbacks
    def test_slow_drip(self):
        clock = Clock()
        emu = start_emulator(self, clock=clock)
        emu.faults.drip(bytes=10, seconds=1.0)
        c = yield request(emu.port, testcase=self)
        yield c.wait_for(lambda: len(c.chunks()) == 1)
        self.assertEqual(len(c.chunks()[0]), 10)
        clock.advance(1)
        yield c.wait_for(lambda: len(c.chunks()) == 2)
        self.assertEqual(len(c.body()), 20)


class SessionUnitTests(SynchronousTestCase):
    """Backpressure logic with a fake transport whose pause we control."""

    def session(self, **kw):
        clock = Clock()
        transport = StringTransport()
        record = ConnectionRecord(0, "GET", "/", {}, None, "streaming")
        cycles = iter(range(1, 10**6))
        kw.setdefault("rate", 100)
        s = StreamSession(transport=transport, clock=clock, record=record, stream_name="t",
                          source=PoolSource(build_pool(1, "small", False), lambda: next(cycles)),
                          keepalive=0, **kw)
        s.start()
        return s, clock, transport

    def body_messages(self, transport) -> list[dict]:
        raw = transport.value()
        out, i = [], 0
        while i < len(raw):
            j = raw.index(b"\r\n", i)
            n = int(raw[i:j], 16)
            out.append(raw[j + 2 : j + 2 + n])
            i = j + 4 + n
        return [orjson.loads(m) for m in b"".join(out).split(b"\r\n") if m]

    def test_falling_behind_warning_then_stall_disconnect(self):
        s, clock, transport = self.session(stall_warnings=True, stall_queue=100)
        s.pauseProducing()
        clock.advance(0.6)  # 60 queued = 60%
        warnings = [m for m in self.body_messages(transport) if "warning" in m]
        self.assertEqual(warnings[0]["warning"]["code"], "FALLING_BEHIND")
        self.assertEqual(warnings[0]["warning"]["percent_full"], 60)
        clock.advance(0.5)
        last = self.body_messages(transport)[-1]
        self.assertEqual(last["disconnect"]["code"], 4)
        self.assertTrue(transport.disconnecting)

    def test_no_warning_without_stall_warnings_but_still_disconnected(self):
        s, clock, transport = self.session(stall_warnings=False, stall_queue=100)
        s.pauseProducing()
        clock.advance(1.1)
        msgs = self.body_messages(transport)
        self.assertFalse([m for m in msgs if "warning" in m])
        self.assertEqual(msgs[-1]["disconnect"]["code"], 4)

    def test_backlog_delivered_on_resume(self):
        s, clock, transport = self.session(stall_queue=1000)
        s.pauseProducing()
        clock.advance(0.5)
        self.assertEqual(s.record.messages_sent, 0)
        s.resumeProducing()
        self.assertEqual(s.record.messages_sent, 50)

    def test_delivery_cap_limit_notices_are_cumulative(self):
        s, clock, transport = self.session(rate=10, delivery_cap=4)
        clock.advance(1.0)
        clock.advance(1.0)
        msgs = self.body_messages(transport)
        limits = [m["limit"]["track"] for m in msgs if "limit" in m]
        self.assertEqual(limits[-1], 12)
        self.assertEqual(limits, sorted(limits))
        self.assertEqual(len([m for m in msgs if "limit" not in m]), 8)

    def test_random_disconnects_off_by_default_and_on_when_asked(self):
        s, clock, transport = self.session(rate=100, random_disconnects=1.0)
        clock.advance(0.1)
        self.assertIn("disconnect", self.body_messages(transport)[-1])


class ReplayTests(TestCase):
    @defer.inlineCallbacks
    def test_replay_file_then_idle(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'{"id":1,"text":"a","user":{"id":5}}\n\n{"delete":{"status":{"id":1}}}\n{"id":2,"text":"b","user":{"id":6}}')
        emu = start_emulator(self, replay=path)
        c = yield request(emu.port, testcase=self)
        yield c.wait_for(lambda: c.body().count(b"\r\n") == 3)
        self.assertEqual(frames(c.body())[:3], [b'{"id":1,"text":"a","user":{"id":5}}',
                                                b'{"delete":{"status":{"id":1}}}',
                                                b'{"id":2,"text":"b","user":{"id":6}}'])
        f2 = yield request(emu.port, method="POST", target=FILTER, body=b"follow=6", testcase=self)
        yield f2.wait_for(lambda: f2.body().count(b"\r\n") == 2)
        self.assertEqual(frames(f2.body())[:2], [b'{"delete":{"status":{"id":1}}}',
                                                 b'{"id":2,"text":"b","user":{"id":6}}'])


class CliTests(SynchronousTestCase):
    def test_options_and_faults_from_flags_and_script(self):
        script = self.mktemp()
        with open(script, "w") as f:
            f.write("faults:\n  - {kind: status, code: 503, times: 2}\n  - {stall: 95, after: 10}\n"
                    "  - close_after: 100\n")
        args = build_parser().parse_args(
            ["--port", "0", "--user", "u", "--password", "p", "--rate", "5", "--size", "small",
             "--keepalive", "10", "--fault", "status:code=420,times=3", "--script", script]
        )
        opts = options_from_args(args)
        self.assertEqual((opts.user, opts.rate, opts.size, opts.keepalive), ("u", 5.0, "small", 10.0))
        self.assertEqual(Fault.parse(args.fault[0]), Fault("status", code=420, times=3))
        faults = load_script(script)
        self.assertEqual([f.kind for f in faults], ["status", "stall", "close_after"])
        self.assertEqual((faults[1].seconds, faults[1].after, faults[2].after), (95.0, 10, 100))

    def test_help_documents_every_option_and_fault(self):
        text = build_parser().format_help()
        for opt in ("--host", "--port", "--user", "--password", "--bearer-token", "--oauth-consumer-key",
                    "--oauth-consumer-secret", "--oauth-token", "--oauth-token-secret", "--seed", "--rate",
                    "--size", "--replay", "--script", "--keepalive", "--journal"):
            self.assertIn(opt, text)
        for kind in ("close_mid_message", "stall", "drip", "bad_length", "connection_limit"):
            self.assertIn(kind, text)

    def test_bad_fault_spec_exits_2(self):
        from flamingo.emulator.cli import main

        self.assertEqual(main(["--fault", "nonsense"]), 2)
        self.assertEqual(main(["--fault", "status"]), 2)
        self.assertRaises(ValueError, Fault.parse, "close_after:after")

    def test_bad_fault_spec_message_is_one_plain_line(self):
        """What a user who mistyped sees: the kinds to choose from, or the option that is not a number."""
        e = self.assertRaises(ValueError, Fault.parse, "stal:seconds=5")
        self.assertEqual(str(e).splitlines(), [str(e)])
        self.assertIn("unknown fault kind 'stal'", str(e))
        self.assertIn("close_mid_message", str(e))
        self.assertNotIn("Attribute(", str(e))
        e = self.assertRaises(ValueError, Fault.parse, "status:code=abc")
        self.assertEqual(str(e), "fault option code: not a number: 'abc'")

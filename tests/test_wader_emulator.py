"""The wader against the bundled Streaming API emulator over real loopback HTTP.

Delivery is compared with what the emulator recorded as sent; reconnect
timing is read from the emulator's connection journal, whose clock is the
same ``task.Clock`` the wader waits on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.config import from_mapping
from flamingo.stream.wader import Wader
from tests.support.emulator import start_emulator
from tests.support.fakes import MemoryStore
from tests.test_wader import RecordingSink, RecordingStats, until

TRACK = {"track": ["#etsy", "austin", "cheaptweet"]}


class EmulatorTestBase(TestCase):
    timeout = 20

    def make(self, clock: Any = None, emu_clock: Any = None, stream: str = "filter",
             params: dict[str, list[str]] | None = None, **wader: Any) -> Wader:
        self.clock = clock or task.Clock()
        self.emu = start_emulator(self, seed=5, rate=0, size="small", record=True,
                                  user="flamingo", password="pw", clock=emu_clock)
        config = from_mapping({"username": "flamingo", "password": "pw", "stream": stream,
                               "api": {"url": self.emu.url},
                               "wader": {"min_interval": 0, **wader}}, environ={})
        self.store = MemoryStore({stream: params if params is not None else TRACK})
        self.sink = RecordingSink()
        self.stats = RecordingStats()
        w = Wader(config, reactor, self.store, self.sink, self.stats, clock=self.clock)
        self.addCleanup(lambda: w.stopService() if w.running else None)
        self.wader = w
        return w


class DeliveryTests(EmulatorTestBase):
    @defer.inlineCallbacks
    def check(self, delimited: bool, gzip: bool, stream: str = "filter") -> Any:
        n = 500
        w = self.make(delimited=delimited, gzip=gzip, stream=stream)
        self.emu.faults.close_after(n)
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "retrying")  # the emulator closed after n
        record = self.emu.journal[0]
        self.assertEqual(record.outcome, "streaming")
        self.assertEqual((record.delimited, record.gzip), (delimited, gzip))
        sent = self.emu.sent_messages[0]
        self.assertEqual(len(sent), n)
        self.assertEqual(self.sink.frames, [m.rstrip(b"\r\n") for m in sent])
        self.assertEqual(self.stats.errors, [])
        self.assertEqual(w.state.cause, "dropped")

    def test_delimited_gzip(self) -> Any:
        return self.check(True, True)

    def test_delimited_plain(self) -> Any:
        return self.check(True, False)

    def test_newline_gzip(self) -> Any:
        return self.check(False, True)

    def test_newline_plain(self) -> Any:
        return self.check(False, False)

    def test_sample(self) -> Any:
        return self.check(True, True, stream="sample")


class ScheduleTests(EmulatorTestBase):
    @defer.inlineCallbacks
    def run_statuses(self, code: int, count: int) -> Any:
        clock = task.Clock()
        clock.advance(1000)
        w = self.make(clock=clock, emu_clock=clock)
        self.emu.faults.respond_status(code, times=count)
        w.startService()
        clock.advance(0)
        for i in range(1, count):
            yield until(lambda: w.state.name == "retrying" and len(self.emu.journal) == i)
            clock.advance(w.state.next_attempt_at - clock.seconds())
        yield until(lambda: len(self.emu.journal) == count)
        times = [r.time for r in self.emu.journal]
        self.assertEqual([r.outcome for r in self.emu.journal], [f"http {code}"] * count)
        return [b - a for a, b in zip(times, times[1:])]

    @defer.inlineCallbacks
    def test_420_sequence(self) -> Any:
        gaps = yield self.run_statuses(420, 4)
        self.assertEqual(gaps, [60.0, 120.0, 240.0])

    @defer.inlineCallbacks
    def test_503_sequence(self) -> Any:
        gaps = yield self.run_statuses(503, 4)
        self.assertEqual(gaps, [5.0, 10.0, 20.0])

    @defer.inlineCallbacks
    def test_bad_credentials_fatal(self) -> Any:
        w = self.make()
        w.source.auth = type(w.source.auth)("flamingo", "wrong")
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "fatal")
        self.assertEqual(w.state.cause, "http 401")
        self.clock.advance(3600)
        self.assertEqual(len(self.emu.journal), 1)

    @defer.inlineCallbacks
    def test_bad_params_406_fatal(self) -> Any:
        w = self.make(params={"track": ["x" * 61]})
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "fatal")
        self.assertEqual(w.state.cause, "http 406")
        self.assertTrue(w.state.message)

    @defer.inlineCallbacks
    def test_mid_message_close_and_reconnect(self) -> Any:
        w = self.make()
        self.emu.faults.close_mid_message(after=10)
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "retrying")
        first = list(self.sink.frames)
        self.assertEqual(first, [m.rstrip(b"\r\n") for m in self.emu.sent_messages[0][:len(first)]])
        self.assertEqual(w.state.next_attempt_at, self.clock.seconds())  # at once
        self.clock.advance(0)
        yield until(lambda: len(self.sink.frames) > len(first) + 10)
        self.assertEqual(len(self.emu.journal), 2)

    @defer.inlineCallbacks
    def test_stall(self) -> Any:
        w = self.make(stall_timeout=90)
        self.emu.faults.stall(1000, after=5)
        w.startService()
        self.clock.advance(0)
        yield until(lambda: len(self.sink.frames) >= 5 and self.emu.journal[0].messages_sent >= 5)
        self.clock.advance(90)
        yield until(lambda: w.state.name == "retrying")
        self.assertEqual(w.state.cause, "stall")
        self.assertEqual(w.state.next_attempt_at - self.clock.seconds(), 0.25)


class OverlapTests(EmulatorTestBase):
    @defer.inlineCallbacks
    def test_predicate_change_zero_lost_zero_duplicated(self) -> Any:
        w = self.make(debounce=5, overlap_timeout=30)
        self.states = []
        w.on_state(lambda s: self.states.append((s.name, s.cause)))
        w.startService()
        self.clock.advance(0)
        yield until(lambda: len(self.sink.frames) > 50)
        self.store.set_params("filter", {"track": ["#etsy", "austin", "cheaptweet", "new"]})
        self.clock.advance(5)
        yield until(lambda: w.state.name == "connected" and "new" in w.state.request_line)
        n_before = len(self.sink.frames)
        yield until(lambda: len(self.sink.frames) > n_before + 50)
        self.assertEqual(self.emu.journal[0].close_reason, "disconnect 7")
        yield w.stopService()
        old = [m.rstrip(b"\r\n") for m in self.emu.sent_messages[0]]
        new = [m.rstrip(b"\r\n") for m in self.emu.sent_messages[1]]
        received = self.sink.frames
        # the old stream's frames up to the switch, then the new one's: no gap, no repeat
        # (at rate 0 the emulator gives each connection its own ids: true overlap
        # duplicates are covered in test_overlap.py, on its shared timeline)
        k = 0
        while k < min(len(received), len(old)) and received[k] == old[k]:
            k += 1
        self.assertGreater(k, 50)
        self.assertEqual(received[:k], old[:k])
        rest, j, skipped = received[k:], 0, 0
        for f in new:  # then the new stream's, in order, minus what it repeated
            if j == len(rest):
                break
            if f == rest[j]:
                j += 1
            else:  # only a repeat of something handed on may be skipped
                self.assertIn(f, received[:k])
                skipped += 1
        self.assertEqual(j, len(rest))
        self.assertGreater(len(rest), 50)
        self.assertEqual(self.stats.counters.get("duplicates", 0), skipped)
        self.assertEqual(w.state.name, "stopped")
        self.assertNotIn("fatal", [name for name, _ in self.states])


class AuthTests(TestCase):
    """The emulator verifies each auth the way the service did (OAuth signature over the form)."""

    timeout = 20

    @defer.inlineCallbacks
    def check(self, emu_options: dict[str, Any], config: dict[str, Any], stream: str) -> Any:
        emu = start_emulator(self, seed=2, rate=0, size="small", **emu_options)
        emu.faults.close_after(20)
        c = from_mapping({**config, "stream": stream, "api": {"url": emu.url},
                          "wader": {"min_interval": 0}}, environ={})
        clock = task.Clock()
        sink = RecordingSink()
        w = Wader(c, reactor, MemoryStore({stream: TRACK}), sink, RecordingStats(), clock=clock)
        self.addCleanup(lambda: w.stopService() if w.running else None)
        w.startService()
        clock.advance(0)
        yield until(lambda: w.state.name in ("retrying", "fatal"))
        self.assertEqual(emu.journal[0].outcome, "streaming", w.state.message)
        self.assertEqual(len(sink.frames), 20)

    def test_oauth1_filter_post(self) -> Any:
        keys = {"consumer_key": "ck", "consumer_secret": "cs", "token": "tk", "token_secret": "ts"}
        return self.check({f"oauth_{k}": v for k, v in keys.items()},
                          {"auth": "oauth1", "oauth": keys}, "filter")

    def test_oauth1_sample_get(self) -> Any:
        keys = {"consumer_key": "ck", "consumer_secret": "cs", "token": "tk", "token_secret": "ts"}
        return self.check({f"oauth_{k}": v for k, v in keys.items()},
                          {"auth": "oauth1", "oauth": keys}, "sample")

    def test_bearer(self) -> Any:
        return self.check({"bearer_token": "bt"}, {"auth": "bearer", "bearer_token": "bt"},
                          "filter")

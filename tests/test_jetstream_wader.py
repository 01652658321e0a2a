"""The wader with the Jetstream source against the Jetstream emulator, over real loopback.

What the sink receives is compared with what the emulator made for the
filter, from the first connection's start: missing 0, repeats 0, in order.
The wader's timers run on ``self.clock`` (advanced only to fire a pending
retry or a stall), the emulator's ``time_us`` on ``self.emu_clock``.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.config import from_mapping
from flamingo.emulator.jet_faults import JetFault
from flamingo.emulator.jet_timeline import Wants
from flamingo.stream.wader import Wader
from tests.support.fakes import MemoryStore
from tests.support.jetstream import start_jetstream
from tests.support.waiting import until
from tests.test_wader import RecordingSink, RecordingStats

POSTS = {"wantedCollections": ["app.bsky.feed.post"]}


class Frames:
    """A journal tail over what a sink received (a restart reads it back)."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        return self.frames[-max_events:]


class JetstreamBase(TestCase):
    timeout = 60

    def make(self, params: dict[str, list[str]] | None = None, compress: bool = True,
             journal: Any = None, sink: Any = None, **emu: Any) -> Wader:
        if not hasattr(self, "emu"):
            self.emu_clock = task.Clock()
            self.emu_clock.advance(1_700_000_000)
            self.emu = start_jetstream(self, clock=self.emu_clock, seed=7, **emu)
        self.clock = task.Clock()
        self.params = dict(params if params is not None else POSTS)
        config = from_mapping({"source": "jetstream", "api": {"url": self.emu.url},
                               "jetstream": {"compress": compress, "rewind": 2},
                               "wader": {"min_interval": 0, "debounce": 0.5}}, environ={})
        self.store = MemoryStore({"subscribe": self.params})
        self.sink = sink or RecordingSink()
        self.stats = RecordingStats()
        w = Wader(config, reactor, self.store, self.sink, self.stats, clock=self.clock, journal=journal)
        self.addCleanup(lambda: w.stopService() if w.running else None)
        self.wader = w
        return w

    def produce(self, n: int, step: float = 0.01) -> None:
        """``n`` events, ``step`` seconds apart on the emulator's clock."""
        for _ in range(n):
            self.emu_clock.advance(step)
            self.emu.make(1)

    def expected(self, wants: Wants | None = None, first: int = 0) -> list[bytes]:
        start = self.emu.connections[first].start
        assert start is not None
        wants = wants or Wants.of(self.params.get("wantedCollections", []), self.params.get("wantedDids", []))
        return self.emu.timeline.matching(wants, start)

    def settle(self, cond: Any, timeout: float = 30) -> defer.Deferred[None]:
        """Wait for ``cond``; fire a pending retry at once (its delay is the wader clock's)."""
        def check() -> bool:
            self.clock.advance(0)  # the first attempt is due at once
            s = self.wader.state
            if s.name == "retrying" and s.next_attempt_at is not None:
                self.clock.advance(max(0.0, s.next_attempt_at - self.clock.seconds()))
            return bool(cond())
        return until(check, timeout=timeout)

    def connected(self, n: int = 1) -> defer.Deferred[None]:
        return self.settle(lambda: self.wader.state.name == "connected" and
                           len([c for c in self.emu.connections if c.start is not None]) >= n)


class JetstreamWaderTests(JetstreamBase):
    @defer.inlineCallbacks
    def check_exactly_once(self, compress: bool) -> Any:
        w = self.make(compress=compress)
        w.startService()
        yield self.connected()
        self.produce(300)
        expected = self.expected()
        self.assertGreater(len(expected), 20)
        yield self.settle(lambda: len(self.sink.frames) >= len(expected))
        self.assertEqual(self.sink.frames, expected)
        self.assertEqual(self.emu.connections[0].compress, compress)
        types = {f.split(b'"kind":"')[1].split(b'"')[0] for f in self.sink.frames}
        self.assertIn(b"commit", types)

    def test_compressed(self) -> Any:
        return self.check_exactly_once(True)

    def test_uncompressed(self) -> Any:
        return self.check_exactly_once(False)

    @defer.inlineCallbacks
    def check_fault_then_resume(self, fault: JetFault, cause: str, repeats: bool = True) -> Any:
        w = self.make()
        self.emu.faults.add(fault)
        w.startService()
        yield self.connected()
        self.produce(1500)
        expected = self.expected()
        yield self.settle(lambda: len(self.emu.connections) >= 2 and self.wader.state.name == "connected"
                          and len(self.sink.frames) >= len(expected))
        self.assertEqual(self.emu.connections[0].fault, fault.kind)
        self.assertEqual(len(self.sink.frames), len(expected))  # missing 0, repeats 0
        self.assertEqual(self.sink.frames, expected)
        self.assertIsNotNone(self.emu.connections[1].cursor)
        if repeats:  # the rewind's repeats, dropped
            self.assertGreater(self.stats.counters.get("duplicates", 0), 0)
        self.assertIn(cause, self.stats.counters)

    def test_drop_then_resume_exactly_once(self) -> Any:
        # a cut connection loses what was in flight: here all of the first connection's
        # events, so the resume point is when it was asked for, and nothing repeats
        return self.check_fault_then_resume(JetFault("drop", after=100), "reconnects.dropped", repeats=False)

    def test_consumer_too_slow_then_resume_exactly_once(self) -> Any:
        return self.check_fault_then_resume(JetFault("too_slow", after=100), "reconnects.dropped")

    def test_server_close_then_resume_exactly_once(self) -> Any:
        return self.check_fault_then_resume(JetFault("close", after=100, code=1001), "reconnects.dropped")

    @defer.inlineCallbacks
    def test_stall_then_reconnect(self) -> Any:
        w = self.make()
        self.emu.faults.add(JetFault("stall", after=10, seconds=10_000))
        w.startService()
        yield self.connected()
        self.produce(200)
        yield until(lambda: self.emu.connections[0].fault == "stall")
        yield until(lambda: len(self.sink.frames) >= 10)
        self.assertEqual(self.wader.state.name, "connected")
        self.clock.advance(15)  # a ping goes out, no pong comes back
        self.clock.advance(15.1)  # 30 s of silence: the stall timer fires
        expected = self.expected()
        yield self.settle(lambda: len(self.emu.connections) >= 2 and len(self.sink.frames) >= len(expected))
        self.assertEqual(self.sink.frames, expected)
        self.assertIn("reconnects.stall", self.stats.counters)

    @defer.inlineCallbacks
    def test_refused_for_a_while_then_the_gap_is_replayed(self) -> Any:
        w = self.make()
        w.startService()
        yield self.connected()
        self.produce(100)
        self.emu.faults.add(JetFault("refuse", times=2, code=503))
        self.emu.open[0].tcp.abortConnection()  # the live connection dies; the next two are refused
        self.produce(400)  # events keep being made meanwhile
        expected = self.expected()
        yield self.settle(lambda: len(self.sink.frames) >= len(expected) and self.wader.state.name == "connected",
                          timeout=40)
        self.assertEqual([c.refused for c in self.emu.connections[1:3]], [503, 503])
        self.assertEqual(self.sink.frames, expected)
        self.assertIn("reconnects.http", self.stats.counters)

    @defer.inlineCallbacks
    def test_options_update_without_reconnect(self) -> Any:
        w = self.make()
        w.startService()
        yield self.connected()
        self.produce(200)
        before = self.expected()
        yield self.settle(lambda: len(self.sink.frames) >= len(before))
        mark = self.emu.timeline.end
        yield self.store.set_params("subscribe", {"wantedCollections": ["app.bsky.feed.like"]})
        self.clock.advance(0.5)  # the debounce
        yield until(lambda: self.emu.connections[0].options_updates)
        self.assertEqual(self.emu.connections[0].options_updates[0]["wantedCollections"], ["app.bsky.feed.like"])
        self.produce(200)
        likes = self.emu.timeline.matching(Wants.of(["app.bsky.feed.like"], []), mark)
        yield self.settle(lambda: len(self.sink.frames) >= len(before) + len(likes))
        self.assertEqual(self.sink.frames, before + likes)
        self.assertEqual(len(self.emu.connections), 1)  # no reconnect
        self.assertEqual(self.wader.state.name, "connected")
        self.assertIn("wantedCollections=app.bsky.feed.like", self.wader.state.request_line or "")

    @defer.inlineCallbacks
    def test_many_dids_go_in_the_hello_not_the_url(self) -> Any:
        self.emu_clock = task.Clock()
        self.emu_clock.advance(1_700_000_000)
        self.emu = start_jetstream(self, clock=self.emu_clock, seed=7, users=300)
        dids = self.emu.timeline.corpus.dids[:200]
        w = self.make({"wantedDids": dids})
        w.startService()
        yield self.connected()
        record = self.emu.connections[0]
        self.assertEqual(record.params.get("requireHello"), ["true"])
        self.assertNotIn("wantedDids", record.params)
        self.assertIn("wantedDids=(200 DIDs)", w.state.request_line or "")
        yield until(lambda: record.options_updates)
        self.assertEqual(sorted(record.options_updates[0]["wantedDids"]), sorted(dids))
        self.produce(300)
        expected = self.expected()
        self.assertTrue(expected)
        yield self.settle(lambda: len(self.sink.frames) >= len(expected))
        self.assertEqual(self.sink.frames, expected)

    @defer.inlineCallbacks
    def test_bad_options_close_1008_is_fatal(self) -> Any:
        w = self.make()
        w.startService()
        yield self.connected()
        # the store validates params; a server that refuses them anyway closes with 1008
        self.assertTrue(self.wader.source.apply_params(self.wader.active,  # type: ignore[arg-type]
                                                       {"wantedDids": ["did:key:nope"]}))
        yield until(lambda: self.wader.state.name == "fatal")
        self.assertEqual(self.wader.state.cause, "close 1008")

    @defer.inlineCallbacks
    def test_restart_resumes_from_the_journal_exactly_once(self) -> Any:
        """The in-process twin of kill -9: a new wader whose journal holds what the old one got."""
        w = self.make()
        w.startService()
        yield self.connected()
        self.produce(300)
        yield until(lambda: len(self.sink.frames) >= 40)
        first = self.sink
        yield w.stopService()
        self.produce(300)  # made while nobody listens
        w2 = self.make(journal=Frames(list(first.frames)), sink=first)
        w2.startService()
        yield self.connected(2)
        self.assertIsNotNone(self.emu.connections[-1].cursor)
        self.produce(100)
        expected = self.expected()
        yield self.settle(lambda: len(first.frames) >= len(expected))
        self.assertEqual(first.frames, expected)


class FaultScriptTests(JetstreamBase):
    """Random fault scripts (replayable by seed) against one stream: exactly once, whatever happens."""

    @defer.inlineCallbacks
    def check_script(self, seed: int) -> Any:
        rnd = random.Random(seed)
        faults = []
        for _ in range(6):
            kind = rnd.choice(["drop", "close", "too_slow", "stall", "refuse"])
            if kind == "refuse":
                faults.append(JetFault("refuse", times=rnd.randint(1, 2), code=rnd.choice([503, 429, 500])))
            elif kind == "close":
                faults.append(JetFault("close", after=rnd.randrange(100), code=rnd.choice([1000, 1001, 1011, 1013])))
            else:
                faults.append(JetFault(kind, after=rnd.randrange(100), seconds=10_000))
        w = self.make(compress=rnd.random() < 0.7)
        self.emu.faults.add(*faults)
        w.startService()
        stalled: set[int] = set()

        def step() -> None:
            self.clock.advance(0)
            s = self.wader.state
            if s.name == "retrying" and s.next_attempt_at is not None:
                self.clock.advance(max(0.0, s.next_attempt_at - self.clock.seconds()))
            for record in self.emu.connections:  # a stalled server: let the stall timer fire
                if record.fault == "stall" and record.number not in stalled:
                    stalled.add(record.number)
                    self.clock.advance(31)

        made = 0
        while made < 1000 or self.emu.faults.pending:  # events flow until every fault has fired
            self.assertLess(made, 30_000, f"seed {seed}: faults left {self.emu.faults.pending}")
            self.produce(20)
            made += 20
            step()
            yield task.deferLater(reactor, 0.002, lambda: None)  # the stream flows between batches

        def done() -> bool:
            step()
            return self.wader.state.name == "connected" and len(self.sink.frames) >= len(expected)

        self.produce(100)
        start = next(c.start for c in self.emu.connections if c.start is not None)
        expected = self.emu.timeline.matching(Wants.of(POSTS["wantedCollections"], []), start)
        yield until(done, timeout=60)
        fired = [c.fault or (f"refused {c.refused}" if c.refused else None) for c in self.emu.connections]
        self.assertEqual(len(self.sink.frames), len(expected), f"seed {seed}: {fired}")
        self.assertEqual(self.sink.frames, expected, f"seed {seed}: {fired}")

    def test_script_1(self) -> Any:
        return self.check_script(1)

    def test_script_2(self) -> Any:
        return self.check_script(2)

    def test_script_3(self) -> Any:
        return self.check_script(3)

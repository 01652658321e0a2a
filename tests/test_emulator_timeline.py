"""The emulator's shared timeline (rate mode): one world, seen through each connection.

Two connections open at the same time must see the same tweet (same id,
same bytes) when it matches both, as on the real service; that is what
makes overlap (predicate change) testable against the emulator.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.domain.matching import Predicates
from flamingo.emulator.timeline import Timeline
from tests.support.emulator import request, start_emulator

FILTER = "/1.1/statuses/filter.json"
FORM = "application/x-www-form-urlencoded"


def statuses(frames: list[bytes]) -> list[dict[str, Any]]:
    return [m for m in (orjson.loads(f) for f in frames) if "user" in m]


class SharedTimelineTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def open(self, emu: Any, track: str | None) -> Any:
        if track is None:
            client = yield request(emu.port, testcase=self)
        else:
            body = f"track={track}".encode()
            client = yield request(emu.port, "POST", FILTER, body=body, testcase=self)
        yield client.wait_for(lambda: client.status is not None)
        self.assertEqual(client.status, 200, client.raw[:200])
        return client

    @defer.inlineCallbacks
    def test_overlapping_connections_see_the_same_tweets(self) -> Any:
        clock = Clock()
        emu = start_emulator(self, clock=clock, rate=200, keepalive=0, record=True,
                             one_connection_per_account=False)
        yield self.open(emu, "austin")
        yield self.open(emu, "austin,python")
        yield self.open(emu, None)  # sample: the whole timeline
        for _ in range(50):
            clock.advance(0.02)  # 1 s: 200 positions
        old, new, sample = emu.sent_messages
        old_st, new_st = statuses(old), statuses(new)
        self.assertGreater(len(old_st), 30)
        self.assertGreater(len(new_st), len(old_st))
        # every tweet the narrower connection got, the wider one got too, byte for byte
        self.assertLessEqual(set(old), set(new) | {f for f in old if b'"user"' not in f})
        for frames in (old, new):
            self.assertEqual(set(frames) - set(sample), set())  # all from the one timeline
        self.assertEqual(len(sample), 200)
        ids = [m["id"] for m in statuses(sample)]
        self.assertEqual(ids, sorted(set(ids)))  # increasing along the timeline
        # each connection got exactly the timeline's tweets matching its predicates
        for frames, track in ((old, ["austin"]), (new, ["austin,python"])):
            preds = Predicates.from_params({"track": track})
            expected = [f for f in sample if "user" not in orjson.loads(f) or preds.matches(orjson.loads(f))]
            self.assertEqual(frames, expected)
        self.assertTrue(any(b"python" in f.lower() and f not in old for f in new))

    @defer.inlineCallbacks
    def test_a_later_connection_starts_at_the_head(self) -> Any:
        clock = Clock()
        emu = start_emulator(self, clock=clock, rate=100, keepalive=0, record=True,
                             one_connection_per_account=False)
        yield self.open(emu, None)
        clock.advance(1)
        yield self.open(emu, None)
        clock.advance(1)
        first, second = emu.sent_messages
        self.assertEqual(len(first), 200)
        self.assertEqual(second, first[100:])

    @defer.inlineCallbacks
    def test_rate_zero_keeps_a_sequence_per_connection(self) -> Any:
        emu = start_emulator(self, rate=0, record=True, one_connection_per_account=False)
        a = yield self.open(emu, None)
        b = yield self.open(emu, None)
        yield a.wait_for(lambda: len(emu.sent_messages[0]) > 10)
        yield b.wait_for(lambda: len(emu.sent_messages[1]) > 10)
        ids_a = {m["id"] for m in statuses(emu.sent_messages[0][:10])}
        ids_b = {m["id"] for m in statuses(emu.sent_messages[1][:10])}
        self.assertEqual(ids_a & ids_b, set())  # documented: no shared time at rate 0


class TimelineTests(SynchronousTestCase):
    def make(self, **kw: Any) -> tuple[Timeline, Clock]:
        clock = Clock()
        cycles = iter(range(1, 10**7))
        return Timeline(seed=1, size="small", rate=100, clock=clock,
                        next_cycle=lambda: next(cycles), **kw), clock

    def test_positions_are_rendered_once_and_forgotten_when_passed(self) -> None:
        tl, clock = self.make()
        a, b = tl.reader(None, False), tl.reader(None, True)
        clock.advance(1)
        data_a, n_a = a.take(1000, 1 << 30)
        self.assertEqual(n_a, 100)
        self.assertEqual(len(tl.entries), 100)  # b has not read them yet
        data_b, n_b = b.take(1000, 1 << 30)
        self.assertEqual(n_b, 100)
        self.assertEqual(tl.entries, [])
        self.assertEqual(data_a.split(b"\r\n")[:-1],
                         [f for i, f in enumerate(data_b.split(b"\r\n")[:-1]) if i % 2 == 1])

    def test_a_slow_reader_cannot_hold_more_than_max_lag(self) -> None:
        tl, clock = self.make(max_lag=50)
        slow, fast = tl.reader(None, False), tl.reader(None, False)
        seen = b""
        for _ in range(10):
            clock.advance(1)
            seen += fast.take(10**6, 1 << 30)[0]
            self.assertLessEqual(len(tl.entries), 50)
        self.assertEqual(slow.lag(), 50)
        data, n = slow.take(10**6, 1 << 30)
        self.assertEqual(n, 50)  # it skipped ahead past the rest
        self.assertEqual(data.split(b"\r\n")[:-1], seen.split(b"\r\n")[:-1][-50:])

    def test_skip_drops_what_is_due(self) -> None:
        tl, clock = self.make()
        r = tl.reader(None, False)
        clock.advance(1)
        r.skip()
        self.assertEqual((r.lag(), r.take(10, 1 << 30)), (0, (b"", 0)))
        r.close()
        self.assertEqual(tl.readers, [])


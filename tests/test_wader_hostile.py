"""The wader against hostile bodies over real loopback HTTP: gzip bombs, a second member.

Bounds are asserted on sizes and counts (bytes per hand-over to the sink,
reactor turns, stats calls), never on time.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from flamingo.stream.framing import SLICE_BYTES
from flamingo.stream.pump import TURN_BYTES
from tests.test_wader import RecordingSink, RecordingStats, Script, WaderTestBase, frame, tweet, until


class BatchSink(RecordingSink):
    """Keeps the size of every hand-over; ``after_batch()`` runs after each one."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.after_batch: Callable[[], None] = lambda: None

    def messages_received(self, frames: list[bytes]) -> None:
        self.batches.append(sum(len(f) + 2 for f in frames))
        super().messages_received(frames)
        self.after_batch()


class CallCountingStats(RecordingStats):
    """Counts the keep-alive calls: a flood must be a few calls, not one per keep-alive."""

    def __init__(self) -> None:
        super().__init__()
        self.keepalive_calls = 0

    def keepalive(self, n: int = 1) -> None:
        self.keepalive_calls += 1
        super().keepalive(n)


def member(data: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


class GzipBombTests(WaderTestBase):
    def setUp(self) -> None:
        super().setUp()
        self.sink = BatchSink()
        self.stats = CallCountingStats()
        self.wader = self.make_wader(gzip=True, delimited=False)

    @defer.inlineCallbacks
    def test_a_bomb_of_messages_reaches_the_sink_in_bounded_batches(self) -> Any:
        n = 40_000
        body = b"".join(frame(tweet(i % 50), delimited=False) for i in range(n))
        self.assertGreater(len(body), 8 * SLICE_BYTES)
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        seen.request.write(member(body)[:-8])  # one write; the member stays open
        yield self.sink.wait_for(n)
        self.assertEqual(self.sink.frames, [tweet(i % 50) for i in range(n)])
        # a turn's budget, the slice that overran it, and the message a turn ended in
        self.assertLessEqual(max(self.sink.batches),
                             TURN_BYTES + SLICE_BYTES + len(frame(tweet(49), False)))
        self.assertGreater(self.wader.active.pump.turns, len(body) // TURN_BYTES - 1)
        self.assertEqual(self.state(), "connected")

    @defer.inlineCallbacks
    def test_a_bomb_of_keepalives_is_counted_in_bulk(self) -> Any:
        n = 2_000_000
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        seen.request.write(member(b"\r\n" * n + frame(tweet(1), delimited=False))[:-8])
        yield self.sink.wait_for(1)
        self.assertEqual(self.stats.counters["keepalives"], n)
        self.assertLessEqual(self.stats.keepalive_calls, 4 * n // TURN_BYTES + 10)  # one per turn

    @defer.inlineCallbacks
    def test_decoding_a_long_backlog_is_not_a_stall(self) -> Any:
        n = 60_000
        body = b"".join(frame(tweet(i % 50), delimited=False) for i in range(n))
        self.assertGreater(len(body), 4 * TURN_BYTES)
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        # each batch "takes" a third of the stall timeout on the wader's clock
        self.sink.after_batch = lambda: self.clock.advance(30)
        seen.request.write(member(body)[:-8])
        conn = self.wader.active
        yield self.sink.wait_for(n)
        self.assertGreater(len(self.sink.batches), 3)  # > 90 s on the clock, no byte read
        self.assertIsNone(conn.aborted)  # no stall
        self.assertIs(self.wader.active, conn)
        self.assertEqual(self.state(), "connected")
        self.assertEqual(self.stats.attempts, ["initial"])

    @defer.inlineCallbacks
    def test_a_bomb_of_garbage_lines_is_counted_in_bulk(self) -> Any:
        n = 100_000
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        seen.request.write(member(b"x\r\n" * n + frame(tweet(1), delimited=False))[:-8])
        yield self.sink.wait_for(1)
        self.assertEqual(self.stats.counters["parse_errors.non_json"], n)
        turns = self.wader.active.pump.turns
        self.assertLessEqual(len(self.stats.errors), turns)  # one call per kind and turn
        self.assertLess(turns, n // 100)
        self.assertEqual(self.stats.errors[0], ("non_json", b"x"))
        self.assertEqual(self.state(), "connected")

    @defer.inlineCallbacks
    def test_what_was_received_is_handed_on_when_closing_while_behind(self) -> Any:
        n = 60_000
        body = b"".join(frame(tweet(i % 50), delimited=False) for i in range(n))
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        seen.request.write(member(body)[:-8])
        yield until(lambda: self.wader.active is not None and self.wader.active.pump is not None
                    and self.wader.active.pump.behind)
        conn = self.wader.active
        received = conn.decoder.queued  # not decoded yet ...
        self.assertGreater(received, 0)
        yield self.wader.stopService()
        self.assertEqual(conn.decoder.queued, 0)  # ... and decoded, not dropped
        self.assertFalse(conn.decoder.pending)
        self.assertEqual(self.state(), "stopped")
        self.assertEqual(self.sink.frames, [tweet(i % 50) for i in range(len(self.sink.frames))])

    @defer.inlineCallbacks
    def test_the_end_of_a_bomb_comes_after_all_of_it(self) -> Any:
        n = 30_000
        body = b"".join(frame(tweet(i % 50), delimited=False) for i in range(n))
        yield self.start(Script(chunks=[body], gzip=True, close=True))
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(len(self.sink.frames), n)
        self.assertEqual(self.wader.state.cause, "dropped")

    @defer.inlineCallbacks
    def test_a_second_gzip_member_recycles_the_connection(self) -> Any:
        seen = yield self.start(Script(hold=True))
        seen.request.setHeader(b"content-encoding", b"gzip")
        seen.request.write(member(frame(tweet(1), delimited=False)))
        seen.request.write(member(frame(tweet(2), delimited=False)))
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.sink.frames, [tweet(1)])
        self.assertEqual(self.wader.state.cause, "network")
        self.assertEqual([kind for kind, _ in self.stats.errors], ["gzip"])

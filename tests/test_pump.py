"""The body pump: bounded decoding per reactor turn, order and back-pressure kept.

Turns are driven with a ``task.Clock`` (``callLater(0)`` runs on
``advance(0)``); the transport is a ``StringTransport``, whose
``producerState`` shows pausing. Bounds are sizes and counts, never time.
"""

from __future__ import annotations

import gzip

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.framing import LINE_COST, StreamDecoder
from flamingo.stream.pump import BodyPump


def msg(i: int) -> bytes:
    return b'{"id":%d}' % i


def lines(a: int, b: int) -> bytes:
    return b"".join(msg(i) + b"\r\n" for i in range(a, b))


class Harness:
    """A pump over a real decoder; records each turn's messages and decoded bytes."""

    def __init__(self, gz: bool = True, slice_bytes: int = 1024, turn_bytes: int = 4096) -> None:
        self.clock = Clock()
        self.decoder = StreamDecoder(gzip=gz, slice_bytes=slice_bytes)
        self.turns: list[list[bytes]] = []
        self.turn_errors: list[int] = []
        self.keep_going = True
        self.pump = BodyPump(self.decoder, self.on_turn, self.clock.callLater, turn_bytes)
        self.transport = StringTransport()
        self.pump.producer = self.transport

    def on_turn(self, frames: list[bytes]) -> bool:
        self.turns.append(frames)
        self.turn_errors.append(sum(self.decoder.take_error_counts().values()))
        return self.keep_going

    @property
    def frames(self) -> list[bytes]:
        return [f for t in self.turns for f in t]

    def run_turns(self) -> None:
        """Run the due turns (a Clock runs calls scheduled at ``now`` in the same advance)."""
        self.clock.advance(0)
        assert not self.pump.behind


class PumpTests(SynchronousTestCase):
    def test_a_bomb_is_spread_over_turns_with_the_transport_paused(self):
        h = Harness(slice_bytes=1024, turn_bytes=4096)
        body = b"\r\n" * 50_000 + lines(0, 100)
        h.pump.data_received(gzip.compress(body))
        self.assertTrue(h.pump.behind)
        self.assertEqual(h.transport.producerState, "paused")
        self.assertEqual(len(h.turns), 1)
        h.run_turns()
        self.assertGreaterEqual(len(h.turns), len(body) // (4096 + 1024))
        self.assertEqual(h.frames, [msg(i) for i in range(100)])
        self.assertEqual(h.decoder.parser.keepalives, 50_000)
        self.assertEqual(h.transport.producerState, "producing")

    def test_a_turn_hands_over_at_most_its_budget(self):
        h = Harness(gz=False, slice_bytes=1000, turn_bytes=5000)
        h.pump.data_received(lines(0, 5000))
        h.run_turns()
        self.assertEqual(h.frames, [msg(i) for i in range(5000)])
        # the budget (bytes and a LINE_COST per line), plus the one slice that overran it
        most = max(sum(len(f) + 2 + LINE_COST for f in t) for t in h.turns)
        self.assertLessEqual(most, 5000 + 1000 + 100 * LINE_COST)

    def test_bytes_arriving_while_behind_keep_their_order(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=200)
        h.pump.data_received(lines(0, 50))
        self.assertTrue(h.pump.behind)
        h.pump.data_received(lines(50, 80))  # already parsed by the HTTP client: queued, not decoded now
        self.assertLess(len(h.frames), 50)
        h.run_turns()
        self.assertEqual(h.frames, [msg(i) for i in range(80)])

    def test_the_end_is_reported_after_what_came_before(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=100)
        h.pump.data_received(lines(0, 40))
        seen_at_end: list[int] = []
        h.pump.end(lambda: seen_at_end.append(len(h.frames)))
        self.assertEqual(seen_at_end, [])
        self.assertTrue(h.pump.ending)
        h.run_turns()
        self.assertEqual(seen_at_end, [40])
        self.assertEqual(h.transport.producerState, "paused")  # the body is over: no resume

    def test_an_idle_pump_reports_the_end_at_once(self):
        h = Harness(gz=False)
        h.pump.data_received(msg(1) + b"\r\n")
        ended: list[bool] = []
        h.pump.end(lambda: ended.append(True))
        self.assertEqual((h.frames, ended), ([msg(1)], [True]))

    def test_stop_drops_the_queue_and_reports_a_pending_end(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=100)
        h.pump.data_received(lines(0, 40))
        ended: list[bool] = []
        h.pump.end(lambda: ended.append(True))
        h.pump.stop()
        self.assertEqual(ended, [True])
        self.assertFalse(h.pump.behind)
        n = len(h.frames)
        h.clock.advance(0)
        h.pump.data_received(msg(99) + b"\r\n")
        self.assertEqual(len(h.frames), n)

    def test_the_turn_callback_can_stop_the_pump(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=100)
        h.keep_going = False
        h.pump.data_received(lines(0, 40))
        self.assertEqual(len(h.turns), 1)
        self.assertFalse(h.pump.behind)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_tiny_garbage_lines_count_as_work(self):
        # three-byte lines are handled one by one: a turn takes far fewer of them than
        # its byte budget alone would allow
        h = Harness(slice_bytes=3000, turn_bytes=30_000)
        n = 200_000
        h.pump.data_received(gzip.compress(b"x\r\n" * n))
        h.run_turns()
        self.assertEqual(sum(h.turn_errors), n)  # every one counted as a non_json error
        # a turn: its budget in lines, plus the one slice that may overrun it
        self.assertLessEqual(max(h.turn_errors), 30_000 // LINE_COST + 3000 // 3)
        self.assertGreaterEqual(len(h.turns), n // (30_000 // LINE_COST + 1000))

    def test_drain_hands_over_everything_queued_in_turn_sized_batches(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=1000)
        h.pump.data_received(lines(0, 500))
        ended: list[int] = []
        h.pump.end(lambda: ended.append(len(h.frames)))
        h.pump.drain()  # closing on purpose: nothing received is dropped
        self.assertEqual(h.frames, [msg(i) for i in range(500)])
        self.assertGreater(len(h.turns), 5)
        self.assertEqual(ended, [])  # the end waits for stop(), the closer decides
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.pump.stop()
        self.assertEqual(ended, [500])

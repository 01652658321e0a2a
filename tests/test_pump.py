"""The body pump: bounded decoding per reactor turn, order and back-pressure kept.

Turns are driven with a ``task.Clock`` (``callLater(0)`` runs on
``advance(0)``); the transport is a ``StringTransport``, whose
``producerState`` shows pausing.
"""

from __future__ import annotations

import gzip

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.framing import StreamDecoder
from flamingo.stream.pump import BodyPump


def msg(i: int) -> bytes:
    return b'{"id":%d}' % i


class Harness:
    def __init__(self, gz: bool = True, slice_bytes: int = 1024, turn_bytes: int = 4096) -> None:
        self.clock = Clock()
        self.decoder = StreamDecoder(gzip=gz, slice_bytes=slice_bytes)
        self.steps: list[list[bytes]] = []
        self.turn_sizes: list[int] = []
        self.pump = BodyPump(self.decoder, self.on_step, self.clock.callLater, turn_bytes)
        self.transport = StringTransport()
        self.pump.producer = self.transport
        self.ended = 0

    def on_step(self, frames: list[bytes]) -> bool:
        self.steps.append(frames)
        return True

    @property
    def frames(self) -> list[bytes]:
        return [f for s in self.steps for f in s]

    def run_turns(self) -> int:
        """Run the due turns (a Clock runs calls scheduled at ``now`` in the same advance)."""
        turns = self.pump.turns
        self.clock.advance(0)
        assert not self.pump.behind
        return self.pump.turns - turns


class PumpTests(SynchronousTestCase):
    def test_a_bomb_is_spread_over_turns_with_the_transport_paused(self):
        h = Harness(slice_bytes=1024, turn_bytes=4096)
        body = b"\r\n" * 50_000 + b"".join(msg(i) + b"\r\n" for i in range(100))
        h.pump.data_received(gzip.compress(body))
        self.assertTrue(h.pump.behind)
        self.assertEqual(h.transport.producerState, "paused")
        self.assertLessEqual(sum(len(s) for s in h.steps), 4)  # one turn: 4 slices at most
        sizes: list[int] = []
        h.pump.on_step = lambda frames: (sizes.append(h.decoder.last_step_bytes), h.on_step(frames))[1]
        turns = h.run_turns()
        self.assertGreaterEqual(turns, len(body) // 4096 - 1)
        self.assertLessEqual(max(sizes), 1024)
        self.assertEqual(h.frames, [msg(i) for i in range(100)])
        self.assertEqual(h.decoder.parser.keepalives, 50_000)
        self.assertEqual(h.transport.producerState, "producing")

    def test_bytes_arriving_while_behind_keep_their_order(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=200)
        first = b"".join(msg(i) + b"\r\n" for i in range(50))
        second = b"".join(msg(i) + b"\r\n" for i in range(50, 80))
        h.pump.data_received(first)
        self.assertTrue(h.pump.behind)
        h.pump.data_received(second)  # already parsed by the HTTP client: queued, not decoded now
        before = len(h.frames)
        self.assertLess(before, 50)
        h.run_turns()
        self.assertEqual(h.frames, [msg(i) for i in range(80)])

    def test_the_end_is_reported_after_what_came_before(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=100)
        h.pump.data_received(b"".join(msg(i) + b"\r\n" for i in range(40)))
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
        h.pump.data_received(b"".join(msg(i) + b"\r\n" for i in range(40)))
        ended: list[bool] = []
        h.pump.end(lambda: ended.append(True))
        h.pump.stop()
        self.assertEqual(ended, [True])
        self.assertFalse(h.pump.behind)
        n = len(h.frames)
        h.clock.advance(0)
        h.pump.data_received(msg(99) + b"\r\n")
        self.assertEqual(len(h.frames), n)

    def test_a_step_callback_can_stop_the_pump(self):
        h = Harness(gz=False, slice_bytes=100, turn_bytes=10_000)
        h.on_step = lambda frames: False  # type: ignore[method-assign]
        h.pump.on_step = h.on_step
        h.pump.data_received(b"".join(msg(i) + b"\r\n" for i in range(40)))
        self.assertFalse(h.pump.behind)
        self.assertEqual(h.clock.getDelayedCalls(), [])

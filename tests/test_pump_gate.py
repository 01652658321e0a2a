"""The body pump at the journal writer's gate: no turn while it is closed, the socket paused.

The gate (``flow.Flow``) is closed and opened by the test; turns run on a
``task.Clock``; the transport is a ``StringTransport`` (``producerState``).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.flow import Flow
from flamingo.stream.framing import StreamDecoder
from flamingo.stream.pump import BodyPump


def lines(a: int, b: int) -> bytes:
    return b"".join(b'{"id":%d}\r\n' % i for i in range(a, b))


class GatedPump:
    def __init__(self, turn_bytes: int = 1 << 20) -> None:
        self.clock = Clock()
        self.flow = Flow(now=self.clock.seconds)
        self.turns: list[list[bytes]] = []
        self.pump = BodyPump(StreamDecoder(gzip=False), self.on_turn, self.clock.callLater, turn_bytes,
                             gate=self.flow)
        self.transport = StringTransport()
        self.pump.producer = self.transport
        self.close_after_turn = False

    def on_turn(self, frames: list[bytes]) -> bool:
        self.turns.append(frames)
        if self.close_after_turn:
            self.flow.close()  # the writer fell behind while this turn was handed over
        return True

    @property
    def frames(self) -> list[bytes]:
        return [f for t in self.turns for f in t]


class GateTests(SynchronousTestCase):
    def test_closed_gate_no_turn_transport_paused_then_everything_in_order(self):
        g = GatedPump()
        g.flow.close()
        g.pump.data_received(lines(0, 10))
        g.pump.data_received(lines(10, 20))
        self.assertEqual(g.turns, [])
        self.assertEqual(g.transport.producerState, "paused")
        self.assertTrue(g.pump.behind)
        g.clock.advance(2.5)
        g.flow.reopen()
        self.assertEqual(g.flow.paused_seconds, 2.5)
        self.assertEqual(g.frames, [b'{"id":%d}' % i for i in range(20)])
        self.assertEqual(g.transport.producerState, "producing")
        self.assertFalse(g.pump.behind)

    def test_gate_closing_during_a_turn_pauses_before_the_next(self):
        g = GatedPump()
        g.close_after_turn = True
        g.pump.data_received(lines(0, 5))
        self.assertEqual(len(g.turns), 1)
        self.assertEqual(g.transport.producerState, "paused")
        g.pump.data_received(lines(5, 8))  # bytes already read from the socket wait
        self.assertEqual(len(g.turns), 1)
        g.close_after_turn = False
        g.flow.reopen()
        self.assertEqual(g.frames, [b'{"id":%d}' % i for i in range(8)])
        self.assertEqual(g.transport.producerState, "producing")

    def test_body_end_waits_for_the_gate(self):
        g = GatedPump()
        g.flow.close()
        g.pump.data_received(lines(0, 3))
        ended = []
        g.pump.end(lambda: ended.append(len(g.frames)))
        self.assertEqual(ended, [])
        g.flow.reopen()
        self.assertEqual(ended, [3])  # reported after what came before it

    def test_stop_while_waiting_at_the_gate_withdraws_the_wait(self):
        g = GatedPump()
        g.flow.close()
        g.pump.data_received(lines(0, 3))
        g.pump.stop()
        g.flow.reopen()
        self.assertEqual(g.turns, [])

    def test_drain_on_close_ignores_the_gate(self):
        g = GatedPump()
        g.flow.close()
        g.pump.data_received(lines(0, 4))
        g.pump.drain()  # a closing connection hands on what it received
        self.assertEqual(len(g.frames), 4)

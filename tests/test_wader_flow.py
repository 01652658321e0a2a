"""Back-pressure end to end: the wader's link stops reading the socket while delivery's gate is closed.

Real loopback HTTP from the emulator; the sink closes its ``Flow`` after the
first batch, as the journal writer does when it falls behind. The test waits
for real conditions (the transport paused, the emulator done sending), never
for time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.config import from_mapping
from flamingo.stream.flow import Flow
from flamingo.stream.wader import Wader
from tests.support.emulator import start_emulator
from tests.support.fakes import MemoryStore
from tests.test_wader import RecordingSink, RecordingStats, until


class GatedSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.flow = Flow()
        self.batches = 0

    def messages_received(self, frames: list[bytes]) -> None:
        self.batches += 1
        super().messages_received(frames)
        if self.batches == 1:
            self.flow.close()  # the writer fell behind


class FlowTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_closed_gate_pauses_the_socket_and_loses_nothing(self) -> Any:
        n = 3000
        emu = start_emulator(self, seed=5, rate=0, size="small", record=True, user="flamingo", password="pw")
        config = from_mapping({"username": "flamingo", "password": "pw", "stream": "sample",
                               "api": {"url": emu.url}, "wader": {"min_interval": 0}}, environ={})
        sink = GatedSink()
        clock = task.Clock()
        w = Wader(config, reactor, MemoryStore({}), sink, RecordingStats(), clock=clock)
        self.addCleanup(lambda: w.stopService() if w.running else None)
        self.assertIs(w.flow, sink.flow)
        emu.faults.close_after(n)
        w.startService()
        clock.advance(0)
        yield until(lambda: sink.batches >= 1)
        link = w.active
        assert link is not None
        pump = link.pump  # type: ignore[attr-defined]
        yield until(lambda: pump.paused and len(emu.sent_messages[0]) == n)
        held = len(sink.frames)
        self.assertLess(held, n)  # the rest waits in the kernel's buffers and the decoder
        self.assertEqual(sink.batches, 1)  # no turn ran while the gate was closed
        self.assertFalse(sink.flow.open)
        sink.flow.reopen()
        yield until(lambda: len(sink.frames) == n)
        self.assertEqual(sink.frames, [m.rstrip(b"\r\n") for m in emu.sent_messages[0]])
        self.assertEqual(sink.flow.pauses, 1)

"""Feeding a response body through its decoder a bounded amount per reactor turn.

A few KB of gzip can expand to many MB (4 M keep-alives from 8 KB); decoding
all of it inside one ``dataReceived`` blocks the reactor for seconds, and
with it the journal, Redis and the REST API. The pump gives each reactor
turn at most ``turn_bytes`` of decoded body (tiny lines count extra: see
``StreamDecoder.last_step_cost``). While work is left it pauses
the transport (back-pressure: the server is not read faster than we can
decode) and continues on the next turn. Bytes that still arrive while paused
(already parsed out of the socket by the HTTP client) queue behind the
pending ones, so order is kept. The end of the body is reported only once
everything before it has been decoded.

With a ``gate`` (``flow.Flow``: closed while the event log's writer is
behind) no turn starts while the gate is closed: the transport stays paused
until it opens.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IPushProducer

from flamingo.stream.flow import Flow, FlowWait
from flamingo.stream.framing import SLICE_BYTES, StreamDecoder

__all__ = ["BodyPump", "TURN_BYTES"]

#: work per reactor turn, in decoded body bytes (``StreamDecoder.last_step_cost``:
#: lines handled one by one count extra): about 10 ms on a loaded 2-core machine
TURN_BYTES = 32 * SLICE_BYTES


class BodyPump:
    """Runs ``decoder`` steps; ``on_turn(frames) -> keep going?`` gets each turn's messages.

    One hand-over per turn keeps batches as large as before for the journal
    and Redis (a turn is at most ``turn_bytes`` plus one slice).

    ``call_later`` is an ``IReactorTime.callLater`` (the next turn is
    ``call_later(0, ...)``); ``producer`` is the body's transport
    (``IPushProducer``), paused while the pump is behind.
    """

    def __init__(self, decoder: StreamDecoder, on_turn: Callable[[list[bytes]], bool],
                 call_later: Callable[[float, Callable[[], None]], IDelayedCall], turn_bytes: int = TURN_BYTES,
                 gate: Flow | None = None) -> None:
        self.decoder = decoder
        self.gate = gate
        self.on_turn = on_turn
        self.call_later = call_later
        self.turn_bytes = turn_bytes
        self.producer: IPushProducer | None = None
        self.turns = 0  # reactor turns that did work (figures, tests)
        self.paused = False
        self._next: IDelayedCall | FlowWait | None = None  # the scheduled continuation (a call, or a wait at the gate)
        self._stopped = False
        self._on_end: Callable[[], None] | None = None

    @property
    def behind(self) -> bool:
        """Received bytes are waiting for a later turn."""
        return self._next is not None

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        self.decoder.push(data)
        if self._next is None:  # else a turn is due: the bytes wait behind the others
            self._turn()

    def end(self, callback: Callable[[], None]) -> None:
        """The body ended: ``callback()`` once what came before it is decoded."""
        if self._next is None or self._stopped:
            callback()
        else:
            self._on_end = callback

    @property
    def ending(self) -> bool:
        """The body has ended; its queued tail is still being decoded."""
        return self._on_end is not None

    def stop(self) -> None:
        """No more work (closing, broken): what is queued is dropped, a pending end reported now."""
        self._stopped = True
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        if self._on_end is not None:
            callback, self._on_end = self._on_end, None
            callback()

    def drain(self) -> None:
        """Decode everything queued now, in turn-sized batches: the connection is being
        closed on purpose, and what was received is still handed on, as it would have
        been had it been decoded as it came. A pending end stays pending (``stop()``)."""
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        while not self._stopped and self.decoder.pending:
            if not self._work():
                return

    def _turn(self) -> None:
        self._next = None
        if self._gated():
            return
        if not self._work():
            return
        if self.decoder.pending:
            self._pause()
            self._next = self.call_later(0, self._turn)
            return
        if self._gated():
            return
        self._resume()
        if self._on_end is not None:
            callback, self._on_end = self._on_end, None
            callback()

    def _gated(self) -> bool:
        """The gate is closed: pause the transport and come back when it opens."""
        gate = self.gate
        if gate is None or gate.open:
            return False
        self._pause()
        self._next = gate.when_open(self._after_gate)
        return True

    def _after_gate(self) -> None:
        self._next = None
        if self.decoder.pending:
            self._turn()
            return
        self._resume()
        if self._on_end is not None:
            callback, self._on_end = self._on_end, None
            callback()

    def _work(self) -> bool:
        """One turn's budget of steps, handed over; False once the pump is stopped."""
        self.turns += 1
        decoder = self.decoder
        budget = self.turn_bytes
        frames: list[bytes] = []
        while decoder.pending and budget > 0:
            frames += decoder.step()
            budget -= max(decoder.last_step_cost, 1)
        if not self.on_turn(frames) or self._stopped:
            self.stop()
            return False
        return True

    def _pause(self) -> None:
        if not self.paused and self.producer is not None:
            self.paused = True
            self.producer.pauseProducing()

    def _resume(self) -> None:
        if self.paused and self._on_end is None and self.producer is not None:
            self.paused = False
            self.producer.resumeProducing()

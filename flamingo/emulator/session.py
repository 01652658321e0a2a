"""One streaming response: framing, pacing, gzip, keep-alives, stalls, faults.

A ``StreamSession`` is the push producer registered on the connection's
transport. With ``rate=0`` it writes large pre-rendered buffers whenever the
transport asks for more (so it goes exactly as fast as the client reads);
with a rate it ticks on the injected clock and keeps a backlog while the
transport is paused (with the emulator's shared ``Timeline`` as source, the
backlog is how far this connection is behind the timeline's head), which is what drives ``FALLING_BEHIND`` warnings and
the stall disconnect (code 4). Timers use the clock it is given, so tests
drive keep-alives, rates and stalls with a ``Clock``.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from flamingo._types import JsonObject
from flamingo.emulator.faults import DISCONNECT_REASONS, Fault
from flamingo.emulator.journal import ConnectionRecord
from flamingo.emulator.pool import SharedSource, Source, frame, split_frames

if TYPE_CHECKING:  # pragma: no cover
    from flamingo.emulator.http import TcpTransport

__all__ = ["StreamSession"]

CHUNK_BYTES = 512 * 1024
GZIP_CHUNK_BYTES = 64 * 1024
WARNING_INTERVAL = 300.0


@implementer(IPushProducer)
class StreamSession:
    """The body of one never-ending ``200 OK`` chunked response."""

    def __init__(
        self,
        *,
        transport: TcpTransport,
        clock: IReactorTime,
        source: Source,
        record: ConnectionRecord,
        stream_name: str,
        delimited: bool = False,
        gzip: bool = False,
        rate: float = 0.0,
        keepalive: float = 30.0,
        faults: list[Fault] | None = None,
        stall_warnings: bool = False,
        stall_queue: int = 1000,
        warning_percent: int = 60,
        delivery_cap: int | None = None,
        random_disconnects: float = 0.0,
        seed: int = 1,
        capture: list[bytes] | None = None,
        on_close: Callable[[StreamSession], None] | None = None,
    ):
        self.transport = transport
        self.clock = clock
        self.source = source
        self.record = record
        self.stream_name = stream_name
        self.delimited = delimited
        self.keepalive = keepalive
        self.faults = list(faults or ())
        self.stall_warnings = stall_warnings
        self.stall_queue = stall_queue
        self.warning_percent = warning_percent
        self.delivery_cap = delivery_cap
        self.random_disconnects = random_disconnects
        self.rng = random.Random(seed)
        self.capture = capture
        self.on_close = on_close
        self.rate = rate if rate > 0 else (2.0 * delivery_cap if delivery_cap else 0.0)
        # a shared timeline (rate mode): the source says what is due, not our own count
        self.timeline: SharedSource | None = source if self.rate > 0 and isinstance(source, SharedSource) else None
        self.shared = self.timeline is not None
        self._gzip = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None
        self.chunk_bytes = GZIP_CHUNK_BYTES if gzip else CHUNK_BYTES

        self.paused = False
        self.stalled = False
        self.closed = False
        self.dripping: Fault | None = None
        self._drip_buffer = b""
        self.source_sent = 0  # messages taken from the source (faults count these)
        self.backlog = 0  # rate mode: messages due but not yet written
        self.produced = 0  # rate mode: messages due so far
        self.undelivered = 0  # delivery cap: cumulative, as in limit notices
        self._limit_reported = 0
        self._cap_window = -1
        self._cap_used = 0
        self._last_warning = -math.inf
        self._started = 0.0
        self._last_write = 0.0
        self._timers: dict[str, IDelayedCall] = {}
        self._pumping = False

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        self._started = self._last_write = self.clock.seconds()
        self.transport.registerProducer(self, True)
        if self.keepalive > 0:
            self._schedule("keepalive", self.keepalive, self._keepalive_tick)
        if self.rate > 0:
            self._schedule("tick", self._tick_interval(), self._tick)
        else:
            self._pump()

    def _tick_interval(self) -> float:
        return max(1.0 / self.rate, 0.01)

    def _schedule(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        old = self._timers.get(name)
        if old is not None and old.active():
            old.cancel()
        self._timers[name] = self.clock.callLater(delay, self._fire_timer, name, fn)

    def _fire_timer(self, name: str, fn: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        if not self.closed:
            fn()

    def close(self, reason: str, *, abort: bool = False) -> None:
        """End the stream the way the service did: drop the TCP connection
        (no terminating chunk; the response never ends on its own)."""
        if self.closed:
            return
        self.closed = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self.record.closed_at = self.clock.seconds()
        self.record.close_reason = reason
        closer = getattr(self.source, "close", None)
        if closer is not None:
            closer()
        self.transport.unregisterProducer()  # a no-op on a transport already gone
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()
        if self.on_close is not None:
            self.on_close(self)

    def connection_lost(self) -> None:
        """The client went away."""
        if not self.closed:
            self.close("client closed")

    # -- IPushProducer ----------------------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.closed or self.stalled:
            return
        if self.rate > 0:
            self._flush_backlog()
        else:
            self._pump()

    def stopProducing(self) -> None:
        self.close("client closed")

    # -- writing ----------------------------------------------------------
    def _wire(self, data: bytes) -> None:
        """Write bytes as one HTTP chunk (gzip-compressed and flushed if on)."""
        if self.closed or not data:
            return
        self.record.bytes_sent += len(data)
        if self._gzip is not None:
            data = self._gzip.compress(data) + self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self.transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])
        self._last_write = self.clock.seconds()

    def _send_messages(self, data: bytes, count: int) -> None:
        """Framed whole messages: counted in the journal, captured if recording."""
        if self.capture is not None:
            self.capture.extend(split_frames(data, self.delimited))
        self.record.messages_sent += count
        if self.dripping is not None:
            self._drip_buffer += data
            if "drip" not in self._timers:
                self._drip()
        else:
            self._wire(data)

    def send_message(self, message: JsonObject | bytes) -> None:
        """One extra message (limit notice, warning, disconnect), framed."""
        raw = message if isinstance(message, bytes) else orjson.dumps(message)
        self._send_messages(frame(raw, self.delimited), 1)

    def disconnect(self, code: int, reason: str | None = None) -> None:
        """Send a ``disconnect`` message and close, as the service did."""
        if self.closed:
            return
        self.send_message(
            {
                "disconnect": {
                    "code": code,
                    "stream_name": self.stream_name,
                    "reason": reason or DISCONNECT_REASONS.get(code, "Disconnected"),
                }
            }
        )
        self.close(f"disconnect {code}")

    def _keepalive_tick(self) -> None:
        now = self.clock.seconds()
        idle = now - self._last_write
        if idle >= self.keepalive - 1e-9:
            if not self.stalled and not self.paused and not self._drip_buffer:
                self._wire(b"\r\n")
            delay = self.keepalive
        else:
            delay = self.keepalive - idle
        self._schedule("keepalive", delay, self._keepalive_tick)

    # -- taking messages ----------------------------------------------------
    def _budget(self) -> int:
        """How many messages may be taken before the next fault must fire."""
        if self.faults:
            return max(0, self.faults[0].after - self.source_sent)
        return 1 << 30

    def _take(self, max_messages: int) -> int:
        """Take up to ``max_messages`` from the source and send them; faults fire in order."""
        sent = 0
        while sent < max_messages and not self.closed and not self.stalled:
            while self.faults and self._budget() == 0:
                self._fire(self.faults.pop(0))
                if self.closed or self.stalled:
                    return sent
            n = min(max_messages - sent, self._budget())
            if self.dripping is not None:
                n = min(n, 1)
            data, count = self.source.take(n, self.chunk_bytes)
            if not count:
                return sent  # replay finished: idle with keep-alives
            if self.random_disconnects and self.rng.random() < 1 - (1 - self.random_disconnects) ** count:
                self.source_sent += count
                self._send_messages(data, count)
                self.disconnect(self.rng.choice((1, 5, 9, 10, 11, 12)))
                return sent + count
            self.source_sent += count
            sent += count
            self._send_messages(data, count)
            if self.paused or (self.dripping is not None and self._drip_buffer):
                break
        return sent

    def _pump(self) -> None:
        """rate=0: write until the transport pushes back."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while not (self.paused or self.closed or self.stalled):
                if self.dripping is not None and self._drip_buffer:
                    return
                if not self._take(1 << 30):
                    return
        finally:
            self._pumping = False

    # -- rate mode ------------------------------------------------------------
    def _tick(self) -> None:
        now = self.clock.seconds()
        if self.timeline is not None:  # the emulator's timeline says what is due
            if self.stalled:
                self.timeline.skip()
            self.backlog = self.timeline.lag()
        else:
            due = int((now - self._started) * self.rate + 1e-6) - self.produced
            if due > 0:
                self.produced += due
                if not self.stalled:
                    self.backlog += due
        if self.paused and self.backlog:
            self._falling_behind(now)
        if not self.closed:
            self._flush_backlog()
        if not self.closed:
            # absolute schedule: late ticks do not make the rate drift
            interval = self._tick_interval()
            ticks = int((now - self._started) / interval + 1e-6) + 1
            self._schedule("tick", max(0.0, self._started + ticks * interval - now), self._tick)

    def _flush_backlog(self) -> None:
        if self.timeline is not None:
            self.backlog = self.timeline.lag()
        while self.backlog and not (self.paused or self.closed or self.stalled):
            if self.dripping is not None and self._drip_buffer:
                return
            n = self.backlog
            if self.delivery_cap is not None:
                n = self._apply_cap(n, self.delivery_cap)
                if not n:
                    return
            sent = self._take(n)
            if self.timeline is not None:  # n counted positions; fewer of them may match
                self.backlog = self.timeline.lag()
            if not sent:
                return
            if not self.shared:
                self.backlog -= sent

    def _apply_cap(self, n: int, cap: int) -> int:
        now = self.clock.seconds()
        window = int(now - self._started + 1e-6)
        if window != self._cap_window:
            self._cap_window, self._cap_used = window, 0
        allowed = max(0, cap - self._cap_used)
        if n > allowed:
            self.undelivered += n - allowed
            self.backlog -= n - allowed
            n = allowed
        self._cap_used += n
        if self.undelivered > self._limit_reported:
            self._limit_reported = self.undelivered
            self.send_message(
                {"limit": {"track": self.undelivered, "timestamp_ms": str(int(now * 1000))}}
            )
        return n

    def _falling_behind(self, now: float) -> None:
        percent = min(100, self.backlog * 100 // max(1, self.stall_queue))
        if self.backlog >= self.stall_queue:
            self.disconnect(4, "Stall: the client is reading too slowly")
            return
        if (
            self.stall_warnings
            and percent >= self.warning_percent
            and now - self._last_warning >= WARNING_INTERVAL
        ):
            self._last_warning = now
            self.send_message(
                {
                    "warning": {
                        "code": "FALLING_BEHIND",
                        "message": f"Your connection is falling behind and messages are being queued "
                        f"for delivery to you. Your queue is now over {percent}% full. You will be "
                        f"disconnected when the queue is full.",
                        "percent_full": percent,
                    }
                }
            )

    # -- faults ---------------------------------------------------------------
    def _fire(self, fault: Fault) -> None:
        kind = fault.kind
        if kind == "close_after":
            self.close(f"fault close_after {fault.after}")
        elif kind == "close_mid_message":
            data, count = self.source.take(1, 1)
            if count:
                self._wire(data[: max(1, len(data) // 2)])
            self.close("fault close_mid_message")
        elif kind == "stall":
            self.stalled = True
            self._schedule("unstall", fault.seconds, self._unstall)
        elif kind == "drip":
            self.dripping = fault
        elif kind == "garbage":
            self._wire(fault.data if fault.data is not None else bytes(self.rng.randrange(256) for _ in range(64)))
        elif kind == "malformed_json":
            cut = b'{"created_at":"Mon Jan 01 00:00:00 +0000 2024","id":1,"text":"unterminated'
            self._wire(frame(cut, self.delimited))
        elif kind == "bad_length":
            data, count = self.source.take(1, 1)
            body = split_frames(data, self.delimited)[0] if count else b"{}"
            if fault.length == "absurd":
                self._wire(b"%d\r\n%s\r\n" % (4_294_967_296, body))
            else:
                self._wire(b"%d\r\n%s\r\n" % (max(1, len(body) // 2), body))
        elif kind == "connection_limit":
            self._wire(b"Exceeded connection limit for user\r\n")
        elif kind == "disconnect":
            self.disconnect(fault.code or 1)

    def _unstall(self) -> None:
        self.stalled = False
        self._last_write = self.clock.seconds()
        if self.rate > 0:
            self._flush_backlog()
        elif not self.paused:
            self._pump()

    def _drip(self) -> None:
        fault = self.dripping
        if fault is None or self.closed:
            return
        if self.stalled:
            self._schedule("drip", fault.seconds, self._drip)
            return
        piece, self._drip_buffer = self._drip_buffer[: fault.bytes], self._drip_buffer[fault.bytes :]
        if piece:
            self._wire(piece)
        if self._drip_buffer:
            self._schedule("drip", fault.seconds, self._drip)
        elif self.rate > 0:
            self._flush_backlog()
        elif not self.paused:
            self._schedule("drip", fault.seconds, self._pump)

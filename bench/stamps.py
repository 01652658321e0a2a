"""Time stamps of messages, for the latency run: ``(digest, time)`` records in a file.

The emulator host writes when each message was sent, the queue consumer
when each arrived in Redis; a message is known by a digest of its exact
bytes (a raw subscription delivers the bytes as received), so nothing
about the message format is assumed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

__all__ = ["digest", "StampWriter", "read_stamps", "RECORD"]

RECORD = struct.Struct("<8sd")


def digest(message: bytes) -> bytes:
    return hashlib.blake2b(message, digest_size=8).digest()


class StampWriter:
    """Appends records; flushed every ``interval`` seconds so a killed writer loses little."""

    def __init__(self, path: str, interval: float = 0.2) -> None:
        self.file = open(path, "ab")
        self.pending: list[bytes] = []
        self.interval = interval
        self.last_flush = 0.0

    def add(self, digests: Iterable[bytes], when: float) -> None:
        pack = RECORD.pack
        self.pending.extend(pack(d, when) for d in digests)

    def flush_if_due(self, now: float) -> None:
        if now - self.last_flush >= self.interval:
            self.flush()
            self.last_flush = now

    def flush(self) -> None:
        if self.pending and not self.file.closed:
            self.file.write(b"".join(self.pending))
            self.file.flush()
            self.pending = []

    def close(self) -> None:
        self.flush()
        self.file.close()


def read_stamps(path: str, first: bool = True) -> dict[bytes, float]:
    """digest -> time (the first record of each digest, or the last)."""
    out: dict[bytes, float] = {}
    with open(path, "rb") as f:
        data = f.read()
    usable = len(data) - len(data) % RECORD.size
    for d, t in RECORD.iter_unpack(data[:usable]):
        if first and d in out:
            continue
        out[d] = t
    return out

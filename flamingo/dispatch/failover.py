"""What the sink keeps for a Redis failover: journal positions a new master may lack.

Redis replicates asynchronously. A batch the master acknowledged can be missing
on the replica that Sentinel promotes; the batch script writes the checkpoint
in the same atomic step as the queues, so the new master simply has an older
checkpoint, and the sink, which resumes from the checkpoint it reads, delivers
those events again from the journal. For that the journal must still hold
them: a spool drops segments once they are delivered. ``ReleaseGate`` holds a
position back for ``hold`` seconds (long enough for any replica to have it),
or releases at once what ``WAIT`` confirmed a replica has.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ReleaseGate", "HOLD_WITH_SENTINEL"]

#: Seconds a delivered position stays in the spool when a failover may need it again.
HOLD_WITH_SENTINEL = 60.0


class ReleaseGate:
    """Which delivered journal position the spool may drop now."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self._held: deque[tuple[float, int]] = deque()  # (first commit time, checkpoint), one per second

    def releasable(self, now: float, checkpoint: int, replicated: bool = False) -> int | None:
        """The highest position to release after ``checkpoint`` committed at ``now`` (None: nothing yet).

        ``replicated``: a replica confirmed it (WAIT), so no failover can lose it."""
        if self.hold <= 0 or replicated:
            self._held.clear()
            return checkpoint
        if self._held and now - self._held[-1][0] < 1.0:
            self._held[-1] = (self._held[-1][0], checkpoint)
        else:
            self._held.append((now, checkpoint))
        out = None
        while self._held and now - self._held[0][0] >= self.hold:
            out = self._held.popleft()[1]
        return out

"""Reconnect schedules, per cause, as pure ``attempt -> seconds`` policies.

In the spirit of ``twisted.application.internet.backoffPolicy``, but with
the Streaming API's documented rules (all values from ``wader.backoff``):

=========== =========== ========= ================
cause       first wait  growth    cap (default)
=========== =========== ========= ================
network     0.25 s      +0.25 s   16 s
stall       0.25 s      +0.25 s   16 s  (same schedule as network)
http        5 s         x2        320 s
rate_limit  60 s        x2        960 s (420 / 429)
=========== =========== ========= ================

``Backoffs`` keeps one attempt counter per cause; an established connection
that drops is retried at once (``dropped``: 0 s, then the schedule), and the
counters reset after a healthy connection.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from flamingo.config import Backoff, BackoffConfig

__all__ = ["policy", "Backoffs", "FATAL_STATUSES", "cause_for_status"]

#: statuses that no retry can fix: wait for new params/credentials or a restart
FATAL_STATUSES = frozenset({401, 403, 404, 406, 413, 416})


def policy(b: Backoff) -> Callable[[int], float]:
    """``attempt`` (1 = first retry) -> seconds to wait, per one schedule."""

    def delay(attempt: int) -> float:
        if attempt <= 0:
            return 0.0
        if b.factor > 1.0:
            # min() before the power keeps huge attempt numbers from overflowing
            n = attempt - 1
            value = b.initial * (b.factor ** min(n, 64)) + b.step * n
        else:
            value = b.initial + b.step * (attempt - 1)
        return min(value, b.cap)

    return delay


def cause_for_status(code: int) -> str:
    """HTTP status -> "fatal" | "rate_limit" | "http"."""
    if code in FATAL_STATUSES:
        return "fatal"
    if code in (420, 429):
        return "rate_limit"
    return "http"


@attrs.define
class Backoffs:
    """Attempt counters per cause; ``next_delay(cause)`` counts one more attempt."""

    config: BackoffConfig = BackoffConfig()
    attempts: dict[str, int] = attrs.Factory(dict)

    def _policy(self, cause: str) -> Callable[[int], float]:
        if cause in ("network", "stall", "dropped"):
            return policy(self.config.network)
        if cause == "rate_limit":
            return policy(self.config.rate_limit)
        return policy(self.config.http)

    def next_delay(self, cause: str) -> float:
        """Seconds before the next attempt after a failure of ``cause``.

        ``dropped`` (a healthy-looking connection ended) gives 0 s the first
        time, then follows the network schedule.
        """
        key = "network" if cause in ("stall", "dropped") else cause
        n = self.attempts.get(key, 0) + 1
        self.attempts[key] = n
        if cause == "dropped":
            return policy(self.config.network)(n - 1)
        return self._policy(cause)(n)

    def attempt(self, cause: str) -> int:
        key = "network" if cause in ("stall", "dropped") else cause
        return self.attempts.get(key, 0)

    def reset(self) -> None:
        """A healthy connection: every schedule starts again from its first wait."""
        self.attempts.clear()

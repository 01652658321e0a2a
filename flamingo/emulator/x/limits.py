"""X's rate limits: N requests per fixed window, and the ``x-rate-limit-*`` headers.

X counts requests per app in 15-minute windows and says where it stands in
three headers on every response (``x-rate-limit-limit``, ``-remaining``,
``-reset`` as a unix time); over the limit it answers 429. The window runs
on the emulator's clock so tests can step through it with a ``Clock``.
"""

from __future__ import annotations

import math

from twisted.internet.interfaces import IReactorTime

__all__ = ["RateWindow", "UsageCap"]


class RateWindow:
    """``limit`` requests per ``window`` seconds (a window starts with its first request)."""

    def __init__(self, limit: int, window: float, clock: IReactorTime):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.started: float | None = None
        self.used = 0

    def _roll(self) -> None:
        now = self.clock.seconds()
        if self.started is None or now >= self.started + self.window:
            self.started, self.used = now, 0

    def take(self) -> bool:
        """Count one request; False when it is over the limit (answer 429)."""
        self._roll()
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def headers(self) -> dict[str, str]:
        self._roll()
        reset = (self.started or 0.0) + self.window
        return {"x-rate-limit-limit": str(self.limit),
                "x-rate-limit-remaining": str(max(0, self.limit - self.used)),
                "x-rate-limit-reset": str(math.ceil(reset))}


class UsageCap:
    """The app's post allowance (X's monthly cap): ``None`` is unlimited."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.used = 0

    def remaining(self) -> int:
        return (1 << 62) if self.limit is None else max(0, self.limit - self.used)

    def spend(self, n: int) -> None:
        self.used += n

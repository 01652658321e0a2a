"""Shared helpers of the dispatch tests (helper C): waiting on conditions, not sleeping."""

from __future__ import annotations

import time
from typing import Callable

from twisted.internet import defer, reactor, task


@defer.inlineCallbacks
def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` every few ms of reactor time until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield task.deferLater(reactor, 0.01, lambda: None)

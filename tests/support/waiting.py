"""Waiting for real network I/O to reach a state: a bounded poll, never a timing assertion."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, reactor, task


def until(cond: Callable[[], object], timeout: float = 10.0,
          interval: float = 0.005) -> defer.Deferred[None]:
    """Fire once ``cond()`` is true; fail with AssertionError after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout

    def check() -> Any:
        if cond():
            return None
        if reactor.seconds() > deadline:
            raise AssertionError("condition not reached in time")
        return task.deferLater(reactor, interval, check)

    return defer.maybeDeferred(check)

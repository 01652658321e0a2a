"""Waiting for real network I/O to reach a state: a bounded poll, never a timing assertion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer, reactor, task

__all__ = ["until", "wait_for"]

T = TypeVar("T")


def until(cond: Callable[[], object], timeout: float = 20.0,
          interval: float = 0.005) -> defer.Deferred[None]:
    """Fire once ``cond()`` is true; fail with AssertionError after ``timeout`` seconds.

    The timeout only bounds a failing test: a passing one returns as soon as
    the condition holds, however loaded the machine.
    """
    return wait_for(cond, timeout, interval=interval).addCallback(lambda _: None)


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.005) -> defer.Deferred[T]:
    """Fire with ``predicate()``'s first true value; AssertionError naming ``what`` after ``timeout``."""
    deadline = reactor.seconds() + timeout

    def check() -> Any:
        value = predicate()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        return task.deferLater(reactor, interval, check)

    return defer.maybeDeferred(check)

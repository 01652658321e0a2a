"""The one place that falls back to Twisted's global reactor, and its type.

Every part takes its reactor (or clock) as an argument so tests can pass a
``Clock``; only the daemon's entry points leave it out, and they call
:func:`maybe_global_reactor` rather than importing the global one themselves
(importing it installs the default reactor, which must not happen at import
time of a module).
"""

from __future__ import annotations

from typing import TypeVar, cast

from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTCP, IReactorThreads, IReactorTime

__all__ = ["FlamingoReactor", "maybe_global_reactor"]

R = TypeVar("R")


class FlamingoReactor(IReactorCore, IReactorTCP, IReactorTime, IReactorThreads, IReactorFromThreads):
    """What the daemon asks of the global reactor (as treq's ``_ITreqReactor``):
    run and stop, TCP connections, timers, a thread pool and calls from threads."""


def maybe_global_reactor(reactor: R | None) -> R | FlamingoReactor:
    """``reactor`` if given, else ``twisted.internet.reactor``."""
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor

    return cast(FlamingoReactor, global_reactor)

"""The one place that falls back to Twisted's global reactor.

Every part takes its reactor (or clock) as an argument so tests can pass a
``Clock``; only the daemon's entry points leave it out, and they call
:func:`maybe_global_reactor` rather than importing the global one themselves
(importing it installs the default reactor, which must not happen at import
time of a module).
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["maybe_global_reactor"]

R = TypeVar("R")


def maybe_global_reactor(reactor: R | None) -> R | Any:
    """``reactor`` if given, else ``twisted.internet.reactor``."""
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor

    return global_reactor

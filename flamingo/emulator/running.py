"""An emulator in the foreground: the global reactor, run until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet.base import ReactorBase

from flamingo._reactor import FlamingoReactor, maybe_global_reactor

__all__ = ["foreground_reactor", "run_until_signal"]


def foreground_reactor() -> FlamingoReactor:
    """Twisted's global reactor (installing the default one on first use)."""
    return maybe_global_reactor(None)


def run_until_signal(reactor: FlamingoReactor, shutdown: Callable[[], None]) -> None:
    """Run ``reactor``; SIGTERM and SIGINT call ``shutdown`` on it (which stops it)."""
    signal.signal(signal.SIGTERM, lambda *a: reactor.callFromThread(shutdown))
    signal.signal(signal.SIGINT, lambda *a: reactor.callFromThread(shutdown))
    if isinstance(reactor, ReactorBase):  # every real reactor: ours handle the signals
        reactor.run(installSignalHandlers=False)
    else:  # pragma: no cover - no reactor is built otherwise
        reactor.run()

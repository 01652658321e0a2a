"""An emulator's life: the global reactor run until SIGTERM or SIGINT; its ports closed."""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.base import ReactorBase
from twisted.internet.interfaces import IListeningPort

from flamingo._reactor import FlamingoReactor, maybe_global_reactor

__all__ = ["foreground_reactor", "run_until_signal", "stop_listening", "tcp_address"]


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


def tcp_address(port: IListeningPort) -> IPv4Address | IPv6Address:
    """Where a ``listenTCP`` port listens (its ``port`` is the one given, or the one picked for 0)."""
    address = port.getHost()
    if not isinstance(address, (IPv4Address, IPv6Address)):
        raise TypeError(f"not a TCP port: {address!r}")
    return address


def stop_listening(port: IListeningPort) -> defer.Deferred[None]:
    """``port.stopListening()`` as a Deferred (it may return None, or raise: a failed Deferred)."""
    def stop() -> defer.Deferred[None]:
        d = port.stopListening()
        return d if d is not None else defer.succeed(None)
    return defer.maybeDeferred(stop)

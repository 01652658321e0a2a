"""Stopping the store while its connections are re-resolving a cluster slot's owner.

After a ``MOVED`` the store drops its connections and txredisapi's ClientService
reconnects through a :class:`ResolvingEndpoint`, which first asks the cluster
nodes who owns the slot. A SIGTERM at that moment stops the services, which
cancel the connection attempt. The resolver treats the cancelled question like
an unreachable node and asks the next one; if the endpoint then went on and
connected, the connection outlived the stop: the service, already stopped,
forgot it, and when the reactor closed it at shutdown txredisapi's slot called
``stopService()`` from inside the service's own state transition (automat:
"attempting to reentrantly run _Client.stop"). A cancelled attempt must end at
once and never connect.

Everything here runs on a MemoryReactorClock: no sockets, no sleeps.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import log
from twisted.python.failure import Failure
from twisted.trial import unittest

from flamingo.dispatch import redis_address
from flamingo.dispatch.redis_address import Address, ResolvingEndpoint, SlotResolver
from flamingo.dispatch.store import Store

SEED: Address = ("127.0.0.1", 7000)
OTHER: Address = ("127.0.0.1", 7001)
SLOT = 1234


class FakeCluster:
    """Stands in for :func:`redis_address.ask`: every question waits until answered."""

    def __init__(self) -> None:
        self.questions: list[tuple[Address, defer.Deferred[list[object]]]] = []

    def ask(self, reactor: object, addr: Address, commands: list[bytes],
            timeout: float) -> defer.Deferred[list[object]]:
        d: defer.Deferred[list[object]] = defer.Deferred()
        self.questions.append((addr, d))
        return d

    def pending(self, addr: Address) -> list[defer.Deferred[list[object]]]:
        return [d for a, d in self.questions if a == addr and not d.called]

    def answer(self, addr: Address, owner: Address) -> int:
        """Answer every open question to ``addr``: ``owner`` serves the slot. How many there were."""
        waiting = self.pending(addr)
        for d in waiting:
            d.callback([SLOT, [[0, 16383, [owner[0].encode(), owner[1]]]]])
        return len(waiting)


class StopWhileResolving(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = FakeCluster()
        self.patch(redis_address, "ask", self.cluster.ask)
        self.reactor = MemoryReactorClock()
        self.resolver = SlotResolver(self.reactor, SEED, "{ns}", 1.0)
        self.resolver.nodes.append(OTHER)  # learnt from an earlier CLUSTER SLOTS
        self.endpoint = ResolvingEndpoint(self.reactor, self.resolver.resolve, 1.0)

    def test_cancelled_connect_fails_at_once_and_never_connects(self) -> None:
        attempt = self.endpoint.connect(object())  # type: ignore[arg-type]
        self.assertEqual(len(self.cluster.pending(SEED)), 1)
        attempt.cancel()
        self.failureResultOf(attempt, defer.CancelledError)
        # the resolver, seeing its question cancelled, may go on to the next node...
        self.cluster.answer(OTHER, OTHER)
        self.cluster.answer(SEED, OTHER)
        # ...but nothing connects any more
        self.assertEqual(self.reactor.tcpClients, [])

    def test_store_stop_during_resolution_leaves_no_connection(self) -> None:
        store = Store(namespace="ns", reactor=self.reactor, endpoint=self.endpoint, where="cluster slot of {ns}",
                      prefix="{ns}", cluster=True, timeout=1.0)
        store.start()
        # the command connection and the change listener both ask the seed who owns the slot
        self.assertEqual(len(self.cluster.pending(SEED)), 2)
        stopping = store.stop()

        leaked: list[StringTransport] = []

        def shutdown(result: object) -> object:
            # what reactor.disconnectAll() does at shutdown, right after the services stopped
            for transport in reversed(leaked):
                proto = transport.protocol  # type: ignore[attr-defined]
                log.callWithLogger(proto, proto.connectionLost, Failure(ConnectionError("reactor shutdown")))
            return result
        stopping.addBoth(shutdown)

        # the resolutions under way finish (on the next node) after the stop
        self.cluster.answer(OTHER, OTHER)
        for _host, _port, factory, _timeout, _bind in self.reactor.tcpClients:
            proto = factory.buildProtocol(None)
            transport = StringTransport()
            transport.protocol = proto  # type: ignore[attr-defined]
            leaked.append(transport)
            proto.makeConnection(transport)
        self.assertEqual(self.reactor.tcpClients, [], "a connection was made after the store stopped")
        self.successResultOf(stopping)
        self.assertEqual([f.getErrorMessage() for f in self.flushLoggedErrors()], [])

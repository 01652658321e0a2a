"""The sink's connection on a Clock: ClientService's retries follow the sink's backoff, the
handshake (prepareConnection) fences only the same server, and a connection lost before the
handshake accepted it is a failed attempt (not a NoTransition in the reactor)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from flamingo.dispatch.redis_sink import RedisSink
from flamingo.dispatch.resp import RespProtocol
from flamingo.dispatch.sink_link import RedisLink
from flamingo.dispatch.transaction import SCRIPT_SHA

ADDR = IPv4Address("TCP", "127.0.0.1", 6379)


class _Journal:
    dir = "/nonexistent"
    last_seq = 0
    first_seq = 1


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Refuses while ``refuse``; else connects to a StringTransport."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.refuse = True
        self.attempts: list[float] = []
        self.connections: list[tuple[IProtocol, StringTransport]] = []

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        self.attempts.append(self.clock.seconds())
        if self.refuse:
            return defer.fail(ConnectionRefusedError())
        proto = protocolFactory.buildProtocol(ADDR)
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        return defer.succeed(proto)


def handshake_replies(run_id: bytes, client_id: int) -> bytes:
    info = b"# Server\r\nrun_id:" + run_id + b"\r\n"
    return (b"$%d\r\n%s\r\n:%d\r\n$%d\r\n%s\r\n" % (len(info), info, client_id, len(SCRIPT_SHA), SCRIPT_SHA))


class LinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        self.ready: list[tuple[RespProtocol, bytes | None]] = []
        self.failures: list[Failure] = []
        self.link = RedisLink(lambda: self.endpoint, clock=self.clock, timeout=5.0, password=None, db=0,
                              checkpoint_key=b"ns:sink:checkpoint", retry=lambda n: 0.1 * n,
                              ready=lambda p, raw: self.ready.append((p, raw)), failed=self.failures.append)
        self.link.start()

    def tearDown(self) -> None:
        self.link.stop()
        self.clock.advance(10)

    def test_refused_attempts_follow_the_retry_policy(self) -> None:
        for delay in (0.1, 0.2, 0.3):  # the policy's 0.1 * failed attempts
            self.clock.advance(delay - 0.01)
            attempts = len(self.endpoint.attempts)
            self.clock.advance(0.01)
            self.assertEqual(len(self.endpoint.attempts), attempts + 1)
        self.assertEqual([round(t, 2) for t in self.endpoint.attempts], [0.0, 0.1, 0.3, 0.6])
        self.assertEqual(len(self.failures), 4)
        self.assertTrue(self.failures[0].check(ConnectionRefusedError))

    def test_the_handshake_fences_the_same_server_only(self) -> None:
        self.endpoint.refuse = False
        self.clock.advance(0.1)
        proto, transport = self.endpoint.connections[0]
        self.assertIn(b"CLIENT\r\n$2\r\nID", transport.value())
        proto.dataReceived(handshake_replies(b"abc", 7))
        self.assertNotIn(b"KILL", transport.value())
        proto.dataReceived(b"$3\r\n5:x\r\n")
        self.assertEqual(self.ready[0][1], b"5:x")
        self.assertEqual(self.link.client_id, 7)
        proto.connectionLost(Failure(ConnectionDone()))  # accepted: ClientService reconnects
        self.link.lost()
        self.clock.advance(0.1)
        proto, transport = self.endpoint.connections[1]
        proto.dataReceived(handshake_replies(b"abc", 8))
        self.assertIn(b"KILL\r\n$2\r\nID\r\n$1\r\n7", transport.value())  # same run_id: fence
        proto.dataReceived(b"-ERR No such client\r\n$3\r\n5:x\r\n")
        self.assertEqual(len(self.ready), 2)
        self.assertEqual(self.link.client_id, 8)
        proto.connectionLost(Failure(ConnectionDone()))
        self.link.lost()
        self.clock.advance(0.1)
        proto, transport = self.endpoint.connections[2]
        proto.dataReceived(handshake_replies(b"restarted", 3))
        self.assertNotIn(b"KILL", transport.value())  # another server (restart): the old id is not ours

    def test_a_connection_lost_during_the_handshake_is_a_failed_attempt(self) -> None:
        self.endpoint.refuse = False
        self.clock.advance(0.1)
        proto, transport = self.endpoint.connections[0]
        proto.connectionLost(Failure(ConnectionDone()))  # before any reply
        self.assertEqual(self.ready, [])
        self.assertEqual(len(self.failures), 2)  # the refused first attempt, then this one
        self.clock.advance(0.2)
        self.assertEqual(len(self.endpoint.connections), 2)  # tried again after the policy's delay

    def test_a_refused_handshake_closes_the_connection_and_retries(self) -> None:
        self.link._ready = self._refuse
        self.endpoint.refuse = False
        self.clock.advance(0.1)
        proto, transport = self.endpoint.connections[0]
        proto.dataReceived(handshake_replies(b"abc", 7) + b"$7\r\ngarbage\r\n")
        self.assertTrue(self.failures[-1].check(ValueError))
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))  # the close arrives: no NoTransition
        self.assertIsNone(self.link.client_id)
        self.clock.advance(0.2)
        self.assertEqual(len(self.endpoint.connections), 2)

    @staticmethod
    def _refuse(proto: RespProtocol, raw: bytes | None) -> None:
        raise ValueError(f"not a checkpoint: {raw!r}")


class BackoffTests(SynchronousTestCase):
    def test_reconnect_delays(self) -> None:
        clock = Clock()
        sink = RedisSink(_Journal(), dict, reactor=clock, reconnect_max=2.0,  # type: ignore[arg-type]
                         endpoint=FakeEndpoint(clock))
        delays = [sink._retry_delay(n) for n in range(1, 8)]
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
        self.assertEqual(sink._attempt, 7)  # shared with the backoff of refused batches

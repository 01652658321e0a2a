"""Two batches in flight: Redis works on one while the sink cuts and sends the next.

The second batch's compare-and-set expects the checkpoint the first one writes,
so Redis applies it only after the first; a refused or lost first batch takes the
second with it, and nothing is lost or pushed twice. Against a real redis-server,
paused with SIGSTOP to hold batches in flight; ``RespProtocol.written`` over real
loopback TCP.
"""

from __future__ import annotations

from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.trial import unittest

from flamingo.dispatch.redis_sink import MAX_IN_FLIGHT
from flamingo.dispatch.resp import RespProtocol
from flamingo.domain.subscription import Subscription
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for
from tests.test_sink import Harness, lrange, tweet


class TwoInFlightTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def held(self, **kw):
        """A sink with two batches of 10 held in flight (Redis paused), 30 events sent."""
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h = Harness(self, server, subs=[Subscription.create("q")], batch_max=10, **kw)
        h.dispatcher.messages_received([tweet(0)])
        yield h.drained()
        return server, h

    def pause_and_send(self, server, h, sent):
        server.pause()
        self.addCleanup(lambda: server.process and server.resume())
        h.dispatcher.messages_received(sent)
        return wait_for(lambda: len(h.sink._flight) == MAX_IN_FLIGHT, what="two batches in flight")

    @defer.inlineCallbacks
    def test_a_subscription_added_meanwhile_gets_the_batches_cut_after_it(self):
        server, h = yield self.held(timeout=10.0)
        sent = [tweet(i) for i in range(1, 31)]
        yield self.pause_and_send(server, h, sent)
        h.subs["late"] = Subscription.create("late")
        server.resume()
        yield h.drained()
        self.assertEqual(lrange(server, h.key("q")), [tweet(0), *sent])
        self.assertEqual(lrange(server, h.key("late")), sent[20:])  # the two in flight were cut before it

    @defer.inlineCallbacks
    def test_first_batch_refused_the_second_goes_with_it_then_all_once(self):
        server, h = yield self.held(timeout=10.0)
        key = h.key("q")
        server.command("DEL", key)
        server.command("SET", key, "not a list")
        sent = [tweet(i) for i in range(1, 31)]
        yield self.pause_and_send(server, h, sent)
        server.resume()
        yield wait_for(lambda: h.sink.error, what="the refusal")
        self.assertIn("WRONGTYPE", h.sink.error)
        self.assertEqual(h.sink.queue_errors.keys(), {"q"})
        yield wait_for(lambda: not h.sink._flight, what="the flight given up")
        self.assertIn("WRONGTYPE", h.sink.error)  # the second batch's refusal did not replace it
        self.assertTrue(h.sink.connected)  # nor make the sink reconnect
        server.command("DEL", key)
        yield h.drained()
        self.assertEqual(lrange(server, key), sent)
        self.assertIsNone(h.sink.error)

    @defer.inlineCallbacks
    def test_batches_in_flight_time_out_nothing_lost_nothing_twice(self):
        server, h = yield self.held(timeout=0.5)
        sent = [tweet(i) for i in range(1, 31)]
        yield self.pause_and_send(server, h, sent)
        yield wait_for(lambda: h.sink.error is not None, what="the batches in flight timed out")
        server.resume()
        yield h.drained(timeout=30)
        self.assertEqual(lrange(server, h.key("q")), [tweet(0), *sent])


class _Slow(protocol.Protocol):
    """Reads nothing until told to."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        self.factory.connected.callback(self)


class WrittenTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_fires_once_the_bytes_left_twisteds_buffer(self):
        f = protocol.Factory.forProtocol(_Slow)
        f.connected = defer.Deferred()
        port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(f)
        self.addCleanup(port.stopListening)
        proto = yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), RespProtocol())
        self.addCleanup(proto.transport.loseConnection)
        server = yield f.connected
        self.addCleanup(server.transport.loseConnection)
        reply = proto.send([b"x" * (64 << 20)], 1)  # far more than the kernel's socket buffers hold
        reply.addErrback(lambda f: f.trap(ConnectionError))  # no reply comes: the test closes the connection
        written = proto.written()
        yield wait_for(lambda: proto.transport.dataBuffer or proto.transport._tempDataBuffer, what="buffered")
        for _ in range(20):  # reactor turns: the peer reads nothing, so the buffer cannot empty
            yield task.deferLater(reactor, 0.001, lambda: None)
            self.assertFalse(written.called)
        server.transport.resumeProducing()
        yield written
        self.assertTrue(written.called)

    def test_small_writes_and_transports_that_do_not_say_fire_at_once(self):
        proto = RespProtocol()
        self.assertTrue(proto.written().called)  # not connected: nothing waits

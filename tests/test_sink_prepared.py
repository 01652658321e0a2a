"""The sink cuts and encodes its next batch while Redis works on the one in flight.

Still one batch in flight (the checkpoint's compare-and-set is unchanged); a
prepared batch is sent only if it still follows the checkpoint and was cut for
the subscriptions of the moment. Against a real redis-server, paused with
SIGSTOP to hold a batch in flight; ``RespProtocol.written`` over real loopback TCP.
"""

from __future__ import annotations

from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.trial import unittest

from flamingo.dispatch.resp import RespProtocol
from flamingo.domain.subscription import Subscription
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for
from tests.test_sink import Harness, lrange, tweet


class PreparedBatchTests(unittest.TestCase):
    timeout = 60

    def held(self, **kw):
        """A sink with one batch held in flight (Redis paused) and the next one prepared."""
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h = Harness(self, server, subs=[Subscription.create("q")], batch_max=10, **kw)
        return server, h

    @defer.inlineCallbacks
    def test_a_subscription_added_meanwhile_gets_every_batch_after_the_one_in_flight(self):
        server, h = self.held(timeout=10.0)
        h.dispatcher.messages_received([tweet(0)])
        yield h.drained()
        server.pause()
        self.addCleanup(lambda: server.process and server.resume())
        sent = [tweet(i) for i in range(1, 31)]
        h.dispatcher.messages_received(sent)
        yield wait_for(lambda: h.sink._prepared is not None, what="the next batch prepared")
        self.assertEqual(h.sink._prepared.events, 10)
        h.subs["late"] = Subscription.create("late")  # after the prepared batch was cut
        server.resume()
        yield h.drained()
        self.assertEqual(lrange(server, h.key("q")), [tweet(0), *sent])
        self.assertEqual(lrange(server, h.key("late")), sent[10:])  # all but the batch in flight

    @defer.inlineCallbacks
    def test_batch_in_flight_times_out_nothing_lost_nothing_twice(self):
        server, h = self.held(timeout=0.5)
        h.dispatcher.messages_received([tweet(0)])
        yield h.drained()
        server.pause()
        self.addCleanup(lambda: server.process and server.resume())
        sent = [tweet(i) for i in range(1, 31)]
        h.dispatcher.messages_received(sent)
        yield wait_for(lambda: h.sink._prepared is not None, what="the next batch prepared")
        yield wait_for(lambda: h.sink.error is not None, what="the batch in flight timed out")
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

"""RespProtocol: the Redis socket offers large sends (the sink must keep pace with the reader)."""

from twisted.internet import abstract
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial import unittest

from flamingo.dispatch.resp import SEND_LIMIT, RespProtocol


class _Descriptor(abstract.FileDescriptor):
    def writeSomeData(self, data: bytes) -> int:
        return len(data)


class SendLimitTests(unittest.SynchronousTestCase):
    def test_socket_transport_sends_more_per_turn(self) -> None:
        fd = _Descriptor(reactor=MemoryReactor())
        RespProtocol().makeConnection(fd)
        self.assertEqual(fd.SEND_LIMIT, SEND_LIMIT)
        self.assertGreaterEqual(SEND_LIMIT, 4 << 20)
        self.assertEqual(abstract.FileDescriptor.SEND_LIMIT, 128 * 1024)  # the class is left alone

    def test_other_transports_untouched(self) -> None:
        proto = RespProtocol()
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertFalse(hasattr(transport, "SEND_LIMIT"))
        proto.send([b"*1\r\n", b"$4\r\nPING\r\n"], 1)
        self.assertEqual(transport.value(), b"*1\r\n$4\r\nPING\r\n")

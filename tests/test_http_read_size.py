"""The HTTP stream's socket is read in READ_BYTES pieces (Twisted's default is 64 KiB), but for gzip."""

from __future__ import annotations

from twisted.internet import abstract
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial import unittest

from flamingo.stream.framing import StreamDecoder
from flamingo.stream.http_lines import READ_BYTES, _Body


class _Descriptor(abstract.FileDescriptor):
    def writeSomeData(self, data: bytes) -> int:
        return len(data)


class _Proxy(StringTransport):
    """Twisted's TransportProxyProducer keeps the socket as ``_producer``."""

    def __init__(self, producer: object) -> None:
        super().__init__()
        self._producer = producer


class _Link:
    pump = None
    decoder: StreamDecoder | None = None


class ReadSizeTests(unittest.SynchronousTestCase):
    def test_socket_behind_the_proxy_reads_more(self) -> None:
        sock = _Descriptor(reactor=MemoryReactor())
        _Body(_Link()).makeConnection(_Proxy(sock))  # type: ignore[arg-type]
        self.assertEqual(sock.bufferSize, READ_BYTES)
        self.assertGreater(READ_BYTES, abstract.FileDescriptor.bufferSize)
        self.assertEqual(abstract.FileDescriptor.bufferSize, 64 * 1024)  # the class is left alone

    def test_gzip_body_keeps_twisted_reads(self) -> None:
        sock = _Descriptor(reactor=MemoryReactor())
        link = _Link()
        link.decoder = StreamDecoder(gzip=True)
        _Body(link).makeConnection(_Proxy(sock))  # type: ignore[arg-type]
        self.assertEqual(sock.bufferSize, 64 * 1024)

    def test_other_transports_are_left_alone(self) -> None:
        transport = _Proxy(object())
        _Body(_Link()).makeConnection(transport)  # type: ignore[arg-type]
        self.assertFalse(hasattr(transport, "bufferSize"))

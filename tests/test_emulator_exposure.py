"""The emulator's exposure limits: loopback unless credentials, request timeout, connection cap.

Real sockets on 127.0.0.1; the request timeout runs on a ``task.Clock``, so
nothing waits for wall time.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator import Emulator, EmulatorOptions
from flamingo.emulator.server import ExposureError, is_loopback
from tests.support.emulator import RawClient, start_emulator
from tests.support.waiting import until


class LoopbackTests(SynchronousTestCase):
    def test_loopback_names(self):
        for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
            self.assertTrue(is_loopback(host), host)
        for host in ("0.0.0.0", "::", "192.0.2.1", "example.com", ""):
            self.assertFalse(is_loopback(host), host)

    def test_refuses_beyond_loopback_without_a_secret(self):
        for options in (EmulatorOptions(), EmulatorOptions(user="u"),
                        EmulatorOptions(oauth_consumer_key="k")):
            memory = MemoryReactorClock()
            emu = Emulator(options, reactor=memory)
            with self.assertRaises(ExposureError) as e:
                emu.start("0.0.0.0", 8080)
            self.assertIn("credentials", str(e.exception))
            self.assertEqual(memory.tcpServers, [])  # nothing listened

    def test_listens_beyond_loopback_with_a_secret(self):
        for options in (EmulatorOptions(user="u", password="p"), EmulatorOptions(bearer_token="t"),
                        EmulatorOptions(oauth_consumer_key="k", oauth_consumer_secret="s")):
            memory = MemoryReactorClock()
            Emulator(options, reactor=memory).start("0.0.0.0", 8080)
            self.assertEqual(memory.tcpServers[0][3], "0.0.0.0")

    def test_loopback_needs_no_credentials(self):
        memory = MemoryReactorClock()
        Emulator(EmulatorOptions(), reactor=memory).start("::1", 8080)
        self.assertEqual(memory.tcpServers[0][3], "::1")

    def test_cli_says_so_in_one_line_and_exits_non_zero(self):
        # 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing can listen there
        # even by mistake; the refusal must come first, with its own message
        proc = subprocess.run([sys.executable, "-m", "flamingo.emulator", "--host", "192.0.2.1",
                               "--port", "0"], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 2)
        self.assertEqual(proc.stdout, "")
        lines = proc.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertIn("without credentials", lines[0])
        self.assertIn("--user/--password", lines[0])

    def test_options_are_validated(self):
        with self.assertRaises(ValueError):
            EmulatorOptions(header_timeout=0)
        with self.assertRaises(ValueError):
            EmulatorOptions(max_connections=0)


@defer.inlineCallbacks
def connect(testcase: TestCase, port: int) -> RawClient:
    client = RawClient()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    testcase.addCleanup(client.close)
    return client


class RequestTimeoutTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.clock = Clock()
        self.emu = start_emulator(self, clock=self.clock, header_timeout=10, rate=1)

    @defer.inlineCallbacks
    def check_dropped(self, data: bytes) -> defer.Deferred:
        client = yield connect(self, self.emu.port)
        yield until(lambda: len(self.emu.connections) == 1)
        if data:
            client.transport.write(data)
            yield until(lambda: self.emu.connections[0].bytes_received == len(data))
        self.clock.advance(9.9)
        self.assertEqual(self.emu.counters["request_timeouts"], 0)
        self.assertFalse(client.lost)
        self.clock.advance(0.1)
        yield client.closed
        self.assertEqual(client.status, 408)
        self.assertEqual(self.emu.counters["request_timeouts"], 1)
        self.assertEqual(self.emu.journal[-1].outcome, "request timeout")
        yield until(lambda: not self.emu.connections)

    def test_silent_client_is_dropped(self):
        return self.check_dropped(b"")

    def test_partial_header_is_dropped(self):
        return self.check_dropped(b"GET /1.1/statuses/sample.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow")

    def test_partial_body_is_dropped(self):
        return self.check_dropped(b"POST /1.1/statuses/filter.json HTTP/1.1\r\nContent-Length: 20\r\n\r\ntrack=")

    @defer.inlineCallbacks
    def test_a_complete_request_is_not_timed_out(self):
        client = yield connect(self, self.emu.port)
        client.transport.write(b"GET /1.1/statuses/sample.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        yield client.wait_for(lambda: client.status is not None)
        self.assertEqual(client.status, 200)
        self.clock.advance(60)
        self.assertEqual(self.emu.counters["request_timeouts"], 0)
        self.assertFalse(client.lost)


class ConnectionCapTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_one_over_the_cap_gets_503_and_is_counted(self):
        emu = start_emulator(self, clock=Clock(), max_connections=2, rate=1)
        first = yield connect(self, emu.port)
        yield connect(self, emu.port)
        yield until(lambda: len(emu.connections) == 2)
        third = yield connect(self, emu.port)
        yield third.closed
        self.assertEqual(third.status, 503)
        self.assertIn(b"Too many connections", third.raw)
        self.assertEqual(emu.counters["over_capacity"], 1)
        self.assertEqual(emu.journal[-1].outcome, "http 503")
        yield first.close()
        yield until(lambda: len(emu.connections) == 1)
        fourth = yield connect(self, emu.port)
        fourth.transport.write(b"GET /1.1/statuses/sample.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        yield fourth.wait_for(lambda: fourth.status is not None)
        self.assertEqual(fourth.status, 200)
        self.assertEqual(emu.counters["over_capacity"], 1)

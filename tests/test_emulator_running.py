"""emulator/running.py: closing a listening port is always a Deferred."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from flamingo.emulator.running import stop_listening


class _Port:
    def __init__(self, result: object) -> None:
        self.result = result

    def stopListening(self) -> object:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class StopListeningTest(TestCase):
    def test_a_port_that_returns_nothing(self) -> None:
        self.assertIsNone(self.successResultOf(stop_listening(_Port(None))))

    def test_a_port_that_returns_a_deferred(self) -> None:
        d: defer.Deferred[None] = defer.Deferred()
        stopped = stop_listening(_Port(d))
        self.assertNoResult(stopped)
        d.callback(None)
        self.assertIsNone(self.successResultOf(stopped))

    def test_a_port_that_raises(self) -> None:
        self.failureResultOf(stop_listening(_Port(OSError("closed"))), OSError)

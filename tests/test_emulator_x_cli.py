"""``flamingo emulator --source x`` as a user runs it: a real process, rules added and posts streamed over HTTP."""

from __future__ import annotations

import os
import re
import types
from typing import Any

from twisted.internet import defer, error, protocol, reactor
from twisted.trial.unittest import TestCase

from tests.support.processes import FLAMINGO
from tests.support.waiting import wait_for
from tests.support.xemu import FILTER, posts, rules_get, rules_post, stream


class _Proc(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if isinstance(reason.value, error.ProcessTerminated) else 0
        self.ended.callback(code)


class CliProcessTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_emulator_process_serves_rules_and_the_filter_stream(self) -> Any:
        proc = _Proc()
        args = [FLAMINGO, "emulator", "--source", "x", "--port", "0", "--bearer-token", "cli-token",
                "--rate", "200", "--keepalive", "1"]
        transport = reactor.spawnProcess(proc, FLAMINGO, args, env=dict(os.environ))

        def stop() -> defer.Deferred[int]:
            if not proc.ended.called:
                transport.signalProcess("TERM")
            return proc.ended

        self.addCleanup(lambda: stop() if not proc.ended.called else None)
        found = yield wait_for(lambda: re.search(rb"listening on http://127\.0\.0\.1:(\d+)", proc.out),
                               what="the emulator's banner")
        emu = types.SimpleNamespace(port=int(found.group(1)))
        self.assertIn(b"X API v2", proc.out)
        denied = yield rules_get(emu, token="wrong")
        self.assertEqual(denied.status, 401)
        added = yield rules_post(emu, {"add": [{"value": "love OR #python", "tag": "mix"}]}, token="cli-token")
        self.assertEqual(added.status, 201)
        client = yield stream(self, emu, FILTER, token="cli-token")
        yield client.wait_for(lambda: len(posts(client)) >= 10)
        for line in posts(client)[:10]:
            self.assertEqual(line["matching_rules"][0]["tag"], "mix")
        yield client.close()
        code = yield stop()
        self.assertEqual(code, 0, proc.err.decode(errors="replace"))
        self.assertNotIn(b"cli-token", proc.out + proc.err)

    @defer.inlineCallbacks
    def test_a_bad_flag_is_one_line(self) -> Any:
        proc = _Proc()
        reactor.spawnProcess(proc, FLAMINGO, [FLAMINGO, "emulator", "--source", "x", "--tier", "gold"],
                             env=dict(os.environ))
        code = yield proc.ended
        self.assertEqual(code, 2)
        self.assertIn(b"--tier", proc.err)

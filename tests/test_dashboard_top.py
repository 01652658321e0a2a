"""``flamingo top`` through a real pseudo-terminal (``spawnProcess(usePTY=True)``)
against the REST API in this reactor (real Store on the test redis-server,
real Stats), ``flamingo status --watch`` as a plain subprocess, and the pure
parts (sparkline, the screen for a snapshot)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from flamingo.cli.top import BLOCKS, sparkline, view
from flamingo.config import from_mapping
from flamingo.domain.subscription import Subscription
from flamingo.web.server import make_site
from tests.support.parts import SECRET_TOKEN, make_app, make_store
from tests.support.waiting import until

FLAMINGO = str(Path(sys.executable).with_name("flamingo"))
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


class Sparkline(unittest.SynchronousTestCase):
    @given(st.lists(st.integers(min_value=0, max_value=10**6), max_size=400),
           st.integers(min_value=0, max_value=200))
    def test_shape(self, values: list[int], width: int) -> None:
        line = sparkline(values, width)
        self.assertEqual(len(line), min(len(values), width))
        tail = values[-width:] if width else []
        for v, ch in zip(tail, line):
            self.assertEqual(ch == " ", v == 0)
        if any(tail):  # the largest value is the full block, and order is kept
            self.assertEqual(line[tail.index(max(tail))], BLOCKS[-1])
            rank = {c: i for i, c in enumerate(" " + BLOCKS)}
            pairs = sorted(zip(tail, line))
            self.assertEqual([rank[c] for _, c in pairs], sorted(rank[c] for _, c in pairs))

    def test_screen_for_a_snapshot(self) -> None:
        doc = {"wader": {"name": "waiting", "cause": "http", "message": "420 Enhance Your Calm"},
               "stream": {"name": "filter"}, "redis": {"available": False},
               "rates": {"10s": {"events_per_sec": 12.25}}, "events": {"total": 4242},
               "history": [{"t": i, "events": i % 5} for i in range(300)], "backlog": 17,
               "sink": {"error": "redis down"}, "journal": {"segments": 2},
               "subscriptions": [{"name": "jobs", "queue": "resque:queue:jobs", "length": 9,
                                  "trimmed": 1, "format": "resque", "types": ["tweet"]}]}
        console = Console(width=100, record=True, file=open(os.devnull, "w"))
        console.print(view(doc, 100))
        text = console.export_text()
        for want in ("waiting", "UNREACHABLE", "420 Enhance Your Calm", "4242", "12.2", "17",
                     "sink error: redis down", "resque:queue:jobs", "tweet", "q quits"):
            self.assertIn(want, text)
        self.assertTrue(max(len(line) for line in text.splitlines()) <= 100)


class Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.data = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.data += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))

    def text(self) -> str:
        return ANSI.sub(b"", self.data).decode("utf-8", "replace")


class Live(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        d = Path(tempfile.mkdtemp(prefix="flamingo-top-"))
        self.addCleanup(shutil.rmtree, d, True)
        self.store = yield make_store(self)
        port = reactor.listenTCP(0, make_site(make_app(from_mapping(
            {"username": "u", "password": "p", "web": {"token": SECRET_TOKEN}}, environ={}),
            self.store)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.config_file = d / "flamingo.yml"
        self.config_file.write_text(yaml.safe_dump(
            {"username": "u", "password": "p",
             "web": {"host": f"127.0.0.1:{port.getHost().port}", "token": SECRET_TOKEN}}))
        yield self.store.save_subscription(Subscription.create("q1", format="envelope"))
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": str(d),
                    "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40", "LANG": "C.UTF-8"}

    def spawn(self, *args: str, pty: bool) -> tuple[Collect, Any]:
        p = Collect()
        transport = reactor.spawnProcess(p, FLAMINGO, [FLAMINGO, "-c", str(self.config_file), *args],
                                         env=self.env, usePTY=pty)
        self.addCleanup(lambda: p.ended.called or transport.signalProcess("KILL"))
        return p, transport

    @defer.inlineCallbacks
    def test_top_in_a_pty_refreshes_and_q_quits(self) -> Any:
        p, transport = self.spawn("top", pty=True)
        queue = f"{self.store.namespace}:queue:q1"  # the namespace is unique to this test
        yield until(lambda: queue in p.text() and "connected" in p.text(), 30)
        self.assertIn("43", p.text())  # events total from the daemon's Stats
        self.assertIn("12", p.text())  # q1's queue length
        # A change shows up by itself, with no key pressed: the view refreshes.
        yield self.store.save_subscription(Subscription.create("later"))
        yield until(lambda: ":queue:later" in p.text(), 30)
        self.assertFalse(p.ended.called)
        transport.write(b"q")
        yield until(lambda: p.ended.called, 30)
        code = yield p.ended
        self.assertEqual(code, 0)
        self.assertNotIn("Traceback", p.text())
        self.assertNotIn(SECRET_TOKEN, p.text())

    @defer.inlineCallbacks
    def test_status_watch_refreshes_until_interrupted(self) -> Any:
        p, transport = self.spawn("status", "--watch", "--interval", "0.2", pty=False)
        yield until(lambda: p.text().count("every 0.2s") >= 2, 30)
        self.assertIn("connected", p.text())
        transport.signalProcess("INT")
        code = yield p.ended
        self.assertEqual(code, 0)
        self.assertNotIn("Traceback", p.text())

    @defer.inlineCallbacks
    def test_top_refused_without_token(self) -> Any:
        self.config_file.write_text(self.config_file.read_text().replace(SECRET_TOKEN, "wrong"))
        p, _ = self.spawn("top", pty=True)
        code = yield p.ended
        self.assertEqual(code, 1)
        self.assertIn("401", p.text())

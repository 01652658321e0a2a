"""The Jetstream emulator as a client sees it (the WebSocket link over loopback),
its command line, and ``make run SOURCE=jetstream``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.emulator.jet_corpus import Corpus
from flamingo.emulator.jet_faults import JetFault
from flamingo.emulator.jet_timeline import Wants
from flamingo.sources.jetstream_events import head
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.source import Fatal, Retry
from flamingo.stream.websocket import WebSocketLink
from tests.support.jetstream import start_jetstream
from tests.support.processes import FLAMINGO
from tests.support.waiting import until
from tests.test_websocket import Recorder, Stats

ROOT = Path(__file__).resolve().parent.parent


class EmulatorTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.emu_clock = task.Clock()
        self.emu_clock.advance(1_700_000_000)
        self.emu = start_jetstream(self, clock=self.emu_clock, seed=3, retain=500)

    def connect(self, query: str, headers: dict[str, str] | None = None) -> tuple[WebSocketLink, Recorder]:
        events = Recorder()
        url = f"{self.emu.url}/subscribe{query}"
        link = WebSocketLink(StreamRequest("GET", url, None, (), "/subscribe"), headers or {},
                             lambda p, b: p, events, reactor=reactor, clock=task.Clock(), turns=reactor,
                             stats=Stats(), connect_timeout=10, ping_interval=15,
                             max_message_bytes=1 << 20, user_agent="test")
        self.addCleanup(link.close)
        return link, events

    def produce(self, n: int) -> None:
        for _ in range(n):
            self.emu_clock.advance(0.001)
            self.emu.make(1)

    @defer.inlineCallbacks
    def test_cursor_replays_then_goes_live(self) -> Any:
        self.produce(100)
        cursor = self.emu.timeline.times[40]
        link, events = self.connect(f"?cursor={cursor}")
        yield until(lambda: len(events.frames) == 60)
        self.produce(5)
        yield until(lambda: len(events.frames) == 65)
        self.assertEqual(events.frames, self.emu.timeline.raws[40:105])
        times = [head(f).time_us for f in events.frames]  # type: ignore[union-attr]
        self.assertEqual(times, sorted(times))
        self.assertEqual(len(set(times)), len(times))  # strictly increasing time_us

    @defer.inlineCallbacks
    def test_old_cursor_starts_at_the_oldest_kept_and_no_cursor_is_live(self) -> Any:
        self.produce(600)  # 500 kept
        _, replay = self.connect("?cursor=1")
        _, live = self.connect("")
        yield until(lambda: len(replay.frames) == 500 and ("responded", None) in live.log)
        self.assertEqual(replay.frames[0], self.emu.timeline.raws[0])
        self.assertEqual(self.emu.timeline.base, 100)
        self.produce(3)
        yield until(lambda: len(live.frames) == 3)

    @defer.inlineCallbacks
    def test_filters_as_v1(self) -> Any:
        dids = self.emu.timeline.corpus.dids[:50]
        _, posts = self.connect("?wantedCollections=app.bsky.feed.post")
        _, graph = self.connect("?wantedCollections=app.bsky.graph.*")
        _, one = self.connect("?" + "&".join(f"wantedDids={d}" for d in dids))
        yield until(lambda: len(self.emu.open) == 3)
        self.produce(3000)
        expected = [self.emu.timeline.matching(Wants.of(c, d)) for c, d in
                    ((["app.bsky.feed.post"], []), (["app.bsky.graph.*"], []), ([], dids))]
        yield until(lambda: [len(posts.frames), len(graph.frames), len(one.frames)] == list(map(len, expected)))
        kinds = {orjson.loads(f)["kind"] for f in posts.frames}
        self.assertEqual(kinds, {"commit", "identity", "account"})  # identity/account pass collections
        self.assertTrue(one.frames)
        self.assertLessEqual({orjson.loads(f)["did"] for f in one.frames}, set(dids))
        self.assertTrue(all(b'"collection":"app.bsky.graph.' in f for f in graph.frames
                            if b'"kind":"commit"' in f))

    @defer.inlineCallbacks
    def test_compression_by_query_or_header(self) -> Any:
        _, by_query = self.connect("?compress=true")
        _, by_header = self.connect("", {"Socket-Encoding": "zstd"})
        yield until(lambda: len(self.emu.open) == 2)
        self.produce(10)
        yield until(lambda: len(by_query.frames) == 10 and len(by_header.frames) == 10)
        self.assertEqual(by_query.frames, by_header.frames)
        self.assertEqual(by_query.frames[0], self.emu.timeline.compressed(0))
        self.assertTrue(all(c.compress for c in self.emu.connections))

    @defer.inlineCallbacks
    def test_bad_params_are_refused_with_400(self) -> Any:
        _, events = self.connect("?wantedDids=did:key:zzz")
        yield until(lambda: events.names() == ["refused"])
        verdict = events.last()
        self.assertEqual(verdict.cause, "http")
        self.assertIn("HTTP 400", verdict.message)
        self.assertIn("wantedDids", verdict.message)

    @defer.inlineCallbacks
    def test_options_update_and_bad_options(self) -> Any:
        link, events = self.connect("?wantedCollections=app.bsky.feed.post")
        yield until(lambda: ("responded", None) in events.log)
        link.send(orjson.dumps({"type": "options_update", "payload": {"wantedDids": ["did:web:x.example"]}}))
        yield until(lambda: self.emu.connections[0].options_updates)
        link.send(b'{"type":"options_update","payload":{"wantedCollections":["no"]}}')
        yield until(lambda: "ended" in events.names())
        self.assertEqual(events.last().cause, "close 1008")
        self.assertIsInstance(events.last(), Fatal)

    @defer.inlineCallbacks
    def test_refuse_for_seconds_while_events_are_made(self) -> Any:
        self.emu.faults.add(JetFault("refuse", seconds=30, code=503))
        _, first = self.connect("")
        yield until(lambda: first.names() == ["refused"])
        self.produce(10)
        self.emu_clock.advance(30)
        _, second = self.connect("?cursor=1")
        yield until(lambda: len(second.frames) == 10)
        self.assertEqual(self.emu.connections[0].refused, 503)

    def test_fault_specs(self) -> None:
        self.assertEqual(JetFault.parse("drop:after=100"), JetFault("drop", after=100))
        self.assertEqual(JetFault.parse("close:after=5,code=1001,times=2"),
                         JetFault("close", after=5, code=1001, times=2))
        for bad in ("nope", "drop:after", "drop:when=3", "stall:seconds=x"):
            with self.assertRaises(ValueError):
                JetFault.parse(bad)

    def test_corpus_shape_and_sizes(self) -> None:
        c = Corpus(5)
        events = [c.event(1_700_000_000_000_000 + i) for i in range(3000)]
        heads = [head(e) for e in events]
        self.assertTrue(all(h is not None for h in heads))
        types = {h.type for h in heads if h is not None}
        self.assertLessEqual({"app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow",
                              "app.bsky.feed.repost", "identity", "account"}, types)
        posts = [e for e, h in zip(events, heads) if h and h.type == "app.bsky.feed.post"]
        mean = sum(map(len, posts)) / len(posts)
        self.assertTrue(500 <= mean <= 1100, mean)
        self.assertTrue(any(b"facet#tag" in p for p in posts))
        self.assertTrue(any(b'"reply"' in p for p in posts))
        self.assertEqual(Corpus(5).event(1), Corpus(5).event(1))  # a seed makes the same stream


class _Lines(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class CommandLineTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_flamingo_emulator_source_jetstream(self) -> Any:
        p = _Lines()
        proc = reactor.spawnProcess(p, FLAMINGO, [FLAMINGO, "emulator", "--source", "jetstream", "--port", "0",
                                                  "--rate", "200", "--fault", "close:after=50,code=1001"],
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.addCleanup(lambda: p.ended if proc.pid is None else (proc.signalProcess("TERM"), p.ended)[1])
        yield until(lambda: b"listening on" in p.out)
        url = re.search(rb"ws://127\.0\.0\.1:\d+", p.out).group().decode()  # type: ignore[union-attr]
        events = Recorder()
        link = WebSocketLink(StreamRequest("GET", url + "/subscribe?wantedCollections=app.bsky.feed.like",
                                           None, (), "/subscribe"), {}, lambda b, _: b, events,
                             reactor=reactor, clock=task.Clock(), turns=reactor, stats=Stats(),
                             connect_timeout=10, ping_interval=15, max_message_bytes=1 << 20, user_agent="t")
        self.addCleanup(link.close)
        yield until(lambda: "ended" in events.names())
        self.assertEqual(events.last(), Retry("dropped", "close 1001: emulator: scripted close"))
        self.assertEqual(len(events.frames), 50)

    def test_bad_fault_is_one_line_and_status_2(self) -> None:
        r = subprocess.run([FLAMINGO, "emulator", "--source", "jetstream", "--fault", "explode"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("explode", r.stderr)

    def test_make_run_source_jetstream(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="flamingo-demo-jet-"))
        r = subprocess.run([sys.executable, "-m", "flamingo.demo", "--source", "jetstream", "--seconds", "6",
                            "--rate", "20", "--dir", str(d / "demo")],
                           capture_output=True, text=True, timeout=90, env={**os.environ, "CI": "true"}, cwd=ROOT)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        self.assertIn("Listening on stream: /subscribe?wantedCollections=app.bsky.feed.post", r.stdout)
        self.assertIn("app.bsky.feed.post", r.stdout)
        self.assertIn("flamingod stopped (exit status 0)", r.stdout)

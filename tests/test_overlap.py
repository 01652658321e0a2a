"""Predicate change with overlap against the emulator's shared timeline.

Old predicates ``track=austin``, new ``track=austin,python``: while both
connections are open the emulator sends the tweets matching ``austin`` on
both (same ids, same bytes, as the real service did). Every message the
emulator sent on either connection must be handed on exactly once, and the
repeats the wader dropped must be counted as duplicates.

The replacement's ``200`` is held back (as a slow network would) until the
wader has read what the old connection sent during the overlap, so the
overlap is real and its size is known exactly.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.config import from_mapping
from flamingo.stream.wader import Wader
from tests.support.emulator import start_emulator
from tests.support.fakes import MemoryStore
from tests.test_wader import RecordingSink, RecordingStats, until

OLD = {"track": ["austin"]}
NEW = {"track": ["austin", "python"]}


class OverlapTests(TestCase):
    timeout = 30

    def step(self, seconds: float) -> None:
        for _ in range(int(round(seconds / 0.05))):
            self.clock.advance(0.05)

    @defer.inlineCallbacks
    def run_switch(self, seed: int) -> Any:
        self.clock = clock = task.Clock()
        emu = start_emulator(self, clock=clock, seed=seed, rate=100, size="small", record=True,
                             keepalive=0, user="flamingo", password="pw",
                             one_connection_per_account=False)
        config = from_mapping({"username": "flamingo", "password": "pw", "stream": "filter",
                               "api": {"url": emu.url},
                               "wader": {"min_interval": 0, "debounce": 5, "overlap_timeout": 30}},
                              environ={})
        store, sink, stats = MemoryStore({"filter": OLD}), RecordingSink(), RecordingStats()
        w = Wader(config, reactor, store, sink, stats, clock=clock)
        self.addCleanup(lambda: w.stopService() if w.running else None)

        read: dict[int, int] = {}  # frames the wader read, per connection (before dedupe)
        conns: list[Any] = []
        messages = w.messages

        def spy(conn: Any, frames: list[bytes]) -> None:
            if conn not in conns:
                conns.append(conn)
            read[conns.index(conn)] = read.get(conns.index(conn), 0) + len(frames)
            messages(conn, frames)

        w.messages = spy  # type: ignore[method-assign]
        held: list[tuple[Any, defer.Deferred]] = []
        agent = w.source.agent
        requests: list[bytes] = []

        class HoldingAgent:
            """The real agent; the replacement's response is held until released."""

            def request(self, method: bytes, uri: bytes, headers: Any = None,
                        body: Any = None) -> defer.Deferred:
                d = agent.request(method, uri, headers, body)
                requests.append(uri)
                if len(requests) == 1:
                    return d
                release: defer.Deferred = defer.Deferred()
                d.addCallback(lambda r: held.append((r, release)))
                return release

        w.source.agent = HoldingAgent()  # type: ignore[assignment]

        w.startService()
        clock.advance(0)
        yield until(lambda: w.state.name == "connected" and len(emu.sessions) == 1)
        self.step(1.0)
        yield until(lambda: len(sink.frames) == len(emu.sent_messages[0]))
        store.set_params("filter", NEW)
        clock.advance(5)  # the debounce: the replacement connects
        yield until(lambda: bool(held))
        self.assertEqual(len(emu.sessions), 2)
        before = len(emu.sent_messages[0])
        yield until(lambda: read.get(0, 0) == before)
        self.step(1.0)  # the overlap: both connections stream the same timeline
        yield until(lambda: read.get(0, 0) == len(emu.sent_messages[0]))
        r, release = held.pop()
        release.callback(r)
        yield until(lambda: w.candidate is None and w.active is not None
                    and w.active is not conns[0] and w.state.name == "connected")
        self.step(1.0)
        yield until(lambda: read.get(1, 0) == len(emu.sent_messages[1]))
        yield w.stopService()

        old, new = emu.sent_messages
        # what the wader read on the old connection before dropping it (the
        # emulator may have sent a little more there before it saw the close)
        old_read = old[: read[0]]
        return old, old_read, new, before, sink.frames, stats

    @defer.inlineCallbacks
    def check_switch(self, seed: int) -> Any:
        old, old_read, new, before, handed, stats = yield self.run_switch(seed=seed)
        overlap = [f for f in old_read[before:] if f in set(new)]
        self.assertGreater(len(overlap), 20)  # a real overlap, shared by id and bytes
        self.assertEqual(overlap, old_read[before:])  # all of it: austin is in both predicates
        # the old stream's messages, then the new one's minus the repeats of the
        # overlap: nothing lost, nothing handed on twice
        window = set(old_read[before:])
        self.assertEqual(handed, old_read + [f for f in new if f not in window])
        self.assertEqual(set(handed), set(old) | set(new))
        ids = [m["id"] for m in map(orjson.loads, handed) if "user" in m]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(stats.counters.get("duplicates", 0), len(overlap))
        # the same messages, in the same order, on both connections
        self.assertEqual([f for f in new if f in window], overlap)
        self.assertTrue(any(b"python" in f.lower() and f not in window for f in new))

    def test_switch_statuses_and_deletes(self) -> Any:
        return self.check_switch(5)

    def test_switch_with_status_withheld_in_the_overlap(self) -> Any:
        return self.check_switch(1)  # id-less events repeat too: dropped by their bytes

    def test_switch_with_scrub_geo_in_the_overlap(self) -> Any:
        return self.check_switch(6)

    def test_switch_with_user_withheld_in_the_overlap(self) -> Any:
        return self.check_switch(8)

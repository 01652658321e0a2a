"""The wader with the Mastodon source against the Mastodon emulator, over real loopback sockets.

The emulator's ``made`` record is the truth: for every subscribed stream the
queue must hold each status made on it exactly once (missing 0, duplicates
0), through drops, refusal windows and stalls. The wader and the emulator
share one ``task.Clock``: backoff, refusal windows and stalls are advanced by
hand, never slept through.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from flamingo.config import from_mapping
from flamingo.sources.mastodon import MastodonLink, MastodonSource
from flamingo.stream.wader import Wader
from tests.support.fakes import MemoryStore
from tests.support.masto import start_masto
from tests.support.waiting import until
from tests.test_wader import RecordingSink, RecordingStats

TAGS = ["fediverse", "python"]


def events(frames: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(f) for f in frames]


class MastodonWaderBase(TestCase):
    timeout = 60

    def make(self, stream: str = "hashtag", params: dict[str, list[str]] | None = None,
             token: str = "tok", journal: Any = None, **mastodon: Any) -> Wader:
        self.clock = task.Clock()
        self.emu = start_masto(self, clock=self.clock, access_token="tok", mention_share=0, direct_share=0)
        self.config = from_mapping({
            "source": "mastodon", "stream": stream, "api": {"url": self.emu.url}, "bearer_token": token,
            "mastodon": mastodon, "wader": {"min_interval": 0}}, environ={})
        self.store = MemoryStore({stream: params if params is not None else {"tag": list(TAGS)}})
        self.sink = RecordingSink()
        self.stats = RecordingStats()
        w = Wader(self.config, reactor, self.store, self.sink, self.stats, clock=self.clock, journal=journal)
        self.addCleanup(lambda: w.stopService() if w.running else None)
        self.addCleanup(lambda: w.source.close_idle())
        self.wader = w
        return w

    @property
    def source(self) -> MastodonSource:
        src = self.wader.source
        assert isinstance(src, MastodonSource)
        return src

    def subscribed(self, n: int) -> defer.Deferred[None]:
        """Connected, and the emulator holds ``n`` subscribe messages in all."""
        return until(lambda: self.wader.state.name == "connected" and len(
            [m for m in self.emu.client_messages if m["type"] == "subscribe"]) >= n
            and any(s.keys for s in self.emu.subscribers()))

    @defer.inlineCallbacks
    def reconnected(self) -> Any:
        """The drop seen; the first retry (at once, on the shared clock) started."""
        yield until(lambda: self.wader.state.name == "retrying")
        self.clock.advance(0)

    def updates_by_stream(self) -> dict[tuple[str, ...], list[str]]:
        out: dict[tuple[str, ...], list[str]] = {}
        for e in events(self.sink.frames):
            if e["event"] == "update":
                out.setdefault(tuple(e["stream"]), []).append(e["payload"]["id"])
        return out

    def assert_exactly_once(self, keys: list[tuple[str, ...]]) -> None:
        got = self.updates_by_stream()
        for key in keys:
            want = self.emu.timeline.expected(key)
            have = got.get(key, [])
            dupes = [i for i, n in Counter(have).items() if n > 1]
            missing = sorted(set(want) - set(have))
            self.assertEqual((len(missing), len(dupes)), (0, 0), f"{key}: missing {missing[:5]} dupes {dupes[:5]}")
            self.assertEqual(sorted(have, key=lambda i: (len(i), i)), sorted(want, key=lambda i: (len(i), i)))

    def expected_count(self, keys: list[tuple[str, ...]]) -> int:
        return sum(len(self.emu.timeline.expected(k)) for k in keys)


KEYS = [("hashtag", t) for t in TAGS]


class LiveTests(MastodonWaderBase):
    @defer.inlineCallbacks
    def test_discovery_subscribe_and_the_queue_shape(self) -> None:
        w = self.make()
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(2)
        self.assertEqual(self.source.streaming, self.emu.streaming_url)
        self.assertEqual(self.emu.counters["websocket_connections"], 1)
        self.assertEqual(sorted((m["stream"], m["tag"]) for m in self.emu.client_messages),
                         [("hashtag", "fediverse"), ("hashtag", "python")])
        self.emu.timeline.make(100)
        n = self.expected_count(KEYS)
        yield until(lambda: len(self.sink.frames) == n)
        first = events(self.sink.frames)[0]
        self.assertEqual(list(first), ["event", "stream", "payload"])
        self.assertEqual(first["event"], "update")
        self.assertIsInstance(first["payload"], dict)
        self.assert_exactly_once(KEYS)
        self.assertEqual(w.state.request_line, "/api/v1/streaming?stream=hashtag&tag=fediverse,python")

    @defer.inlineCallbacks
    def test_discovery_from_v1_instance_on_older_servers(self) -> None:
        w = self.make()
        self.emu.instance_v2 = False
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(2)
        self.assertEqual(self.source.streaming, self.emu.streaming_url)

    @defer.inlineCallbacks
    def test_subscribe_and_unsubscribe_without_reconnecting(self) -> None:
        w = self.make()
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(2)
        yield self.store.set_params("hashtag", {"tag": ["python", "rust"]})
        self.clock.advance(10)  # the wader's debounce
        yield until(lambda: len(self.emu.client_messages) == 4)
        self.assertEqual([(m["type"], m["tag"]) for m in self.emu.client_messages[2:]],
                         [("unsubscribe", "fediverse"), ("subscribe", "rust")])
        self.assertEqual(self.emu.counters["websocket_connections"], 1)
        self.assertEqual(self.stats.attempts, ["initial"])
        assert w.active is not None
        self.assertEqual(w.active.request_line, "/api/v1/streaming?stream=hashtag&tag=python,rust")
        made = self.emu.timeline.make(100)
        want = sum(1 for m in made for k in (("hashtag", "python"), ("hashtag", "rust")) if k in m.keys)
        yield until(lambda: len(self.sink.frames) == want)
        self.assertEqual({tuple(e["stream"]) for e in events(self.sink.frames)},
                         {("hashtag", "python"), ("hashtag", "rust")} & {k for m in made for k in m.keys})

    @defer.inlineCallbacks
    def test_a_refused_subscription_is_logged_and_the_rest_flows(self) -> None:
        from twisted.logger import globalLogPublisher

        seen: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if "error" in event:
                seen.append(str(event["error"]))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        w = self.make(stream="list", params={"list": ["999", "42"]})
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "connected" and seen)
        self.assertEqual(seen, ["Not authorized to stream this list"])
        made = self.emu.timeline.make(60)
        want = sum(1 for m in made if ("list", "42") in m.keys)
        self.assertGreater(want, 0)
        yield until(lambda: len(self.sink.frames) == want)

    @defer.inlineCallbacks
    def test_delete_events_pass_through(self) -> None:
        w = self.make(stream="public", params={})
        self.emu.timeline.options = type(self.emu.timeline.options)(rate=0, delete_share=0.3, seed=9,
                                                                     mention_share=0, direct_share=0)
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(60)
        deletes = [m.id for m in self.emu.timeline.made if m.name == "delete"]
        self.assertTrue(deletes)
        yield until(lambda: len(self.sink.frames) == len(self.emu.timeline.made))
        got = [e["payload"] for e in events(self.sink.frames) if e["event"] == "delete"]
        self.assertEqual(got, deletes)


class GapTests(MastodonWaderBase):
    @defer.inlineCallbacks
    def test_drop_and_refusal_window_filled_from_rest_nothing_twice(self) -> None:
        w = self.make(gap_max=2000)
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(2)
        self.emu.timeline.make(60)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.emu.refuse(20)  # drops the socket; statuses keep being made
        yield until(lambda: w.state.name == "retrying" and w.state.cause == "dropped")
        self.clock.advance(0)  # the first retry after a drop is at once: refused (502)
        yield until(lambda: w.state.name == "retrying" and w.state.cause == "http")
        self.assertIn("502", w.state.message)
        self.emu.timeline.make(300)  # the gap: more than one page per stream
        self.clock.advance(21)  # past the refusal window and the backoff
        yield self.subscribed(4)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.emu.timeline.make(60)  # live again
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.assert_exactly_once(KEYS)
        gap = self.source.gap
        self.assertEqual(gap.fills, 1)
        self.assertGreater(gap.statuses, 0)
        self.assertGreater(gap.pages, 2)
        self.assertEqual((gap.truncated, gap.failed), (0, 0))
        self.assertEqual(self.stats.counters.get("duplicates", 0), 0)

    @defer.inlineCallbacks
    def test_refused_websocket_upgrade_then_the_gap_filled(self) -> None:
        w = self.make()
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(2)
        self.emu.timeline.make(30)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.emu.refuse(8, health=True)  # health says OK; the upgrade gets 502
        yield self.reconnected()
        yield until(lambda: w.state.name == "retrying" and w.state.cause == "http")
        self.assertIn("HTTP 502", w.state.message)
        self.assertIn("the streaming server is down", w.state.message)
        self.emu.timeline.make(150)
        self.clock.advance(9)
        yield self.subscribed(4)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.assert_exactly_once(KEYS)
        self.assertEqual(self.emu.counters["refused"], 1)

    @defer.inlineCallbacks
    def test_gap_filled_statuses_come_in_id_order_before_live_ones(self) -> None:
        w = self.make(stream="public", params={})
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(5)
        yield until(lambda: len(self.sink.frames) == 5)
        self.emu.drop()
        self.emu.timeline.make(90)
        yield self.reconnected()
        yield until(lambda: len(self.sink.frames) == 95)
        ids = [e["payload"]["id"] for e in events(self.sink.frames)]
        self.assertEqual(ids, sorted(ids, key=lambda i: (len(i), i)))
        self.assertEqual(ids, self.emu.timeline.expected(("public",)))

    @defer.inlineCallbacks
    def test_live_events_during_the_fill_come_after_it_and_repeats_are_dropped(self) -> None:
        w = self.make(stream="public", params={})
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(5)
        yield until(lambda: len(self.sink.frames) == 5)
        self.emu.hold_timelines = defer.Deferred()  # the REST API is slow to answer
        self.emu.drop()
        self.emu.timeline.make(30)  # the gap
        yield self.reconnected()
        yield until(lambda: self.emu.counters["timelines_held"] == 1 and self.source.gap.running)
        live = self.emu.timeline.make(20)  # streamed live while the fill waits: held back
        yield until(lambda: any(s.sent == 20 for s in self.emu.subscribers()))
        self.assertEqual(len(self.sink.frames), 5)
        self.emu.hold_timelines.callback(None)  # the page now holds the gap and the 20 live ones
        yield until(lambda: len(self.sink.frames) == 55)
        ids = [e["payload"]["id"] for e in events(self.sink.frames)]
        self.assertEqual(ids, self.emu.timeline.expected(("public",)))  # in order, each once
        self.assertEqual(ids[-20:], [m.id for m in live])
        self.assertEqual(self.stats.counters["duplicates"], 20)
        self.assertEqual(self.source.gap.statuses, 50)

    @defer.inlineCallbacks
    def test_a_failing_rest_api_is_counted_and_the_stream_goes_live(self) -> None:
        w = self.make(stream="public", params={})
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(3)
        yield until(lambda: len(self.sink.frames) == 3)
        self.emu.fail_timelines = 503
        self.emu.drop()
        self.emu.timeline.make(10)  # lost: the timeline cannot be read
        yield self.reconnected()
        yield until(lambda: self.source.gap.failed == 1 and not self.source.gap.running)
        self.assertIn("HTTP 503", str(self.source.gap.last["public"]["reason"]))
        self.assertIn("Something went wrong", str(self.source.gap.last["public"]["reason"]))
        live = self.emu.timeline.make(5)
        yield until(lambda: len(self.sink.frames) == 8)
        self.assertEqual([e["payload"]["id"] for e in events(self.sink.frames)][3:], [m.id for m in live])
        self.assertEqual(w.state.name, "connected")

    @defer.inlineCallbacks
    def test_a_crawling_rest_api_cannot_hold_live_events_without_bound(self) -> None:
        w = self.make(stream="public", params={})
        self.source.hold_max_bytes = 30_000  # about ten statuses
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(3)
        yield until(lambda: len(self.sink.frames) == 3)
        self.emu.hold_timelines = defer.Deferred()  # the fill's first page never comes
        self.emu.drop()
        self.emu.timeline.make(10)
        yield self.reconnected()
        yield until(lambda: self.emu.counters["timelines_held"] == 1 and self.source.gap.running)
        live = self.emu.timeline.make(25)
        yield until(lambda: len(self.sink.frames) == 28)  # the fill abandoned, the held events on
        self.assertEqual([e["payload"]["id"] for e in events(self.sink.frames)][3:], [m.id for m in live])
        self.assertEqual((self.source.gap.failed, self.source.gap.running), (1, False))
        self.emu.hold_timelines.callback(None)  # the late answer changes nothing
        self.emu.timeline.make(2)
        yield until(lambda: len(self.sink.frames) == 30)

    @defer.inlineCallbacks
    def test_a_rest_page_that_never_comes_times_out(self) -> None:
        w = self.make(stream="public", params={})
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(3)
        yield until(lambda: len(self.sink.frames) == 3)
        self.emu.hold_timelines = defer.Deferred()
        self.emu.drop()
        self.emu.timeline.make(10)
        yield self.reconnected()
        yield until(lambda: self.emu.counters["timelines_held"] == 1 and self.source.gap.running)
        live = self.emu.timeline.make(4)
        self.clock.advance(self.config.wader.connect_timeout + 1)  # the page's timeout, on the clock
        yield until(lambda: len(self.sink.frames) == 7)
        self.assertEqual([e["payload"]["id"] for e in events(self.sink.frames)][3:], [m.id for m in live])
        self.assertEqual(self.source.gap.failed, 1)
        self.assertIn("no answer", str(self.source.gap.last["public"]["reason"]))
        self.emu.hold_timelines.callback(None)

    @defer.inlineCallbacks
    def test_gap_max_bounds_a_fill(self) -> None:
        w = self.make(stream="public", params={}, gap_max=50)
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(3)
        yield until(lambda: len(self.sink.frames) == 3)
        self.emu.refuse(1)
        self.emu.timeline.make(200)
        yield self.reconnected()
        self.clock.advance(6)
        yield until(lambda: self.source.gap.fills == 1 and not self.source.gap.running and self.sink.frames[3:])
        ids = [e["payload"]["id"] for e in events(self.sink.frames)]
        self.assertEqual(ids[3:], self.emu.timeline.expected(("public",))[-50:])
        self.assertEqual(self.source.gap.truncated, 1)
        self.assertEqual(self.source.gap.last["public"]["reason"], "gap_max")

    @defer.inlineCallbacks
    def test_rest_rate_limit_stops_the_fill(self) -> None:
        w = self.make(stream="public", params={})
        self.emu.rate_limit.limit = 4  # the fill stops at its reserve: remaining 1 after 3 pages
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(2)
        yield until(lambda: len(self.sink.frames) == 2)
        self.emu.drop()
        self.emu.timeline.make(400)
        yield self.reconnected()
        yield until(lambda: self.source.gap.fills == 1 and not self.source.gap.running and len(self.sink.frames) > 2)
        self.assertEqual(self.source.gap.truncated, 1)
        self.assertEqual(self.source.gap.last["public"]["reason"], "rate limit")
        self.assertLessEqual(self.emu.counters["rate_limited"], 1)

    @defer.inlineCallbacks
    def test_stall_then_reconnect_and_fill(self) -> None:
        w = self.make()
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(2)
        self.emu.timeline.make(20)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        link = self.wader.active
        assert isinstance(link, MastodonLink) and link.websocket is not None
        ws = link.websocket
        for i in range(1, 6):  # 75 s of pings every 15 s, each answered: alive, no stall
            self.clock.advance(15)
            yield until(lambda: ws.pongs >= i)
        self.assertEqual((w.state.name, self.stats.attempts), ("connected", ["initial"]))
        self.emu.stall(1000)  # silent: no events, no pongs
        self.emu.timeline.make(50)
        for _ in range(4):  # pings go unanswered; the stall timer (60 s) fires
            self.clock.advance(15)
        yield until(lambda: "stall" in self.stats.attempts or w.state.cause == "stall")
        self.clock.advance(1)
        yield self.subscribed(4)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.assert_exactly_once(KEYS)


class UserStreamTests(MastodonWaderBase):
    @defer.inlineCallbacks
    def test_home_and_notifications_and_the_home_timeline_fills_the_gap(self) -> None:
        w = self.make(stream="user", params={})
        self.emu.timeline.options = type(self.emu.timeline.options)(rate=0, mention_share=0.2, direct_share=0,
                                                                     seed=6)
        w.startService()
        self.clock.advance(0)
        yield self.subscribed(1)
        self.emu.timeline.make(100)
        live = [m for m in self.emu.timeline.made if ("user",) in m.keys]
        yield until(lambda: len(self.sink.frames) == len(live))
        kinds = Counter(e["event"] for e in events(self.sink.frames))
        self.assertEqual(set(kinds), {"update", "notification"})
        self.emu.drop()
        self.emu.timeline.make(100)
        yield self.reconnected()
        yield until(lambda: self.source.gap.fills == 1 and not self.source.gap.running)
        self.emu.timeline.make(20)
        yield until(lambda: len(self.updates_by_stream().get(("user",), [])) == len(
            self.emu.timeline.expected(("user",))))
        self.assert_exactly_once([("user",)])  # home statuses: live, filled, live
        self.assertEqual(self.source.gap.last["user"]["complete"], True)


class FatalTests(MastodonWaderBase):
    @defer.inlineCallbacks
    def test_401_is_fatal_with_the_servers_message(self) -> None:
        w = self.make(token="wrong")
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "fatal")
        self.assertEqual(w.state.cause, "http 401")
        self.assertEqual(w.state.message, "HTTP 401 Unauthorized: Invalid access token")
        self.assertNotIn("wrong", repr(w.state.to_dict()))


class SseTests(MastodonWaderBase):
    @defer.inlineCallbacks
    def test_sse_401_is_fatal_with_the_servers_message(self) -> None:
        w = self.make(transport="sse", token="wrong")
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "fatal")
        self.assertEqual((w.state.cause, w.state.message), ("http 401", "HTTP 401 Unauthorized: Invalid access token"))
        yield until(lambda: not self.emu.subscribers())

    @defer.inlineCallbacks
    def test_sse_one_response_per_stream_thump_and_gap(self) -> None:
        w = self.make(transport="sse")
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "connected" and len(self.emu.subscribers("sse")) == 2)
        self.emu.timeline.make(80)
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        yield until(lambda: self.stats.counters.get("keepalives", 0) >= 2)  # each response's ":)"
        self.clock.advance(15)  # the emulator's :thump, on both
        yield until(lambda: self.stats.counters.get("keepalives", 0) >= 4)
        self.emu.drop()
        self.emu.timeline.make(120)
        yield self.reconnected()
        yield until(lambda: len(self.sink.frames) == self.expected_count(KEYS))
        self.assert_exactly_once(KEYS)
        self.assertEqual(self.emu.counters["websocket_connections"], 0)

    @defer.inlineCallbacks
    def test_one_silent_sse_response_among_live_ones_is_a_stall(self) -> None:
        w = self.make(transport="sse")
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "connected" and len(self.emu.subscribers("sse")) == 2)
        self.emu.subscribers("sse")[0].stall(True)  # silent; the other keeps thumping
        beats = self.stats.counters.get("keepalives", 0)
        for i in range(1, 6):  # 75 s of :thump on one response only; the stall timeout is 60 s
            self.clock.advance(15)
            yield until(lambda: self.stats.counters.get("keepalives", 0) >= beats + i  # it arrived
                        or w.state.name != "connected")
            if w.state.name != "connected":
                break
        yield until(lambda: w.state.cause == "stall" or "stall" in self.stats.attempts)
        self.clock.advance(1)
        yield until(lambda: w.state.name == "connected" and self.emu.counters["sse_connections"] == 4)

    @defer.inlineCallbacks
    def test_sse_params_change_reconnects(self) -> None:
        w = self.make(transport="sse")
        w.startService()
        self.clock.advance(0)
        yield until(lambda: w.state.name == "connected" and len(self.emu.subscribers("sse")) == 2)
        yield self.store.set_params("hashtag", {"tag": ["rust"]})
        self.clock.advance(10)
        yield until(lambda: [s.keys for s in self.emu.subscribers("sse")] == [{("hashtag", "rust")}])
        self.assertEqual(self.emu.counters["sse_connections"], 3)

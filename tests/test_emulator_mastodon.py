"""The Mastodon emulator: its timeline, REST paging and limits, tokens, WebSocket, SSE, faults."""

from __future__ import annotations

from typing import Any

import orjson
from treq import collect
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator.cli import source_of
from flamingo.emulator.mastodon.faults import MastoFault
from flamingo.emulator.mastodon.streaming import StreamError, stream_key
from flamingo.emulator.mastodon.timeline import Timeline, TimelineOptions
from tests.support.masto import http_client, start_masto, ws_client
from tests.support.waiting import until


def ids(page: list[bytes]) -> list[str]:
    return [orjson.loads(b)["id"] for b in page]


class TimelineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.tl = Timeline(TimelineOptions(rate=0, mention_share=0, direct_share=0), self.clock)

    def test_ids_increase_as_strings_mastodon_compares(self) -> None:
        made = self.tl.make(300)
        keys = [(len(m.id), m.id) for m in made]
        self.assertEqual(keys, sorted(keys))
        self.assertEqual(len(set(keys)), 300)

    def test_statuses_are_mastodon_sized_with_html(self) -> None:
        self.tl.make(200)
        sizes = sorted(len(k.body) for k in self.tl.kept)
        median = sizes[len(sizes) // 2]
        self.assertTrue(2000 <= median <= 4000, median)
        status = orjson.loads(self.tl.kept[0].body)
        for field in ("id", "created_at", "content", "account", "media_attachments", "tags", "visibility"):
            self.assertIn(field, status)
        self.assertTrue(status["content"].startswith("<p>"))

    def test_page_newest_first_with_bounds(self) -> None:
        self.tl.make(100)
        all_ids = [k.id for k in self.tl.kept]
        page = ids(self.tl.page(("public",), limit=40))
        self.assertEqual(page, list(reversed(all_ids))[:40])
        self.assertEqual(ids(self.tl.page(("public",), since_id=all_ids[89], limit=40)),
                         list(reversed(all_ids[90:])))
        self.assertEqual(ids(self.tl.page(("public",), max_id=all_ids[10], limit=5)),
                         list(reversed(all_ids[5:10])))
        # min_id: the statuses just after it (still newest first)
        self.assertEqual(ids(self.tl.page(("public",), min_id=all_ids[10], limit=5)),
                         list(reversed(all_ids[11:16])))

    def test_keys_for_tags_local_lists_home(self) -> None:
        self.tl.make(400)
        for m in self.tl.made:
            status = orjson.loads(self.tl.by_id[m.id].body)
            local = "@" not in status["account"]["acct"]
            self.assertIn(("public:local",) if local else ("public:remote",), m.keys)
            for tag in status["tags"]:
                self.assertIn(("hashtag", tag["name"]), m.keys)
        self.assertTrue(self.tl.expected(("list", "1")))
        self.assertTrue(self.tl.expected(("user",)))

    def test_deleted_statuses_leave_the_timelines(self) -> None:
        tl = Timeline(TimelineOptions(rate=0, delete_share=0.2, edit_share=0.2, seed=3), self.clock)
        tl.make(300)
        deleted = {m.id for m in tl.made if m.name == "delete"}
        self.assertTrue(deleted)
        self.assertTrue(any(m.name == "status.update" for m in tl.made))
        self.assertFalse(deleted & set(ids(tl.page(("public",), limit=40))))

    def test_made_on_the_clock_at_the_rate(self) -> None:
        tl = Timeline(TimelineOptions(rate=10, mention_share=0, direct_share=0), self.clock)
        tl.start()
        for _ in range(100):
            self.clock.advance(0.1)
        self.assertTrue(95 <= len(tl.made) <= 100, len(tl.made))
        tl.stop()


class StreamKeyTests(SynchronousTestCase):
    def test_keys(self) -> None:
        self.assertEqual(stream_key("hashtag", "#Python"), ("hashtag", "python"))
        self.assertEqual(stream_key("list", list_id="1"), ("list", "1"))
        self.assertEqual(stream_key("public:local"), ("public:local",))
        for bad in (("nope", None, None), ("hashtag", None, None), ("list", None, "999")):
            with self.assertRaises(StreamError):
                stream_key(*bad)

    def test_fault_specs_and_source_flag(self) -> None:
        self.assertEqual(MastoFault.parse("refuse:after=10,seconds=2.5"), MastoFault("refuse", 10, 2.5))
        with self.assertRaises(ValueError):
            MastoFault.parse("explode")
        with self.assertRaises(ValueError):
            MastoFault.parse("drop:when=3")
        self.assertEqual(source_of(["--source", "mastodon", "--port", "0"]), ("mastodon", ["--port", "0"]))
        self.assertEqual(source_of(["--source=mastodon"]), ("mastodon", []))
        self.assertEqual(source_of(["--port", "0"]), ("twitter", ["--port", "0"]))


class RestTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.http = http_client(self)

    @defer.inlineCallbacks
    def get(self, emu: Any, path: str, token: str | None = "t") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = yield self.http.get(emu.url + path, headers=headers)
        body = yield r.content()
        return r, body

    @defer.inlineCallbacks
    def test_instance_names_the_streaming_server(self) -> None:
        emu = start_masto(self)
        r, body = yield self.get(emu, "/api/v2/instance", token=None)
        doc = orjson.loads(body)
        self.assertEqual(doc["configuration"]["urls"]["streaming"], f"ws://127.0.0.1:{emu.streaming_port}")
        self.assertNotEqual(emu.port, emu.streaming_port)

    @defer.inlineCallbacks
    def test_paging_back_through_link_headers(self) -> None:
        emu = start_masto(self)
        emu.timeline.make(120)
        want = list(reversed(emu.timeline.expected(("public",))))
        got: list[str] = []
        path = "/api/v1/timelines/public?limit=40"
        url = emu.url + path
        while url:
            r = yield self.http.get(url, headers={"Authorization": "Bearer t"})
            page = orjson.loads((yield r.content()))
            if not page:
                break
            got += [s["id"] for s in page]
            link = r.headers.getRawHeaders("link")[0]
            url = link.split(">", 1)[0].lstrip("<")
            self.assertIn('rel="next"', link)
            self.assertNotIn("since_id", url)
        self.assertEqual(got, want)

    @defer.inlineCallbacks
    def test_limit_capped_at_40_and_tag_local(self) -> None:
        emu = start_masto(self)
        emu.timeline.make(200)
        r, body = yield self.get(emu, "/api/v1/timelines/public?limit=500")
        self.assertEqual(len(orjson.loads(body)), 40)
        r, body = yield self.get(emu, "/api/v1/timelines/tag/fediverse?local=true&limit=40")
        page = orjson.loads(body)
        self.assertTrue(page)
        self.assertTrue(all("@" not in s["account"]["acct"] for s in page))
        self.assertIn("local=true", r.headers.getRawHeaders("link")[0])

    @defer.inlineCallbacks
    def test_rate_limit_429_with_headers(self) -> None:
        clock = task.Clock()
        emu = start_masto(self, clock=clock, rate_limit=3, rate_period=300)
        for left in (2, 1, 0):
            r, _ = yield self.get(emu, "/api/v1/timelines/public")
            self.assertEqual(r.code, 200)
            self.assertEqual(r.headers.getRawHeaders("x-ratelimit-remaining"), [str(left)])
        r, body = yield self.get(emu, "/api/v1/timelines/public")
        self.assertEqual(r.code, 429)
        self.assertEqual(orjson.loads(body), {"error": "Too many requests"})
        self.assertEqual(r.headers.getRawHeaders("x-ratelimit-limit"), ["3"])
        clock.advance(300)
        r, _ = yield self.get(emu, "/api/v1/timelines/public")
        self.assertEqual(r.code, 200)

    @defer.inlineCallbacks
    def test_tokens(self) -> None:
        emu = start_masto(self, access_token="right")
        r, body = yield self.get(emu, "/api/v1/timelines/home", token="wrong")
        self.assertEqual((r.code, orjson.loads(body)), (401, {"error": "The access token is invalid"}))
        r, body = yield self.get(emu, "/api/v1/timelines/home", token="right")
        self.assertEqual(r.code, 200)
        r, body = yield self.http.get(f"http://127.0.0.1:{emu.streaming_port}/api/v1/streaming/public",
                                 headers={"Authorization": "Bearer wrong"}).addCallback(
            lambda r: r.content().addCallback(lambda b: (r, b)))
        self.assertEqual((r.code, orjson.loads(body)), (401, {"error": "Invalid access token"}))


class StreamingTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.http = http_client(self)

    @defer.inlineCallbacks
    def test_websocket_subscribe_unsubscribe_and_frames(self) -> None:
        clock = task.Clock()
        emu = start_masto(self, clock=clock, mention_share=0, direct_share=0)
        c = yield ws_client(self, emu)
        c.send({"type": "subscribe", "stream": "hashtag", "tag": "fediverse"})
        c.send({"type": "subscribe", "stream": "public:local"})
        c.send({"type": "subscribe", "stream": "nope"})
        yield until(lambda: len(emu.client_messages) == 2 and c.frames)
        self.assertEqual(c.frames[0], {"error": "Unknown stream type", "status": 400})
        emu.timeline.make(50)
        want = (len(emu.timeline.expected(("hashtag", "fediverse")))
                + len(emu.timeline.expected(("public:local",))))
        yield until(lambda: len(c.frames) == 1 + want)
        frame = c.frames[1]
        self.assertEqual(set(frame), {"stream", "event", "payload"})
        self.assertIsInstance(frame["payload"], str)
        self.assertIn(frame["stream"], (["hashtag", "fediverse"], ["public:local"]))
        c.send({"type": "unsubscribe", "stream": "public:local"})
        yield until(lambda: len(emu.client_messages) == 3)
        before = len(c.frames)
        new = emu.timeline.make(50)
        tagged = sum(1 for m in new if ("hashtag", "fediverse") in m.keys)
        yield until(lambda: len(c.frames) == before + tagged)
        self.assertTrue(all(f["stream"] == ["hashtag", "fediverse"] for f in c.frames[before:]))
        self.assertEqual(emu.counters["websocket_connections"], 1)

    @defer.inlineCallbacks
    def test_pings_on_the_clock_and_delete_payload(self) -> None:
        clock = task.Clock()
        emu = start_masto(self, clock=clock, ping_interval=30, delete_share=0.5, seed=4)
        c = yield ws_client(self, emu, query="?stream=public")
        clock.advance(30)
        yield until(lambda: c.pings == 1)
        emu.timeline.make(40)
        yield until(lambda: any(f["event"] == "delete" for f in c.frames))
        delete = next(f for f in c.frames if f["event"] == "delete")
        self.assertTrue(delete["payload"].isdigit())

    @defer.inlineCallbacks
    def test_refused_upgrade_is_401_with_mastodons_body(self) -> None:
        emu = start_masto(self, access_token="right")
        with self.assertRaises(ConnectionError):
            yield ws_client(self, emu, token="wrong")
        self.assertEqual(emu.counters["unauthorized"], 1)

    @defer.inlineCallbacks
    def test_sse_events_and_thump(self) -> None:
        clock = task.Clock()
        emu = start_masto(self, clock=clock, thump_interval=15)
        r = yield self.http.get(f"http://127.0.0.1:{emu.streaming_port}/api/v1/streaming/hashtag?tag=python",
                           headers={"Authorization": "Bearer t"}, unbuffered=True)
        chunks: list[bytes] = []
        done = collect(r, chunks.append)
        yield until(lambda: emu.subscribers("sse"))
        clock.advance(15)
        emu.timeline.make(100)
        n = len(emu.timeline.expected(("hashtag", "python")))
        yield until(lambda: b"".join(chunks).count(b"event: update\ndata: {") == n and b":thump\n" in b"".join(chunks))
        self.assertEqual(r.headers.getRawHeaders("content-type"), ["text/event-stream"])
        emu.drop()
        yield self.assertFailure(done, Exception)

    @defer.inlineCallbacks
    def test_refuse_window_while_statuses_keep_coming(self) -> None:
        clock = task.Clock()
        emu = start_masto(self, clock=clock, rate=10)
        c = yield ws_client(self, emu, query="?stream=public")
        emu.add_faults(MastoFault("refuse", after=5, seconds=10))
        emu.timeline.make(5)
        yield c.gone
        r = yield self.http.get(f"http://127.0.0.1:{emu.streaming_port}/api/v1/streaming/health")
        self.assertEqual(r.code, 502)
        for _ in range(50):
            clock.advance(0.1)
        self.assertGreater(len(emu.timeline.made), 40)
        clock.advance(6)
        r = yield self.http.get(f"http://127.0.0.1:{emu.streaming_port}/api/v1/streaming/health")
        self.assertEqual((r.code, (yield r.content())), (200, b"OK"))
        c2 = yield ws_client(self, emu, query="?stream=public")
        self.assertTrue(c2.opened.called)


class CommandLineTests(TestCase):
    """``flamingo emulator --source mastodon`` as a user runs it: a real subprocess."""

    timeout = 60

    @defer.inlineCallbacks
    def test_runs_serves_and_applies_a_scripted_refusal(self) -> None:
        import re
        import sys
        from pathlib import Path

        from twisted.internet import reactor

        from tests.support.child_daemon import Child

        flamingo = str(Path(sys.executable).with_name("flamingo"))
        child = Child()
        proc = reactor.spawnProcess(child, flamingo, [
            flamingo, "emulator", "--source", "mastodon", "--port", "0", "--streaming-port", "0",
            "--access-token", "s3cret", "--rate", "50", "--fault", "refuse:after=10,seconds=3600"], env=None)
        self.addCleanup(lambda: proc.pid is None or proc.signalProcess("KILL"))
        yield until(lambda: b"listening on" in child.out, timeout=30)
        m = re.search(rb"listening on (http://127\.0\.0\.1:\d+) \(streaming: ws://127\.0\.0\.1:(\d+)\)", child.out)
        assert m is not None, child.out
        url, sport = m.group(1).decode(), int(m.group(2))
        self.assertNotIn(b"s3cret", child.out)
        http = http_client(self)
        r = yield http.get(url + "/api/v2/instance")
        doc = orjson.loads((yield r.content()))
        self.assertEqual(doc["configuration"]["urls"]["streaming"], f"ws://127.0.0.1:{sport}")
        health = f"http://127.0.0.1:{sport}/api/v1/streaming/health"

        @defer.inlineCallbacks
        def refusing() -> object:
            r = yield http.get(health)
            yield r.content()
            return r.code == 502

        for _ in range(600):  # statuses are made at 50/s; the 10th starts the refusal
            if (yield refusing()):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("the scripted refusal never started")
        @defer.inlineCallbacks
        def statuses() -> object:
            r = yield http.get(url + "/api/v1/timelines/public?limit=40", headers={"Authorization": "Bearer s3cret"})
            return len(orjson.loads((yield r.content())))

        for _ in range(600):  # REST answers during the refusal, and statuses keep coming
            if (yield statuses()) == 40:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("statuses stopped being made during the refusal")
        self.assertTrue((yield refusing()))
        proc.signalProcess("TERM")
        code = yield child.ended
        self.assertEqual(code, 0, child.out[-2000:])

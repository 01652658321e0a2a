"""The X API v2 emulator's streams over real HTTP: shapes, fields, partitions, keep-alives, backfill, auth."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.emulator import EmulatorOptions
from flamingo.emulator.corpus import ID_LOW_DIGITS
from flamingo.emulator.x.corpus import USER_FIELDS, FieldSet, XCorpus, corpus_for
from flamingo.emulator.x.stream import STREAMS, StreamRequest, XStreamSource, XWorld, parse_stream_request
from tests.support.emulator import request
from tests.support.xemu import FILTER, lines, posts, rules_post, start_x_emulator, stream

SAMPLE = "/2/tweets/sample/stream"
TOKEN = "s3cret-app-token"


def template(post_id: str) -> int:
    """The corpus template a post id was rendered from (its low digits)."""
    return int(post_id) % 10**ID_LOW_DIGITS


class ShapeTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_default_fields_are_id_text_edit_history_about_300_bytes(self) -> Any:
        emu = start_x_emulator(self, bearer_token=TOKEN)
        yield rules_post(emu, {"add": [{"value": "the OR a OR to OR love", "tag": "common"}]}, token=TOKEN)
        client = yield stream(self, emu, FILTER, token=TOKEN)
        self.assertEqual(client.status, 200)
        self.assertIn("application/json", client.header("content-type") or "")
        self.assertEqual(client.header("transfer-encoding"), "chunked")
        yield client.wait_for(lambda: len(posts(client)) >= 300)
        got = posts(client)[:300]
        for line in got:
            self.assertEqual(set(line), {"data", "matching_rules"})
            self.assertEqual(set(line["data"]), {"id", "text", "edit_history_tweet_ids"})
            self.assertEqual(line["data"]["edit_history_tweet_ids"], [line["data"]["id"]])
            self.assertIsInstance(line["data"]["id"], str)
        ids = [int(p["data"]["id"]) for p in got]
        self.assertEqual(ids, sorted(set(ids)))  # increasing, no repeats
        sizes = [len(raw) for raw in lines(client)[:300] if raw]
        mean = sum(sizes) / len(sizes)
        self.assertTrue(220 <= mean <= 380, mean)

    @defer.inlineCallbacks
    def test_expansions_author_id_gives_includes_users_a_few_kb(self) -> Any:
        emu = start_x_emulator(self)
        query = {"tweet.fields": "created_at,lang,public_metrics,entities,context_annotations,author_id",
                 "expansions": "author_id,referenced_tweets.id,entities.mentions.username",
                 "user.fields": ",".join(USER_FIELDS)}
        client = yield stream(self, emu, SAMPLE, **query)
        yield client.wait_for(lambda: len(posts(client)) >= 100)
        got = posts(client)[:100]
        for line in got:
            data = line["data"]
            self.assertIn("created_at", data)
            self.assertIn("lang", data)
            users = line["includes"]["users"]
            self.assertEqual(users[0]["id"], data["author_id"])
            self.assertIn("public_metrics", users[0])
            self.assertNotIn("matching_rules", line)  # only the filter stream has them
        self.assertTrue(any("tweets" in p["includes"] for p in got))  # referenced posts expanded
        mean = sum(len(raw) for raw in lines(client)[:100] if raw) / 100
        self.assertTrue(1500 <= mean <= 6000, mean)

    @defer.inlineCallbacks
    def test_bad_parameters_get_xs_invalid_request(self) -> Any:
        emu = start_x_emulator(self)
        cases = [
            (SAMPLE + "?tweet.fields=nope", "tweet.fields"),
            (SAMPLE + "?expansions=author_id,bogus", "expansions"),
            (SAMPLE + "?backfill_minutes=6", "backfill_minutes"),
            (SAMPLE + "?colour=red", "colour"),
            ("/2/tweets/sample10/stream", "partition"),
            ("/2/tweets/sample10/stream?partition=3", "partition"),
            ("/2/tweets/firehose/stream?partition=21", "partition"),
            ("/2/tweets/firehose/stream?partition=0", "partition"),
            ("/2/tweets/compliance/stream?partition=5", "partition"),
            ("/2/users/compliance/stream", "partition"),
            ("/2/tweets/compliance/stream?partition=1&expansions=author_id", "expansions"),
        ]
        for target, param in cases:
            client = yield request(emu.port, "GET", target, testcase=self)
            yield client.closed
            self.assertEqual(client.status, 400, target)
            body = orjson.loads(client.raw.split(b"\r\n\r\n", 1)[1])
            self.assertEqual(body["title"], "Invalid Request")
            self.assertEqual(body["type"], "https://api.x.com/2/problems/invalid-request")
            self.assertIn(param, body["errors"][0]["parameters"], target)
        self.assertFalse(emu.sessions)

    @defer.inlineCallbacks
    def test_wrong_or_missing_token_is_401_with_xs_body(self) -> Any:
        emu = start_x_emulator(self, bearer_token=TOKEN)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dTpw"}):
            client = yield request(emu.port, "GET", FILTER, headers=headers, testcase=self)
            yield client.closed
            self.assertEqual(client.status, 401)
            body = orjson.loads(client.raw.split(b"\r\n\r\n", 1)[1])
            self.assertEqual(body, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                                    "detail": "Unauthorized"})
        self.assertNotIn(TOKEN.encode(), b"".join(r.encode() for r in map(repr, emu.journal)))

    @defer.inlineCallbacks
    def test_unknown_path_and_method_are_json(self) -> Any:
        emu = start_x_emulator(self)
        client = yield request(emu.port, "GET", "/2/tweets/nothing/stream", testcase=self)
        yield client.closed
        self.assertEqual(client.status, 404)
        self.assertEqual(orjson.loads(client.raw.split(b"\r\n\r\n", 1)[1])["status"], 404)
        client = yield request(emu.port, "POST", SAMPLE, testcase=self)
        yield client.closed
        self.assertEqual(client.status, 405)
        self.assertEqual(client.header("allow"), "GET")

    @defer.inlineCallbacks
    def test_v1_routes_are_gone_in_x_mode(self) -> Any:
        emu = start_x_emulator(self)
        client = yield request(emu.port, "GET", "/1.1/statuses/sample.json", testcase=self)
        yield client.closed
        self.assertEqual(client.status, 404)


class ComplianceTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_tweet_compliance_events_are_typed_by_their_key(self) -> Any:
        emu = start_x_emulator(self)
        client = yield stream(self, emu, "/2/tweets/compliance/stream", partition=1)
        yield client.wait_for(lambda: len(posts(client)) >= 200)
        kinds = {next(iter(p["data"])) for p in posts(client)}
        self.assertEqual(kinds, {"delete", "tweet_edit", "withheld", "drop", "undrop"})
        for p in posts(client):
            body = next(iter(p["data"].values()))
            self.assertIn("event_at", body)
            self.assertIn("id", body["tweet"])

    @defer.inlineCallbacks
    def test_user_compliance_events(self) -> Any:
        emu = start_x_emulator(self)
        client = yield stream(self, emu, "/2/users/compliance/stream", partition=4)
        yield client.wait_for(lambda: len(posts(client)) >= 200)
        kinds = {next(iter(p["data"])) for p in posts(client)}
        self.assertLessEqual({"user_delete", "user_suspend", "user_withheld", "user_profile_modification"}, kinds)
        for p in posts(client):
            self.assertIn("id", next(iter(p["data"].values()))["user"])


class TimelineTests(TestCase):
    """With a rate, one world: positions due on the clock, shared by every connection."""

    timeout = 30

    @defer.inlineCallbacks
    def test_partitions_split_the_firehose_without_overlap(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=100, keepalive=0, record=True, connections=2)
        yield stream(self, emu, "/2/tweets/sample10/stream", partition=1)
        yield stream(self, emu, "/2/tweets/sample10/stream", partition=2)
        yield stream(self, emu, SAMPLE)
        for _ in range(20):
            clock.advance(0.05)
        one, two, whole = ([orjson.loads(f)["data"]["id"] for f in frames] for frames in emu.sent_messages)
        self.assertEqual(len(whole), 100)
        self.assertFalse(set(one) & set(two))
        self.assertEqual(sorted(one + two, key=int), whole)

    @defer.inlineCallbacks
    def test_overlapping_connections_see_the_same_posts(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=50, keepalive=0, record=True)
        yield rules_post(emu, {"add": [{"value": "love OR #python"}]})
        yield stream(self, emu, FILTER)
        yield stream(self, emu, SAMPLE)
        for _ in range(40):
            clock.advance(0.05)
        filtered, sample = emu.sent_messages
        self.assertEqual(len(sample), 100)
        by_id = {orjson.loads(f)["data"]["id"]: f for f in sample}
        self.assertGreater(len(filtered), 5)
        for frame in filtered:
            line = orjson.loads(frame)
            self.assertEqual(orjson.loads(by_id[line["data"]["id"]])["data"], line["data"])

    @defer.inlineCallbacks
    def test_backfill_replays_recent_posts_on_reconnect(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=10, keepalive=0, record=True)
        first = yield stream(self, emu, SAMPLE)
        for second in range(1, 31):
            clock.advance(1)  # 30 s: 300 posts, read as they come
            yield first.wait_for(lambda: len(lines(first)) >= 10 * second)
        yield first.close()
        yield emu.streams_closed()
        clock.advance(5)  # 5 s offline: 50 posts nobody read
        second_client = yield stream(self, emu, SAMPLE, backfill_minutes=1)
        clock.advance(0.1)  # the first tick: a minute back to the head (one more post is due)
        yield second_client.wait_for(lambda: len(lines(second_client)) >= 351)
        yield second_client.close()
        yield emu.streams_closed()
        third = yield stream(self, emu, SAMPLE)
        clock.advance(0.15)
        yield third.wait_for(lambda: len(lines(third)) >= 1)
        a, b, c = (lines(x) for x in (first, second_client, third))
        self.assertEqual(len(a), 300)
        # a minute back: everything the first connection saw (same bytes), then the 51 it missed
        self.assertEqual(b[:300], a)
        self.assertEqual(len(b), 351)
        ids = [int(orjson.loads(f)["data"]["id"]) for f in b]
        self.assertEqual(ids, sorted(set(ids)))
        # without backfill a connection starts at the head: nothing already sent
        self.assertEqual(len(c), 1)
        self.assertGreater(int(orjson.loads(c[0])["data"]["id"]), ids[-1])

    @defer.inlineCallbacks
    def test_keepalives_every_interval_when_nothing_matches(self) -> Any:
        clock = Clock()
        emu = start_x_emulator(self, clock=clock, rate=10, keepalive=5)
        yield rules_post(emu, {"add": [{"value": "zzzqqqx"}]})  # matches nothing
        client = yield stream(self, emu, FILTER)
        for _ in range(3):
            clock.advance(5)
        yield client.wait_for(lambda: len(lines(client)) >= 3)
        self.assertEqual(lines(client), [b"", b"", b""])
        clock.advance(4.9)
        self.assertEqual(emu.journal[-1].bytes_sent, 6)

    @defer.inlineCallbacks
    def test_the_filter_stream_without_rules_is_409(self) -> Any:
        emu = start_x_emulator(self)
        client = yield request(emu.port, "GET", FILTER, testcase=self)
        yield client.closed
        self.assertEqual(client.status, 409)
        body = orjson.loads(client.raw.split(b"\r\n\r\n", 1)[1])
        self.assertEqual((body["title"], body["connection_issue"]), ("ConnectionException", "RuleConfigurationIssue"))
        self.assertEqual(emu.x.counters["no_rules"], 1)
        relaxed = start_x_emulator(self, allow_no_rules=True)
        client = yield stream(self, relaxed, FILTER)
        self.assertEqual(client.status, 200)


class PureTests(SynchronousTestCase):
    def test_default_keepalive_is_20_seconds_for_x(self) -> None:
        self.assertEqual(EmulatorOptions(source="x").keepalive_seconds, 20.0)
        self.assertEqual(EmulatorOptions().keepalive_seconds, 30.0)
        self.assertEqual(EmulatorOptions(source="x", keepalive=0).keepalive_seconds, 0)

    def test_corpus_is_deterministic(self) -> None:
        a, b = XCorpus(7, n_posts=50), XCorpus(7, n_posts=50)
        self.assertEqual(a.rendered(FieldSet()), b.rendered(FieldSet()))
        self.assertNotEqual(XCorpus(8, n_posts=50).rendered(FieldSet()), a.rendered(FieldSet()))

    def test_every_stream_route_parses_its_parameters(self) -> None:
        for path, spec in STREAMS.items():
            pairs = [("partition", "1")] if spec.partitions else []
            parsed = parse_stream_request(spec, pairs + [("backfill_minutes", "5")])
            self.assertIsInstance(parsed, StreamRequest, path)

    def test_the_corpus_has_posts_for_typical_rules(self) -> None:
        corpus = corpus_for(1)
        facts = [p.facts for p in corpus.posts]
        self.assertGreater(sum(f.is_retweet for f in facts), 100)
        self.assertGreater(sum(f.author == "xdevelopers" for f in facts), 20)
        self.assertGreater(sum("python" in f.hashtags for f in facts), 20)
        self.assertGreater(len({f.lang for f in facts}), 5)
        self.assertGreater(sum(bool(f.mentions) for f in facts), 300)


class RecoveryTests(TestCase):
    """``start_time``/``end_time``: re-stream a window of the world, then disconnect."""

    timeout = 30

    @defer.inlineCallbacks
    def test_recovery_re_streams_the_window_then_disconnects(self) -> Any:
        clock = Clock()
        clock.advance(1_767_225_600)  # 2026-01-01T00:00:00Z
        emu = start_x_emulator(self, clock=clock, rate=10, keepalive=0, connections=2)
        live = yield stream(self, emu, "/2/tweets/firehose/stream", partition=1)
        for second in range(1, 61):
            clock.advance(1)  # a minute: 600 positions, 30 in partition 1 of 20
            yield live.wait_for(lambda: len(lines(live)) >= second // 2)
        seen = lines(live)
        self.assertEqual(len(seen), 30)
        again = yield stream(self, emu, "/2/tweets/firehose/stream", partition=1,
                             start_time="2026-01-01T00:00:20Z", end_time="2026-01-01T00:00:40Z")
        clock.advance(0.1)
        yield again.closed
        self.assertEqual(lines(again), seen[10:20])  # positions 200..399: the same bytes, oldest first
        self.assertEqual(emu.journal[-1].close_reason, "recovery complete")

    @defer.inlineCallbacks
    def test_recovery_errors(self) -> Any:
        clock = Clock()
        clock.advance(1_767_225_600 + 3 * 86400)
        emu = start_x_emulator(self, clock=clock, rate=10)
        zero = start_x_emulator(self)
        for target, who in (
            ("/2/tweets/sample/stream?start_time=2026-01-04T00:00:00Z", emu),  # the 1% sample: no recovery
            ("/2/tweets/firehose/stream?partition=1&start_time=yesterday", emu),
            ("/2/tweets/firehose/stream?partition=1&end_time=2026-01-04T00:00:00Z", emu),
            ("/2/tweets/firehose/stream?partition=1&start_time=2026-01-04T00:00:10Z"
             "&end_time=2026-01-04T00:00:05Z", emu),
            ("/2/tweets/firehose/stream?partition=1&start_time=2026-01-01T00:00:00Z", emu),  # over 24 h back
            ("/2/tweets/firehose/stream?partition=1&start_time=2026-01-04T00:00:00Z", zero),  # rate 0
        ):
            client = yield request(who.port, "GET", target, testcase=self)
            yield client.closed
            self.assertEqual(client.status, 400, target)
            body = orjson.loads(client.raw.split(b"\r\n\r\n", 1)[1])
            self.assertEqual(body["title"], "Invalid Request", target)


class SourceProperties(SynchronousTestCase):
    """``XStreamSource`` is a pure function of positions: however it is read, the same lines."""

    @given(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 20_000)), min_size=1, max_size=40),
           st.sampled_from([None, (2, 1), (2, 2), (20, 7)]), st.booleans())
    def test_reading_in_any_pieces_gives_the_same_lines(self, pieces: list[tuple[int, int]],
                                                        partition: Any, filtered: bool) -> None:
        lines = corpus_for(1).rendered(FieldSet())
        match = (lambda i: b',"matching_rules":[{"id":"1"}]}' if i % 3 == 0 else None) if filtered else None
        clock = Clock()
        world = XWorld(10.0, clock)
        clock.advance(500)  # 5,000 positions due
        whole = XStreamSource(world, lines, start=0, match=match, partition=partition)
        expected, _ = whole.take(10**6, 10**9)
        parts = XStreamSource(world, lines, start=0, match=match, partition=partition)
        got = b""
        for count, size in pieces:
            data, n = parts.take(count, size)
            self.assertLessEqual(n, count)
            self.assertEqual(data.count(b"\r\n"), n)
            got += data
        while True:
            data, n = parts.take(1000, 1 << 20)
            if not n:
                break
            got += data
        self.assertEqual(got, expected)
        if partition is not None:
            parts_n, part = partition
            for line in got.split(b"\r\n")[:-1]:
                position = (int(orjson.loads(line)["data"]["id"]) // 10**ID_LOW_DIGITS - 150_000_000_001) \
                    * len(lines) + int(orjson.loads(line)["data"]["id"]) % 10**ID_LOW_DIGITS
                self.assertEqual(position % parts_n, part - 1)

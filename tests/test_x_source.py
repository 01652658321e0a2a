"""X API v2 as a source: requests, verdicts, message types, repeats dropped by id.

The pure parts are tested as tables and properties; the wader over the X
source runs against a scripted server on real loopback HTTP, every delay it
chooses going through a ``task.Clock`` (so each error class's backoff is
asserted exactly).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase

from flamingo.config import from_mapping
from flamingo.sources.x import TOO_MANY_CONNECTIONS, XLineRules, XRequests, XSource, x_error_message
from flamingo.sources.x_messages import post_id, rule_tags, x_message_type
from flamingo.stream.messages import message_type
from flamingo.stream.source import Fatal, Retry
from flamingo.stream.wader import Wader
from tests.support.fakes import MemoryStore, NullStats
from tests.test_wader import Script, WaderTestBase, until

OPERATIONAL = (b'{"errors":[{"title":"operational-disconnect","disconnect_type":"UpstreamOperationalDisconnect",'
               b'"detail":"This stream has been disconnected upstream for operational reasons.",'
               b'"type":"https://api.twitter.com/2/problems/operational-disconnect"}]}')
TOO_MANY = (b'{"title":"ConnectionException","detail":"This stream is currently at the maximum allowed '
            b'connection limit.","connection_issue":"TooManyConnections",'
            b'"type":"https://api.twitter.com/2/problems/streaming-connection"}')


def x_config(stream: str = "filter", url: str = "https://api.x.com", **x: Any) -> Any:
    return from_mapping({"source": "x", "stream": stream, "bearer_token": "tok", "api": {"url": url},
                         "x": x, "wader": {"min_interval": 0, "gzip": False}})


def post(i: int, *tags: str) -> bytes:
    doc: dict[str, Any] = {"data": {"edit_history_tweet_ids": [str(i)], "id": str(i), "text": f"post {i}"}}
    if tags:
        doc["matching_rules"] = [{"id": str(100 + n), "tag": t} for n, t in enumerate(tags)]
    return json.dumps(doc, separators=(",", ":")).encode()


class RequestTests(SynchronousTestCase):
    def test_filter_asks_for_fields_and_backfill(self) -> None:
        r = XRequests("https://api.x.com/", "filter", x_config(
            tweet_fields=["created_at", "lang"], expansions=["author_id"], user_fields=["username"],
            backfill_minutes=2).x).request()
        self.assertEqual(r.method, "GET")
        self.assertEqual(r.url, "https://api.x.com/2/tweets/search/stream?tweet.fields=created_at,lang"
                                "&expansions=author_id&user.fields=username&backfill_minutes=2")
        self.assertEqual(r.request_line, "/2/tweets/search/stream?tweet.fields=created_at,lang"
                                         "&expansions=author_id&user.fields=username&backfill_minutes=2")
        self.assertIsNone(r.body)

    def test_each_stream_has_its_path_and_partition(self) -> None:
        cases = {"sample": ("/2/tweets/sample/stream", None), "sample10": ("/2/tweets/sample10/stream", 2),
                 "firehose": ("/2/tweets/firehose/stream", 20),
                 "tweets-compliance": ("/2/tweets/compliance/stream", 4),
                 "users-compliance": ("/2/users/compliance/stream", 1)}
        for stream, (path, part) in cases.items():
            x = {"partition": part} if part else {}
            line = XRequests("https://api.x.com", stream, x_config(stream, **x).x).request().request_line
            self.assertEqual(line, path + (f"?partition={part}" if part else ""), stream)

    def test_compliance_streams_take_no_post_fields(self) -> None:
        x = x_config("tweets-compliance", partition=1, tweet_fields=["lang"]).x
        self.assertEqual(XRequests("https://api.x.com", "tweets-compliance", x).query(), [("partition", "1")])

    def test_the_token_is_only_in_the_header(self) -> None:
        source = XSource(x_config(), reactor, task.Clock(), NullStats())
        request = source.request({})
        self.assertNotIn("tok", request.url + request.request_line)
        self.assertEqual(source.headers().getRawHeaders(b"authorization"), [b"Bearer tok"])
        source.close_idle()

    def test_rules_are_not_params(self) -> None:
        source = XSource(x_config(), reactor, task.Clock(), NullStats())
        self.assertIsNotNone(source.request({}))  # the filter stream opens without rules
        self.assertTrue(source.apply_params(None, {}))  # type: ignore[arg-type]  # nothing to reconnect for
        source.close_idle()


class VerdictTests(SynchronousTestCase):
    """X's statuses, in-stream errors and ends -> what the wader does."""

    def test_statuses(self) -> None:
        r = XLineRules()
        unauthorized = '{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}'
        table: dict[int, Any] = {
            401: Fatal("http 401", "HTTP 401 Unauthorized: Unauthorized"),
            403: Fatal("http 403", "HTTP 403 Forbidden: Client Forbidden: This app is not attached to a project"),
            400: Fatal("http 400", "HTTP 400 Bad Request: Invalid Request: partition is required"),
            429: Retry("rate_limit", "HTTP 429 Too Many Requests: Too Many Requests"),
            503: Retry("http", "HTTP 503 Service Unavailable"),
            500: Retry("http", "HTTP 500 Internal Server Error"),
        }
        bodies = {401: unauthorized,
                  403: '{"title":"Client Forbidden","detail":"This app is not attached to a project"}',
                  400: '{"errors":[{"title":"Invalid Request","message":"partition is required"}]}',
                  429: '{"title":"Too Many Requests","detail":"Too Many Requests"}'}
        phrases = {401: "Unauthorized", 403: "Forbidden", 400: "Bad Request", 429: "Too Many Requests",
                   503: "Service Unavailable", 500: "Internal Server Error"}
        for code, verdict in table.items():
            self.assertEqual(r.on_status(code, phrases[code], bodies.get(code, "")), verdict, code)

    def test_too_many_connections_is_a_rate_limit_that_says_why(self) -> None:
        v = XLineRules().on_status(429, "Too Many Requests", TOO_MANY.decode())
        self.assertIsInstance(v, Retry)
        self.assertEqual(v.cause, "rate_limit")
        self.assertIn(TOO_MANY_CONNECTIONS, v.message)
        self.assertIn("maximum allowed connection limit", v.message)

    def test_usage_cap(self) -> None:
        r = XLineRules()
        r.inspect([b'{"errors":[{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap",'
                   b'"type":"https://api.twitter.com/2/problems/usage-capped"}]}'])
        self.assertEqual(r.on_end(True, ""), Retry("rate_limit", "UsageCapExceeded: Usage cap exceeded: Monthly "
                                                                 "product cap"))
        v = XLineRules().on_status(429, "Too Many Requests", '{"title":"UsageCapExceeded","detail":"Usage cap '
                                                             'exceeded: Monthly product cap"}')
        self.assertEqual(v.cause, "rate_limit")
        self.assertIn("Usage cap exceeded", v.message)

    def test_no_rules_yet(self) -> None:
        body = ('{"title":"ConnectionException","detail":"You must define rules before connecting",'
                '"connection_issue":"RuleConfigurationIssue"}')
        v = XLineRules().on_status(409, "Conflict", body)
        self.assertEqual(v.cause, "http")
        self.assertIn("no rules at X yet", v.message)
        self.assertIn("You must define rules", v.message)

    def test_too_many_connections_in_the_stream(self) -> None:
        r = XLineRules()
        r.inspect([b'{"errors":[' + TOO_MANY + b"]}"])
        v = r.on_end(True, "done")
        self.assertEqual((v.cause, v.message.startswith(TOO_MANY_CONNECTIONS)), ("rate_limit", True))

    def test_operational_disconnect_reconnects_at_once(self) -> None:
        for title in (b"operational-disconnect", b"OperationalDisconnect"):
            r = XLineRules()
            r.inspect([post(1), OPERATIONAL.replace(b"operational-disconnect", title, 1)])
            v = r.on_end(True, "")
            self.assertEqual(v.cause, "dropped")  # 0 s: at once
            self.assertIn("disconnected upstream for operational reasons", v.message)
            self.assertIsNone(r.fatal_seen())

    def test_other_ends(self) -> None:
        r = XLineRules()
        r.inspect([b'{"errors":[{"title":"something else"}]}'])
        self.assertEqual(r.on_end(True, ""), Retry("dropped", "X ended the stream"))
        self.assertEqual(r.on_end(False, "reset"), Retry("dropped", "connection lost: reset"))

    def test_error_message_of_odd_bodies(self) -> None:
        self.assertEqual(x_error_message("not json"), "not json")
        self.assertEqual(x_error_message("[1]"), "[1]")
        self.assertEqual(x_error_message('{"errors":[{"message":"a"},{"title":"b","detail":"c"}]}'), "a; b: c")


class TypeTests(SynchronousTestCase):
    def test_types(self) -> None:
        cases = {
            post(1): "tweet",
            post(2, "cats"): "tweet",
            b'{"data":{"id":"3","text":"t"},"errors":[{"title":"Not Found Error"}]}': "tweet",
            OPERATIONAL: "error",
            b'{"data":{"delete":{"tweet":{"id":"1","author_id":"2"},"event_at":"2026-01-01T00:00:00.000Z"}}}':
                "delete",
            b'{"data":{"tweet_edit":{"tweet":{"id":"1"},"initial_tweet_id":"0","edit_tweet_ids":["0","1"],'
            b'"event_at":"x"}}}': "tweet_edit",
            b'{"data":{"withheld":{"tweet":{"id":"1"},"withheld_in_countries":["DE"]}}}': "withheld",
            b'{"data":{"drop":{"tweet":{"id":"1"}}}}': "drop",
            b'{"data":{"undrop":{"tweet":{"id":"1"}}}}': "undrop",
            b'{"data":{"user_delete":{"user":{"id":"9"},"event_at":"x"}}}': "user_delete",
            b'{"data":{"user_suspend":{"user":{"id":"9"}}}}': "user_suspend",
            b'{"data":{}}': "unknown",
            b'[1,2]': "invalid",
            b'{"data":': "invalid",
        }
        for raw, want in cases.items():
            self.assertEqual(x_message_type(raw), want, raw)

    def test_the_dispatcher_types_x_lines_by_their_shape(self) -> None:
        for raw in (post(1, "a"), OPERATIONAL, b'{"data":{"user_delete":{"user":{"id":"9"}}}}'):
            self.assertEqual(message_type(raw), x_message_type(raw))
        self.assertEqual(message_type(OPERATIONAL), "error")

    def test_post_ids_and_tags(self) -> None:
        self.assertEqual(post_id(post(5)), "5")
        self.assertIsNone(post_id(OPERATIONAL))
        self.assertIsNone(post_id(b'{"data":{"delete":{"tweet":{"id":"5"}}}}'))
        self.assertEqual(rule_tags(post(5, "a", "b")), frozenset({"a", "b"}))
        self.assertIsNone(rule_tags(post(5)))

    @given(st.dictionaries(st.text(min_size=1, max_size=8), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8), max_size=4))
    def test_any_json_object_gets_a_type(self, doc: dict[str, Any]) -> None:
        raw = json.dumps(doc).encode()
        t = x_message_type(raw)
        self.assertRegex(t, r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
        post_id(raw)
        rule_tags(raw)


class FramingTests(SynchronousTestCase):
    @given(st.lists(st.integers(min_value=0, max_value=40), max_size=12), st.data())
    def test_any_split_of_an_x_stream_gives_the_same_lines(self, kinds: list[int], data: Any) -> None:
        """Posts, error lines and \\r\\n keep-alives, cut anywhere: the same messages, keep-alives counted."""
        from flamingo.stream.framing import FrameParser

        lines = [b"" if k % 5 == 0 else OPERATIONAL if k % 7 == 0 else post(k) for k in kinds]
        stream_bytes = b"".join(line + b"\r\n" for line in lines)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream_bytes)), max_size=10)))
        parser = FrameParser()
        got: list[bytes] = []
        for a, b in zip([0, *cuts], [*cuts, len(stream_bytes)]):
            got += parser.feed(stream_bytes[a:b])
        self.assertEqual(got, [line for line in lines if line])
        self.assertEqual(parser.keepalives, sum(1 for line in lines if not line))


class Tail:
    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.asked: list[int] = []

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        self.asked.append(max_events)
        return self.frames[-max_events:]


class RepeatTests(SynchronousTestCase):
    def test_repeats_are_dropped_and_counted(self) -> None:
        stats = NullStats()
        source = XSource(x_config(), reactor, task.Clock(), stats)
        kept = source.drop_seen([post(1), post(2), post(1), OPERATIONAL, OPERATIONAL])
        self.assertEqual(kept, [post(1), post(2), OPERATIONAL, OPERATIONAL])
        self.assertEqual(source.drop_seen([post(2), post(3)]), [post(3)])
        self.assertEqual(stats.counters["duplicates"], 2)
        source.close_idle()

    def test_the_window_is_rebuilt_from_the_journal_at_the_first_connection(self) -> None:
        tail = Tail([post(1), OPERATIONAL, post(2)])
        source = XSource(x_config(), reactor, task.Clock(), NullStats(), journal=tail)
        self.assertEqual(tail.asked, [])  # the journal opens after the source is built
        source._seed()
        source._seed()
        self.assertEqual(tail.asked, [50_000])
        self.assertEqual(source.drop_seen([post(2), post(3)]), [post(3)])
        source.close_idle()

    @given(st.lists(st.integers(min_value=0, max_value=30), max_size=60))
    def test_each_post_once_whatever_the_repeats(self, ids: list[int]) -> None:
        source = XSource(x_config(), reactor, task.Clock(), NullStats())
        out: list[bytes] = []
        for i in range(0, len(ids), 7):
            out += source.drop_seen([post(n) for n in ids[i:i + 7]])
        self.assertEqual(out, [post(n) for n in dict.fromkeys(ids)])
        source.close_idle()


class XWaderTests(WaderTestBase):
    """The wader over the X source against a scripted server; delays from a Clock."""

    params: dict[str, list[str]] = {}

    def make_wader(self, tier: str = "pay-per-use", **wader_options: Any) -> Wader:
        config = from_mapping({"source": "x", "stream": "filter", "bearer_token": "tok",
                               "api": {"url": self.url}, "x": {"tier": tier},
                               "wader": {"min_interval": 0, "gzip": False, **wader_options}})
        wader = Wader(config, reactor, MemoryStore(), self.sink, self.stats, clock=self.clock)
        self.addCleanup(self._stop, wader)
        return wader

    @defer.inlineCallbacks
    def test_connects_with_bearer_and_delivers_posts(self) -> Any:
        seen = yield self.start(Script(chunks=[post(1) + b"\r\n", b"\r\n", post(2) + b"\r\n"]))
        self.assertEqual((seen.method, seen.path, seen.auth), ("GET", "/2/tweets/search/stream", "Bearer tok"))
        yield self.sink.wait_for(2)
        self.assertEqual(self.sink.frames, [post(1), post(2)])
        self.assertEqual(self.state(), "connected")
        self.assertGreaterEqual(self.stats.counters.get("keepalives", 0), 1)

    @defer.inlineCallbacks
    def test_http_errors_back_off_exponentially_from_5s(self) -> Any:
        yield self.start(Script(code=503), Script(code=503), Script(code=503))
        yield until(lambda: self.state() == "retrying")
        delays = []
        for _ in range(2):
            delay, _seen = yield self.next_attempt()
            delays.append(delay)
            yield until(lambda: self.state() == "retrying" and self.wader.state.attempt == len(delays) + 1)
        self.assertEqual(delays, [5.0, 10.0])
        self.assertEqual(self.wader.state.next_attempt_at - self.clock.seconds(), 20.0)

    @defer.inlineCallbacks
    def test_429_backs_off_from_60s(self) -> Any:
        yield self.start(Script(code=429, body=b'{"title":"Too Many Requests"}'), Script(code=429))
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "rate_limit")
        delay, _ = yield self.next_attempt()
        self.assertEqual(delay, 60.0)
        yield until(lambda: self.state() == "retrying" and self.wader.state.attempt == 2)
        self.assertEqual(self.wader.state.next_attempt_at - self.clock.seconds(), 120.0)

    @defer.inlineCallbacks
    def test_too_many_connections_waits_and_says_so(self) -> Any:
        yield self.start(Script(code=429, body=TOO_MANY))
        yield until(lambda: self.state() == "retrying")
        s = self.wader.state
        self.assertEqual((s.cause, s.next_attempt_at - self.clock.seconds()), ("rate_limit", 60.0))
        self.assertIn("another client holds this app's streaming connection", s.message)

    @defer.inlineCallbacks
    def test_401_is_fatal_with_x_message(self) -> Any:
        yield self.start(Script(code=401, body=b'{"title":"Unauthorized","detail":"Unauthorized","status":401}'))
        yield until(lambda: self.state() == "fatal")
        self.assertEqual(self.wader.state.cause, "http 401")
        self.assertIn("Unauthorized", self.wader.state.message)
        self.assertNotIn("tok", self.wader.state.message)

    @defer.inlineCallbacks
    def test_403_is_fatal(self) -> Any:
        yield self.start(Script(code=403, body=b'{"title":"Client Forbidden","detail":"not attached"}'))
        yield until(lambda: self.state() == "fatal")
        self.assertEqual(self.wader.state.message, "HTTP 403 Forbidden: Client Forbidden: not attached")

    @defer.inlineCallbacks
    def test_network_errors_back_off_linearly(self) -> Any:
        yield self.port.stopListening()  # nobody listens: refused
        self.wader.startService()
        self.clock.advance(0)
        yield until(lambda: self.state() == "retrying")
        self.assertEqual((self.wader.state.cause, self.wader.state.next_attempt_at - self.clock.seconds()),
                         ("network", 0.25))
        self.clock.advance(0.25)
        yield until(lambda: self.state() == "retrying" and self.wader.state.attempt == 2)
        self.assertEqual(self.wader.state.next_attempt_at - self.clock.seconds(), 0.5)

    @defer.inlineCallbacks
    def test_operational_disconnect_reconnects_at_once_and_is_journaled(self) -> Any:
        yield self.start(Script(chunks=[post(1) + b"\r\n", OPERATIONAL + b"\r\n"], close=True),
                         Script(chunks=[post(1) + b"\r\n", post(2) + b"\r\n"]))
        yield until(lambda: self.state() == "retrying")
        s = self.wader.state
        self.assertEqual((s.cause, s.next_attempt_at - self.clock.seconds()), ("dropped", 0.0))
        delay, _ = yield self.next_attempt()
        self.assertEqual(delay, 0.0)
        yield self.sink.wait_for(3)
        # the error line reaches the journal; the repeat of post 1 does not
        self.assertEqual(self.sink.frames, [post(1), OPERATIONAL, post(2)])
        self.assertEqual(self.stats.counters["duplicates"], 1)

    @defer.inlineCallbacks
    def test_a_restart_closes_the_one_connection_before_reconnecting(self) -> Any:
        first = yield self.start(Script(chunks=[post(1) + b"\r\n"]))
        yield self.sink.wait_for(1)
        yield until(lambda: self.state() == "connected")
        arrived = self.stub.next_request()
        self.stub.scripts.append(Script(chunks=[post(1) + b"\r\n", post(2) + b"\r\n"]))
        self.wader.restart()
        second = yield arrived
        self.assertTrue(first.disconnected)  # never two connections at once (pay-per-use)
        self.assertEqual(second.path, "/2/tweets/search/stream")
        yield self.sink.wait_for(2)
        yield until(lambda: self.state() == "connected")
        self.assertEqual(self.sink.frames, [post(1), post(2)])  # the repeat of post 1 dropped
        self.assertIs(self.wader.active, self.wader.source.current)

    @defer.inlineCallbacks
    def test_on_enterprise_a_restart_overlaps(self) -> Any:
        self.wader = self.make_wader(tier="enterprise")
        first = yield self.start(Script(chunks=[post(1) + b"\r\n"]))
        yield until(lambda: self.state() == "connected")
        arrived = self.stub.next_request()
        self.wader.restart()
        yield arrived
        self.assertFalse(first.disconnected)  # the old stream lives until the new one answers
        yield until(lambda: first.disconnected and self.state() == "connected")

    @defer.inlineCallbacks
    def test_silence_is_a_stall_after_20s(self) -> Any:
        self.wader = self.make_wader(stall_timeout=20)
        yield self.start(Script(chunks=[b"\r\n"]))
        yield until(lambda: self.state() == "connected")
        self.clock.advance(19.9)
        self.assertEqual(self.state(), "connected")
        self.clock.advance(0.2)
        yield until(lambda: self.state() == "retrying")
        self.assertEqual(self.wader.state.cause, "stall")


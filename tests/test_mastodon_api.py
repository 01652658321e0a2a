"""Pure parts of the Mastodon source: subscriptions, discovery, URLs, Link paging, ids, the queue shape."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from flamingo.sources.mastodon_api import (
    ShapeError,
    http_url,
    id_key,
    newest_ids,
    parse_link,
    read_shaped,
    read_ws,
    shape,
    shape_status,
    sse_path,
    streaming_base,
    subscribe_message,
    subscriptions,
    timeline_path,
    ws_url,
)
from flamingo.sources.mastodon_rest import RateBudget, server_words, with_query
from flamingo.stream.messages import message_type

STATUS = {"id": "109348677773283527", "content": "<p>hi \"there\"</p>", "edited_at": None,
          "account": {"acct": "a@b"}, "tags": [{"name": "python"}]}


class SubscriptionTests(SynchronousTestCase):
    def test_one_key_per_tag_normalised_once(self) -> None:
        self.assertEqual(subscriptions("hashtag", {"tag": ["#Python", "python", "Rust", " "]}),
                         [("hashtag", "python"), ("hashtag", "rust")])
        self.assertEqual(subscriptions("hashtag:local", {"tag": ["foo"]}), [("hashtag:local", "foo")])
        self.assertEqual(subscriptions("list", {"list": ["42", "7"]}), [("list", "42"), ("list", "7")])
        self.assertEqual(subscriptions("hashtag", {}), [])
        self.assertEqual(subscriptions("public:local", {"tag": ["ignored"]}), [("public:local",)])
        self.assertEqual(subscriptions("user:notification", {}), [("user:notification",)])

    def test_subscribe_messages(self) -> None:
        self.assertEqual(orjson.loads(subscribe_message(("hashtag:local", "foo"))),
                         {"type": "subscribe", "stream": "hashtag:local", "tag": "foo"})
        self.assertEqual(orjson.loads(subscribe_message(("list", "42"), "unsubscribe")),
                         {"type": "unsubscribe", "stream": "list", "list": "42"})
        self.assertEqual(orjson.loads(subscribe_message(("user",))), {"type": "subscribe", "stream": "user"})


class DiscoveryTests(SynchronousTestCase):
    def test_streaming_base_from_the_instance(self) -> None:
        v2 = {"configuration": {"urls": {"streaming": "wss://streaming.mastodon.social"}}}
        self.assertEqual(streaming_base(v2, "https://mastodon.social"), "wss://streaming.mastodon.social")
        v1 = {"urls": {"streaming_api": "wss://mastodon.example"}}
        self.assertEqual(streaming_base(v1, "https://x"), "wss://mastodon.example")
        for odd in ({}, {"configuration": {"urls": {"streaming": None}}}, [], "x", None):
            self.assertEqual(streaming_base(odd, "https://mastodon.example"), "https://mastodon.example")

    def test_urls_keep_tls_and_paths(self) -> None:
        self.assertEqual(ws_url("wss://streaming.example"), "wss://streaming.example/api/v1/streaming")
        self.assertEqual(ws_url("https://m.example/"), "wss://m.example/api/v1/streaming")
        self.assertEqual(ws_url("http://127.0.0.1:8091"), "ws://127.0.0.1:8091/api/v1/streaming")
        self.assertEqual(http_url("wss://s.example", "/api/v1/streaming/health"),
                         "https://s.example/api/v1/streaming/health")
        self.assertEqual(http_url("ws://127.0.0.1:1", *sse_path(("hashtag:local", "café"))),
                         "http://127.0.0.1:1/api/v1/streaming/hashtag/local?tag=caf%C3%A9")
        self.assertEqual(sse_path(("list", "42")), ("/api/v1/streaming/list", {"list": "42"}))
        self.assertEqual(sse_path(("user:notification",)), ("/api/v1/streaming/user/notification", {}))

    def test_timelines_per_stream(self) -> None:
        self.assertEqual(timeline_path(("public:remote",)), ("/api/v1/timelines/public", {"remote": "true"}))
        self.assertEqual(timeline_path(("hashtag:local", "a b")), ("/api/v1/timelines/tag/a%20b", {"local": "true"}))
        self.assertEqual(timeline_path(("list", "42")), ("/api/v1/timelines/list/42", {}))
        self.assertEqual(timeline_path(("user",)), ("/api/v1/timelines/home", {}))
        self.assertIsNone(timeline_path(("user:notification",)))
        self.assertIsNone(timeline_path(("direct",)))


class LinkTests(SynchronousTestCase):
    def test_mastodons_link_header(self) -> None:
        header = ('<https://m.example/api/v1/timelines/public?limit=40&max_id=7163058>; rel="next", '
                  '<https://m.example/api/v1/timelines/public?limit=40&min_id=7275607>; rel="prev"')
        self.assertEqual(parse_link(header), {
            "next": "https://m.example/api/v1/timelines/public?limit=40&max_id=7163058",
            "prev": "https://m.example/api/v1/timelines/public?limit=40&min_id=7275607"})

    def test_odd_link_headers(self) -> None:
        self.assertEqual(parse_link(None), {})
        self.assertEqual(parse_link(""), {})
        self.assertEqual(parse_link("<u1>;rel=next"), {"next": "u1"})
        self.assertEqual(parse_link('<u1>; title="x"; rel="prev next"'), {"prev": "u1", "next": "u1"})
        self.assertEqual(parse_link("garbage, <u2>; rel=\"NEXT\""), {"next": "u2"})

    def test_since_id_added_to_the_next_link(self) -> None:
        self.assertEqual(with_query("http://h/p?limit=40&max_id=5", {"since_id": "3"}),
                         "http://h/p?limit=40&max_id=5&since_id=3")

    @given(st.lists(st.text(st.sampled_from("0123456789"), min_size=1, max_size=20).map(lambda s: s.lstrip("0") or "0"),
                    min_size=1))
    def test_id_order_is_numeric_order_for_mastodon_ids(self, ids: list[str]) -> None:
        self.assertEqual(sorted(ids, key=id_key), sorted(ids, key=int))


class ShapeTests(SynchronousTestCase):
    def test_update_payload_decoded_once_and_reused(self) -> None:
        text = orjson.dumps(STATUS).decode()
        frame = orjson.dumps({"stream": ["hashtag", "Python"], "event": "update", "payload": text})
        s = read_ws(frame)
        assert s is not None
        self.assertEqual(orjson.loads(s.frame), {"event": "update", "stream": ["hashtag", "python"],
                                                 "payload": STATUS})
        self.assertTrue(s.frame.startswith(b'{"event":"update","stream":["hashtag","python"],"payload":{'))
        self.assertIn(text.encode(), s.frame)  # the payload's bytes as they came
        self.assertEqual((s.status_id, s.dedupe), (STATUS["id"], ("update", ("hashtag", "python"), STATUS["id"])))
        self.assertEqual(message_type(s.frame), "update")

    def test_delete_filters_changed_and_edits(self) -> None:
        d = read_ws(b'{"stream":["public"],"event":"delete","payload":"106692867363994015"}')
        assert d is not None
        self.assertEqual(orjson.loads(d.frame), {"event": "delete", "stream": ["public"],
                                                 "payload": "106692867363994015"})
        self.assertIsNone(d.dedupe)
        self.assertEqual(message_type(d.frame), "delete")
        f = read_ws(b'{"stream":["user"],"event":"filters_changed"}')
        assert f is not None
        self.assertEqual(orjson.loads(f.frame), {"event": "filters_changed", "stream": ["user"]})
        e1 = shape("status.update", ("public",), orjson.dumps({**STATUS, "edited_at": "2022-11-15T16:07:29Z"}))
        e2 = shape("status.update", ("public",), orjson.dumps({**STATUS, "edited_at": "2022-11-15T16:09:00Z"}))
        self.assertNotEqual(e1.dedupe, e2.dedupe)
        self.assertEqual(message_type(e1.frame), "status.update")

    def test_error_frames_and_garbage(self) -> None:
        self.assertIsNone(read_ws(b'{"error":"Unknown stream type","status":400}'))
        for bad in (b"nope", b"[1]", b'{"event":1,"stream":[]}', b'{"event":"update","stream":["p"],"payload":"{x"}'):
            with self.assertRaises(ShapeError):
                read_ws(bad)

    def test_journal_round_trip_gives_newest_ids(self) -> None:
        frames = [shape_status(("hashtag", "a"), orjson.dumps({"id": i}), i).frame for i in ("99", "100", "98")]
        frames.append(shape_status(("public",), orjson.dumps({"id": "5"}), "5").frame)
        frames.append(b"not json")
        frames.append(read_ws(b'{"stream":["public"],"event":"delete","payload":"7000"}').frame)  # type: ignore[union-attr]
        shaped = [s for s in map(read_shaped, frames) if s is not None]
        self.assertEqual(newest_ids(shaped), {("hashtag", "a"): "100", ("public",): "5"})


class RestHelperTests(SynchronousTestCase):
    def test_server_words(self) -> None:
        self.assertEqual(server_words(b'{"error":"The access token is invalid"}'), "The access token is invalid")
        self.assertEqual(server_words(b"<html>Bad Gateway</html>"), "<html>Bad Gateway</html>")

    def test_rate_budget_keeps_a_reserve(self) -> None:
        b = RateBudget()
        self.assertFalse(b.low())
        b.read(Headers({b"x-ratelimit-limit": [b"300"], b"x-ratelimit-remaining": [b"16"]}))
        self.assertFalse(b.low())
        b.read(Headers({b"x-ratelimit-remaining": [b"15"], b"x-ratelimit-reset": [b"2026-01-01T00:05:00Z"]}))
        self.assertTrue(b.low())
        self.assertEqual(b.to_dict(), {"limit": 300, "remaining": 15, "reset": "2026-01-01T00:05:00Z"})


class ParamRuleTests(SynchronousTestCase):
    def test_tags_and_list_ids_checked_in_the_store(self) -> None:
        from flamingo.domain.store_rules import validate_params
        from flamingo.errors import ValidationError

        validate_params("hashtag", {"tag": ["#Python", "café", "日本"]}, source="mastodon")
        validate_params("list", {"list": ["42"]}, source="mastodon")
        for params in ({"tag": ["two words"]}, {"tag": ["a/b"]}, {"list": ["1?x"]}, {"track": ["x"]}):
            with self.assertRaises(ValidationError) as caught:
                validate_params("hashtag", params, source="mastodon")
            self.assertIn(caught.exception.field, ("tag", "list", "track"))


class _ForwardTail:
    """A journal's tail as ``Journal.tail`` reads it: from ``last - n + 1`` forward, to the byte cap."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.asked: list[int] = []

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        self.asked.append(max_events)
        out, size = [], 0
        for e in self.events[-max_events:]:
            if size + len(e) > max_bytes:
                break
            out.append(e)
            size += len(e)
        return out


class ResumeTests(SynchronousTestCase):
    def source(self, journal: _ForwardTail, **wader: int) -> object:
        from twisted.internet.task import Clock

        from flamingo.config import from_mapping
        from flamingo.sources.mastodon import MastodonSource
        from tests.support.fakes import NullStats

        config = from_mapping({"source": "mastodon", "stream": "hashtag", "api": {"url": "http://127.0.0.1:9"},
                               "bearer_token": "t", "wader": wader}, environ={})
        clock = Clock()
        src = MastodonSource(config, clock, clock, NullStats(), journal)  # type: ignore[arg-type]
        self.addCleanup(src.close_idle)
        return src

    def test_the_newest_ids_even_when_the_tail_hits_its_byte_cap(self) -> None:
        from flamingo.sources import mastodon

        big = b"x" * 20_000
        events = [shape_status(("hashtag", "a" if i % 2 else "b"),
                               orjson.dumps({"id": str(10_000 + i), "pad": big.decode()}), str(10_000 + i)).frame
                  for i in range(5000)]
        journal = _ForwardTail(events)
        self.patch(mastodon, "TAIL_BYTES", 10 << 20)  # 500 of these events at most
        src = self.source(journal, max_message_bytes=65536)
        src.resume()  # type: ignore[attr-defined]
        self.assertEqual(src.newest, {("hashtag", "a"): "14999", ("hashtag", "b"): "14998"})  # type: ignore[attr-defined]
        self.assertGreater(len(journal.asked), 1)
        self.assertIn(("update", ("hashtag", "a"), "14999"), src.seen)  # type: ignore[attr-defined]


class _Refusing:
    """A source whose discovery fails at once (no request made)."""

    forgot = 0

    def prepare(self):
        from twisted.internet import defer

        from flamingo.sources.mastodon_rest import RestError
        from flamingo.stream.source import Retry

        return defer.fail(RestError(Retry("network", "no such host")))

    def forget_discovery(self) -> None:
        self.forgot += 1


class PrepareFailsAtOnceTests(SynchronousTestCase):
    def test_a_refusal_before_any_request_is_reported_not_raised(self) -> None:
        from types import SimpleNamespace

        from flamingo.sources.mastodon import MastodonLink
        from flamingo.stream.endpoints import StreamRequest

        source = _Refusing()
        refused: list[object] = []
        events = SimpleNamespace(refused=lambda link, verdict: refused.append(verdict))
        request = StreamRequest("GET", "https://example.invalid/", None, (), "GET /api/v1/streaming")
        link = MastodonLink(source, request, [("public",)], events)
        self.assertIsNone(link.step)
        self.assertEqual(source.forgot, 1)
        self.assertEqual([v.message for v in refused], ["no such host"])

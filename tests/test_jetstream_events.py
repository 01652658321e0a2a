"""Jetstream's pure parts: event heads and types, params, the resume window, frame decoding."""

from __future__ import annotations

from typing import Any

import orjson
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from flamingo.config import from_mapping
from flamingo.dispatch.routing import Routes
from flamingo.domain.matching import TermMatcher
from flamingo.domain.store_rules import validate_params
from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError
from flamingo.sources.jetstream import DICTIONARY_ID, JetstreamSource, dictionary
from flamingo.sources.jetstream_cursor import ResumeWindow
from flamingo.sources.jetstream_events import EventHead, check_params, event_type, head
from flamingo.stream.messages import message_type
from flamingo.stream.source import Retry
from flamingo.stream.websocket import EndNotice, FrameError

DID = "did:plc:eygmaihciaxprqvxpfvl6flk"


def commit(t: int, rkey: str = "3l3qo2vuowo2b", collection: str = "app.bsky.feed.post",
           record: dict[str, Any] | None = None, did: str = DID) -> bytes:
    """An event as Jetstream's Go encoder writes it (field order of its structs)."""
    rec = record if record is not None else {"$type": collection, "createdAt": "2024-09-09T19:46:02.102Z",
                                             "text": "hello #Python world", "langs": ["en"]}
    return orjson.dumps({"did": did, "time_us": t, "kind": "commit",
                         "commit": {"rev": "3l3qo2vutsw2b", "operation": "create",
                                    "collection": collection, "rkey": rkey, "record": rec,
                                    "cid": "bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi"}})


def identity(t: int) -> bytes:
    return orjson.dumps({"did": DID, "time_us": t, "kind": "identity",
                         "identity": {"did": DID, "handle": "alice.bsky.social", "seq": 1,
                                      "time": "2024-09-09T19:46:02.102Z"}})


class Stats:
    def __init__(self) -> None:
        self.dups = 0
        self.errors: list[str] = []

    def duplicates(self, n: int) -> None:
        self.dups += n

    def parse_error(self, kind: str, sample: bytes, n: int) -> None:
        self.errors.append(kind)


class Tail:
    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.asked: list[int] = []

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        self.asked.append(max_events)
        return self.frames[-max_events:]


def source(journal: Any = None, **jetstream: Any) -> JetstreamSource:
    config = from_mapping({"source": "jetstream", "api": {"url": "ws://127.0.0.1:1"},
                           "jetstream": jetstream, "wader": {"dedupe_window": 100}}, environ={})
    return JetstreamSource(config, task.Clock(), task.Clock(), Stats(), journal)


class HeadTests(SynchronousTestCase):
    def test_commit_head_without_parsing(self) -> None:
        h = head(commit(1725911162329308))
        self.assertEqual(h, EventHead(DID, 1725911162329308, "commit", "app.bsky.feed.post", "3l3qo2vuowo2b"))
        self.assertEqual(h.type if h else None, "app.bsky.feed.post")

    def test_types(self) -> None:
        self.assertEqual(message_type(commit(1, collection="app.bsky.feed.like")), "app.bsky.feed.like")
        self.assertEqual(message_type(identity(2)), "identity")
        account = orjson.dumps({"did": DID, "time_us": 3, "kind": "account",
                                "account": {"active": False, "status": "deleted"}})
        self.assertEqual(message_type(account), "account")
        self.assertEqual(event_type(b'{"did":"x"}'), "unknown")
        self.assertEqual(message_type(b'{"did": not json'), "unknown")

    def test_other_field_order_falls_back_to_parsing(self) -> None:
        raw = orjson.dumps({"kind": "commit", "time_us": 5, "did": DID,
                            "commit": {"collection": "app.bsky.graph.follow", "rkey": "k"}})
        self.assertEqual(head(raw), EventHead(DID, 5, "commit", "app.bsky.graph.follow", "k"))

    @given(st.integers(0, 2**62), st.text(min_size=1, max_size=40), st.text(max_size=20),
           st.sampled_from(["app.bsky.feed.post", "app.bsky.feed.like", "blue.flashes.x"]))
    def test_fast_path_agrees_with_the_parse(self, t: int, did: str, rkey: str, coll: str) -> None:
        raw = commit(t, rkey=rkey, collection=coll, did=did)
        obj = orjson.loads(raw)
        expected = EventHead(obj["did"], t, "commit", coll, rkey)
        self.assertEqual(head(raw), expected)


class ParamsTests(SynchronousTestCase):
    def test_valid(self) -> None:
        check_params({"wantedCollections": ["app.bsky.feed.post", "app.bsky.*"],
                      "wantedDids": [DID, "did:web:example.com"]})
        validate_params("subscribe", {"wantedCollections": ["app.bsky.feed.like"]}, "jetstream")

    def test_refused_with_the_param_named(self) -> None:
        for params, field in (({"wantedCollections": ["not an nsid"]}, "wantedCollections"),
                              ({"wantedCollections": ["app.bsky.fo*"]}, "wantedCollections"),
                              ({"wantedCollections": [f"com.example.c{i}" for i in range(101)]},
                               "wantedCollections"),
                              ({"wantedDids": ["did:key:zabc"]}, "wantedDids"),
                              ({"wantedDids": [f"did:web:h{i}.example" for i in range(10_001)]},
                               "wantedDids"),
                              ({"track": ["x"]}, "track")):
            with self.assertRaises(ValidationError) as e:
                validate_params("subscribe", params, "jetstream")
            self.assertEqual(e.exception.field, field)


class RoutingTests(SynchronousTestCase):
    def routed(self, frame: bytes, terms: str) -> bool:
        routes = Routes([frame], [message_type(frame)], lambda f: TermMatcher(f))
        sub = Subscription(name="s", filter=(terms,))
        return routes.values_for(sub) == [frame]

    def test_filters_match_text_tags_mentions_links(self) -> None:
        rec = {"$type": "app.bsky.feed.post", "text": "Release day! see link",
               "facets": [{"index": {"byteStart": 0, "byteEnd": 3},
                           "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Twisted"}]},
                          {"features": [{"$type": "app.bsky.richtext.facet#mention",
                                         "did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}]},
                          {"features": [{"$type": "app.bsky.richtext.facet#link",
                                         "uri": "https://example.com/flamingo"}]}]}
        post = commit(1, record=rec)
        self.assertTrue(self.routed(post, "release"))
        self.assertTrue(self.routed(post, "#twisted"))
        self.assertTrue(self.routed(post, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"))
        self.assertTrue(self.routed(post, "example.com/flamingo"))
        self.assertFalse(self.routed(post, "python"))
        like = commit(2, collection="app.bsky.feed.like", record={"text": "release"})
        self.assertFalse(self.routed(like, "release"))  # only posts have text to match


class SubscriptionTypesTests(SynchronousTestCase):
    def test_collection_nsids_are_types(self) -> None:
        sub = Subscription.create("bsky", types=["app.bsky.feed.post", "identity"])
        self.assertEqual(sub.types, ("app.bsky.feed.post", "identity"))
        frames = [commit(1), commit(2, collection="app.bsky.feed.like"), identity(3)]
        routes = Routes(frames, [message_type(f) for f in frames], lambda f: TermMatcher(f))
        self.assertEqual(routes.values_for(sub), [frames[0], frames[2]])
        with self.assertRaises(ValidationError):
            Subscription.create("bad", types=['x"y'])


class WindowTests(SynchronousTestCase):
    def test_cursor_rewinds_from_the_last(self) -> None:
        w = ResumeWindow(size=10)
        self.assertIsNone(w.cursor(5_000_000))
        w.seed([commit(10_000_000), commit(12_000_000, rkey="b")])
        self.assertEqual(w.cursor(5_000_000), 7_000_000)

    def test_repeats_by_key_even_at_the_same_time(self) -> None:
        w = ResumeWindow(size=10)
        w.seed([commit(90, rkey="first"), commit(100, rkey="a")])
        w.cursor(50)
        w.opening()
        self.assertTrue(w.is_repeat(head(commit(100, rkey="a"))))  # type: ignore[arg-type]
        self.assertFalse(w.is_repeat(head(commit(100, rkey="b"))))  # type: ignore[arg-type]
        self.assertFalse(w.is_repeat(head(commit(95, rkey="c"))))  # type: ignore[arg-type]

    def test_a_replay_from_before_the_first_event_is_not_delivered(self) -> None:
        w = ResumeWindow(size=10)
        w.cursor(50)
        w.opening()  # the first connection: live, no cursor
        w.handed_on(head(commit(100, rkey="first")))  # type: ignore[arg-type]
        self.assertEqual(w.cursor(50), 50)
        w.opening()
        self.assertTrue(w.is_repeat(head(commit(80, rkey="before"))))  # type: ignore[arg-type]
        self.assertFalse(w.is_repeat(head(commit(101, rkey="after"))))  # type: ignore[arg-type]

    def test_forgotten_and_before_the_resume_point_is_a_repeat(self) -> None:
        w = ResumeWindow(size=2)
        w.seed([commit(t, rkey=str(t)) for t in (1, 2, 3, 4)])
        self.assertEqual(w.floor, 2)
        w.cursor(10)
        w.opening()
        self.assertTrue(w.is_repeat(head(commit(1, rkey="1"))))  # type: ignore[arg-type]
        self.assertTrue(w.is_repeat(head(commit(4, rkey="4"))))  # type: ignore[arg-type]
        self.assertFalse(w.is_repeat(head(commit(5, rkey="5"))))  # type: ignore[arg-type]


class SourceTests(SynchronousTestCase):
    def test_dictionary_is_jetstreams(self) -> None:
        data = dictionary()
        self.assertEqual(len(data), 112_640)
        self.assertEqual(int.from_bytes(data[4:8], "little"), DICTIONARY_ID)
        self.assertEqual(zstandard.ZstdCompressionDict(data).dict_id(), DICTIONARY_ID)

    def test_request(self) -> None:
        s = source()
        r = s.request({"wantedCollections": ["app.bsky.feed.post", "app.bsky.graph.*"], "wantedDids": [DID]})
        self.assertEqual(r.url, "ws://127.0.0.1:1/subscribe?wantedCollections=app.bsky.feed.post"
                                "&wantedCollections=app.bsky.graph.%2A&wantedDids=did%3Aplc%3Aeygmaihciaxprqvxpfvl6flk"
                                "&compress=true")
        self.assertEqual(r.request_line, "/subscribe?wantedCollections=app.bsky.feed.post"
                                         f"&wantedCollections=app.bsky.graph.*&wantedDids={DID}&compress=true")
        self.assertEqual(source(compress=False).request({}).url, "ws://127.0.0.1:1/subscribe")

    def test_resume_from_the_journal(self) -> None:
        journal = Tail([b"not jetstream", commit(5_000_000), commit(9_000_000, rkey="x")])
        s = source(journal, rewind=2)
        self.assertEqual(journal.asked, [])  # the journal opens after the source is built
        self.assertIn("cursor=7000000", s.request({}).url)
        self.assertEqual(journal.asked, [100])
        self.assertEqual(s.journaled, 9_000_000)
        self.assertIn("cursor=7000000", s.request({}).url)  # read once
        s.window.opening()  # what open() does when it connects with that request
        self.assertEqual(s.cursor_status()["time_us"], 9_000_000)
        # the replay from 7 s: the journaled event is dropped, the new one kept
        self.assertIsNone(s.decode(commit(9_000_000, rkey="x"), False))
        self.assertEqual(s.decode(commit(9_000_000, rkey="y"), False), commit(9_000_000, rkey="y"))
        self.assertEqual(s.stats.dups, 1)  # type: ignore[attr-defined]
        # events older than anything the journal's tail holds were journaled before it
        self.assertIsNone(s.decode(commit(4_000_000, rkey="old"), False))

    def test_decode_compressed(self) -> None:
        s = source()
        compressor = zstandard.ZstdCompressor(dict_data=zstandard.ZstdCompressionDict(dictionary()))
        raw = commit(1)
        self.assertEqual(s.decode(compressor.compress(raw), True), raw)
        self.assertEqual(s.decode(raw, False), None)  # the same event again: a repeat
        with self.assertRaises(FrameError):
            s.decode(b"\x28\xb5\x2f\xfdgarbage", True)

    def test_consumer_too_slow_is_a_transient_end(self) -> None:
        s = source(compress=False)
        with self.assertRaises(EndNotice) as e:
            s.decode(b'{"$type":"error","error":"ConsumerTooSlow","message":"reconnect with cursor=5"}', False)
        self.assertEqual(e.exception.verdict, Retry("dropped", "ConsumerTooSlow: reconnect with cursor=5"))

    def test_apply_params_needs_an_open_socket(self) -> None:
        self.assertFalse(source().apply_params(object(), {}))  # type: ignore[arg-type]

    @given(st.lists(st.tuples(st.integers(1, 10**16), st.text(max_size=300)), min_size=1, max_size=20),
           st.booleans())
    def test_any_events_decode_to_themselves_once(self, items: list[tuple[int, str]], binary: bool) -> None:
        s = source()
        compressor = zstandard.ZstdCompressor(dict_data=zstandard.ZstdCompressionDict(dictionary()))
        events = [commit(t, rkey=f"k{i}", record={"text": text}) for i, (t, text) in enumerate(items)]
        out = [s.decode(compressor.compress(e), binary) for e in events]
        self.assertEqual(out, events)
        again = [s.decode(compressor.compress(e), binary) for e in events]
        self.assertEqual(again, [None] * len(events))

    @given(st.binary(max_size=200))
    def test_garbage_never_crashes(self, data: bytes) -> None:
        s = source()
        try:
            out = s.decode(data, True)
        except (FrameError, EndNotice):
            return
        self.assertIsInstance(out, (bytes, type(None)))

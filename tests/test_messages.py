"""message_type: the shapes of STREAMING-API.md, and never an exception."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch.stats import Stats
from flamingo.stream.framing import FrameParser
from flamingo.stream.messages import message_type, parse_limit

TWEET = orjson.dumps({"created_at": "Wed Aug 27 13:08:45 +0000 2008", "id": 1, "id_str": "1",
                      "text": "hello\nworld", "user": {"id": 2}, "entities": {}})

SHAPES = {
    b'{"delete":{"status":{"id":1,"id_str":"1","user_id":3,"user_id_str":"3"},"timestamp_ms":"1"}}': "delete",
    b'{"scrub_geo":{"user_id":1,"user_id_str":"1","up_to_status_id":2,"up_to_status_id_str":"2"}}': "scrub_geo",
    b'{"limit":{"track":1234,"timestamp_ms":"1"}}': "limit",
    b'{"status_withheld":{"id":1,"user_id":2,"withheld_in_countries":["DE"]}}': "status_withheld",
    b'{"user_withheld":{"id":1,"withheld_in_countries":["DE"]}}': "user_withheld",
    b'{"disconnect":{"code":4,"stream_name":"x","reason":"stall"}}': "disconnect",
    b'{"warning":{"code":"FALLING_BEHIND","message":"m","percent_full":60}}': "warning",
    b'{"friends":[1,2,3]}': "friends",
    b' {"limit" : {"track":1}} ': "limit",
    TWEET: "tweet",
    b'{"id":1,"text":"x","created_at":"..."}': "tweet",
    b'{"id":1,"user":{"id":2}}': "tweet",
    b'{"a":1,"b":2}': "unknown",
    b'{"a b":1}': "unknown",
    b"Exceeded connection limit for user": "invalid",
    b"": "invalid",
    b"[1,2]": "invalid",
    b'{"created_at":"x"': "invalid",
    b'{"not json': "invalid",
    b'"text"': "invalid",
    b"\xff\xfe": "invalid",
}


class MessageTypeTests(unittest.SynchronousTestCase):
    def test_shapes(self):
        for raw, expected in SHAPES.items():
            self.assertEqual(message_type(raw), expected, raw)

    def test_parse_limit(self):
        self.assertEqual(parse_limit(b'{"limit":{"track":1234,"timestamp_ms":"1"}}'), 1234)
        self.assertIsNone(parse_limit(b'{"limit":{}}'))
        self.assertIsNone(parse_limit(b"nope"))
        self.assertIsNone(parse_limit(b'{"limit":{"track":true}}'))

    @given(st.binary(max_size=200))
    def test_never_raises_on_bytes(self, raw):
        self.assertIsInstance(message_type(raw), str)

    @given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=10),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                        max_leaves=10))
    def test_any_json(self, value):
        t = message_type(orjson.dumps(value))
        if isinstance(value, dict) and len(value) == 1:
            key = next(iter(value))
            self.assertIn(t, (key, "unknown"))
        elif not isinstance(value, dict):
            self.assertEqual(t, "invalid")


class StrayLineTests(unittest.SynchronousTestCase):
    """A stray non-JSON line from the server: framed as a message, typed invalid, counted."""

    def test_stray_line_is_typed_invalid_and_counted(self):
        frames = FrameParser().feed(TWEET + b'\r\n{"not json\r\n' + TWEET + b"\r\n")
        self.assertEqual(frames, [TWEET, b'{"not json', TWEET])  # kept: it goes to the event log
        types = [message_type(f) for f in frames]
        self.assertEqual(types, ["tweet", "invalid", "tweet"])
        stats = Stats(Clock())
        for i in range(100):  # even with the type-name cap full, invalid keeps its name
            stats.events({f"made_up_{i}": 1}, 1, 10)
        stats.events(Counter(types), len(frames), sum(map(len, frames)))
        self.assertEqual(stats.snapshot()["events"]["by_type"]["invalid"], 1)

"""The overlap dedupe is bounded by bytes as well as entries, whatever upstream sends."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.overlap import RecentIds, message_id


def scrub_geo(i: int, pad: int) -> bytes:
    return orjson.dumps({"scrub_geo": {"user_id": i, "up_to_status_id": i, "pad": "x" * pad}})


class BoundsTests(SynchronousTestCase):
    def test_large_events_without_ids_are_kept_as_small_keys(self):
        ids = RecentIds(size=50_000)
        for i in range(200):
            ids.add(message_id(scrub_geo(i, 100_000)))  # 20 MB of events
        self.assertEqual(len(ids), 200)
        self.assertLess(ids.nbytes, 200 * 400)
        self.assertIn(message_id(scrub_geo(7, 100_000)), ids)  # still recognised
        self.assertNotIn(message_id(scrub_geo(7, 99_999)), ids)

    def test_long_and_odd_ids_are_bounded_and_hashable(self):
        for frame in (orjson.dumps({"id": "9" * 1_000_000, "text": "t"}),
                      orjson.dumps({"id": [1, 2, {"a": "b" * 1000}], "text": "t"}),
                      orjson.dumps({"id": {"nested": True}}),
                      orjson.dumps({"data": {"id": ["x"] * 10_000}}),
                      orjson.dumps({"delete": {"status": {"id": ["y"] * 10_000}}})):
            key = message_id(frame)
            hash(key)
            self.assertLess(len(repr(key)), 200)
            self.assertEqual(message_id(frame), key)  # the same bytes, the same key

    def test_plain_ids_stay_as_they_are(self):
        self.assertEqual(message_id(b'{"id":12,"id_str":"12","text":"t"}'), "12")
        self.assertEqual(message_id(b'{"id":12,"text":"t"}'), 12)
        self.assertEqual(message_id(b'{"delete":{"status":{"id":5,"id_str":"5"}}}'), ("delete", "5"))
        self.assertIsNone(message_id(b'{"limit":{"track":3}}'))
        self.assertIsNone(message_id(b'{"not json'))

    def test_the_byte_bound_forgets_the_oldest(self):
        ids = RecentIds(size=1_000_000, max_bytes=10_000)
        for i in range(10_000):
            ids.add(("k", i))
        self.assertLessEqual(ids.nbytes, 10_000)
        self.assertIn(("k", 9_999), ids)
        self.assertNotIn(("k", 0), ids)
        self.assertGreater(len(ids), 10)

    @given(st.lists(st.one_of(st.integers(), st.text(max_size=200), st.binary(max_size=300)),
                    max_size=300),
           st.integers(1, 100), st.integers(0, 20_000))
    def test_bounds_hold_for_any_keys(self, keys, size, max_bytes):
        ids = RecentIds(size=size, max_bytes=max_bytes)
        for k in keys:
            ids.add(k)
            self.assertLessEqual(len(ids), size)
            self.assertLessEqual(ids.nbytes, max_bytes)

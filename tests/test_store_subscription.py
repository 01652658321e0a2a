"""Subscription validation and its Redis hash encoding (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError


class SubscriptionTests(unittest.SynchronousTestCase):
    def test_defaults(self):
        s = Subscription.create("events")
        self.assertEqual((s.format, s.types, s.filter, s.max_length), ("raw", None, (), None))
        self.assertEqual(s.queue_key("flamingo"), "flamingo:queue:events")
        self.assertEqual(Subscription.create("jobs", format="resque").queue_key("x"), "resque:queue:jobs")
        self.assertTrue(s.wants_type("anything"))

    def test_errors_name_the_field(self):
        for kwargs, field in [({"format": "xml"}, "format"), ({"types": ["no-dash!"]}, "types"),
                              ({"max_length": 0}, "max_length"), ({"max_length": "x"}, "max_length"),
                              ({"filter": ["x" * 61]}, "filter"), ({"filter": [""]}, "filter"),
                              ({"bogus": 1}, "bogus"), ({"types": 3}, "types")]:
            with self.assertRaises(ValidationError) as cm:
                Subscription.create("ok", **kwargs)
            self.assertEqual(cm.exception.field, field, kwargs)
        for bad in ["", "a b", "x" * 65, "é", None]:
            with self.assertRaises(ValidationError) as cm:
                Subscription.create(bad)
            self.assertEqual(cm.exception.field, "name")
            self.assertIn("{1,64}", cm.exception.limit)  # REST's 422 names the limit
        with self.assertRaises(ValidationError) as cm:
            Subscription.create("ok", format="xml")
        self.assertEqual(cm.exception.limit, "format: raw|envelope|resque|stream")

    def test_types_and_filter_normalised(self):
        s = Subscription.create("q", types="tweet, delete", filter=["cats", "cats", "dogs"])
        self.assertEqual(s.types, ("delete", "tweet"))
        self.assertEqual(s.filter, ("cats", "dogs"))
        self.assertFalse(s.wants_type("limit"))
        self.assertIsNone(Subscription.create("q", types=[]).types)

    def test_hash_by_hand(self):
        s = Subscription.from_hash("q", {b"format": b"envelope", b"types": b"tweet", b"max_length": b"5"})
        self.assertEqual(s, Subscription("q", format="envelope", types=("tweet",), max_length=5))

    @given(name=st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
           fmt=st.sampled_from(["raw", "envelope", "resque"]),
           types=st.none() | st.lists(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), max_size=5),
           terms=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                                  max_size=20).map(str.strip).filter(lambda t: t and "," not in t),
                          max_size=5),
           max_length=st.none() | st.integers(1, 10**9))
    def test_hash_roundtrip(self, name, fmt, types, terms, max_length):
        s = Subscription.create(name, format=fmt, types=types, filter=terms, max_length=max_length)
        self.assertEqual(Subscription.from_hash(name, s.to_hash()), s)
        self.assertEqual(Subscription.create(name, **{k: v for k, v in s.to_dict().items() if k != "name"}), s)

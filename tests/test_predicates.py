"""Stream parameter validation and tweet matching (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.domain.matching import Predicates, TermMatcher
from flamingo.domain.predicates import Problem, validate_params


def statuses(problems: list[Problem]) -> set[int]:
    return {p.status for p in problems}


def tweet(text="", user_id=1, **extra):
    t = {"id": 10, "text": text, "user": {"id": user_id, "screen_name": "someone"},
         "entities": {"hashtags": [], "user_mentions": [], "urls": []}, "lang": "en"}
    t.update(extra)
    return t


class ValidateTests(SynchronousTestCase):
    def test_filter_needs_a_predicate(self):
        self.assertEqual(statuses(validate_params("filter", {})), {406})
        self.assertEqual(statuses(validate_params("filter", {"language": ["en"]})), {406})
        self.assertEqual(validate_params("filter", {"track": ["austin"]}), [])
        self.assertEqual(validate_params("sample", {}), [])

    def test_track_phrase_bytes_and_count(self):
        self.assertEqual(validate_params("filter", {"track": ["é" * 30]}), [])  # 60 bytes
        self.assertEqual(statuses(validate_params("filter", {"track": ["é" * 30 + "x"]})), {406})
        self.assertEqual(statuses(validate_params("filter", {"track": [","]})), {406})
        many = [",".join(f"t{i}" for i in range(400))]
        self.assertEqual(validate_params("filter", {"track": many}), [])
        p = validate_params("filter", {"track": [many[0] + ",x"]})
        self.assertEqual((p[0].field, p[0].status, p[0].limit), ("track", 413, "at most 400 phrases"))

    def test_follow(self):
        self.assertEqual(validate_params("filter", {"follow": ["1,2", "3"]}), [])
        self.assertEqual(statuses(validate_params("filter", {"follow": ["12a"]})), {406})
        self.assertEqual(statuses(validate_params("filter", {"follow": ["-1"]})), {406})
        ids = [str(i) for i in range(5001)]
        self.assertEqual(statuses(validate_params("filter", {"follow": ids})), {413})
        self.assertEqual(validate_params("filter", {"follow": ids[:5000]}), [])

    def test_locations(self):
        ok = {"locations": ["-122.75,36.8,-121.75,37.8"]}
        self.assertEqual(validate_params("filter", ok), [])
        for bad in ("-122.75,36.8,-121.75", "a,b,c,d", "-121.75,36.8,-122.75,37.8",
                    "0,0,0.05,1", "-181,0,1,1", "0,-91,1,1", "nan,0,1,1", "0,0,1,0"):
            self.assertEqual(statuses(validate_params("filter", {"locations": [bad]})), {406}, bad)
        self.assertEqual(validate_params("filter", {"locations": ["-180,-90,180,90"]}), [])
        boxes = ",".join(["0,0,1,1"] * 26)
        self.assertEqual(statuses(validate_params("filter", {"locations": [boxes]})), {413})

    def test_other_params(self):
        base = {"track": ["a"]}
        self.assertEqual(validate_params("filter", {**base, "language": ["en,pt-BR"]}), [])
        self.assertEqual(statuses(validate_params("filter", {**base, "language": ["english!"]})), {406})
        self.assertEqual(statuses(validate_params("filter", {**base, "filter_level": ["high"]})), {406})
        self.assertEqual(validate_params("filter", {**base, "filter_level": ["medium"],
                                                    "stall_warnings": ["true"], "delimited": ["length"]}), [])
        self.assertEqual(statuses(validate_params("filter", {**base, "delimited": ["yes"]})), {406})
        self.assertEqual(statuses(validate_params("filter", {**base, "count": ["5"]})), {416})
        self.assertEqual(validate_params("filter", {**base, "count": ["-5"]}, allow_count=True), [])
        self.assertEqual(statuses(validate_params("filter", {**base, "count": ["150001"]}, allow_count=True)),
                         {406})
        self.assertEqual(statuses(validate_params("filter", {**base, "bogus": ["1"]})), {406})
        self.assertEqual(statuses(validate_params("sample", {"track": ["a"]})), {406})
        self.assertEqual(statuses(validate_params("nope", {})), {404})

    @given(st.lists(st.text(min_size=1, max_size=80).filter(lambda s: "," not in s and s.strip()), max_size=500))
    @settings(max_examples=60, deadline=None)
    def test_track_rules_property(self, phrases):
        problems = validate_params("filter", {"track": phrases})
        stripped = [p.strip() for p in phrases]
        too_long = any(len(p.encode()) > 60 for p in stripped)
        self.assertEqual(any(p.status == 406 for p in problems), too_long or not stripped)
        self.assertEqual(any(p.status == 413 for p in problems), len(stripped) > 400)


class MatchTests(SynchronousTestCase):
    def test_track_or_and_case_insensitive(self):
        m = TermMatcher(["Austin TX,python"])
        self.assertTrue(m.matches(tweet("going to AUSTIN, tx tomorrow")))
        self.assertFalse(m.matches(tweet("going to austin")))
        self.assertTrue(m.matches(tweet("I like Python.")))
        self.assertFalse(m.matches(tweet("pythonic")))
        self.assertFalse(m.matches({"delete": {}}))
        self.assertFalse(TermMatcher([]).matches(tweet("x")))

    def test_track_hashtags_mentions_urls_extended(self):
        m = TermMatcher(["sxsw", "bob", "example.com", "#rust", "longword"])
        self.assertTrue(m.matches(tweet("#SXSW now")))
        self.assertTrue(m.matches(tweet("x", entities={"hashtags": [{"text": "SXSW"}]})))
        self.assertTrue(m.matches(tweet("hi", entities={"user_mentions": [{"screen_name": "Bob"}]})))
        self.assertTrue(m.matches(tweet("see https://t.co/x",
                                        entities={"urls": [{"expanded_url": "https://www.Example.com/a"}]})))
        self.assertTrue(m.matches(tweet("love #Rust")))
        self.assertFalse(TermMatcher(["#rust"]).matches(tweet("love rust")))
        self.assertTrue(m.matches(tweet("short…", extended_tweet={"full_text": "short then a longword"})))
        self.assertTrue(m.matches(tweet("RT", retweeted_status=tweet("sxsw!"))))

    def test_follow_by_reply_retweet(self):
        p = Predicates.from_params({"follow": ["42"]})
        self.assertTrue(p.matches(tweet(user_id=42)))
        self.assertTrue(p.matches(tweet(in_reply_to_user_id=42)))
        self.assertTrue(p.matches(tweet(retweeted_status=tweet(user_id=42))))
        self.assertFalse(p.matches(tweet(user_id=43)))

    def test_locations_point_and_place(self):
        p = Predicates.from_params({"locations": ["-98,30,-97,31"]})
        self.assertTrue(p.matches(tweet(coordinates={"type": "Point", "coordinates": [-97.5, 30.5]})))
        self.assertFalse(p.matches(tweet(coordinates={"type": "Point", "coordinates": [30.5, -97.5]})))
        place = {"bounding_box": {"coordinates": [[[-97.2, 30.9], [-97.2, 31.5], [-96, 31.5], [-96, 30.9]]]}}
        self.assertTrue(p.matches(tweet(place=place)))
        far = {"bounding_box": {"coordinates": [[[0, 0], [0, 1], [1, 1], [1, 0]]]}}
        self.assertFalse(p.matches(tweet(place=far)))

    def test_language_and_filter_level(self):
        p = Predicates.from_params({"track": ["a"], "language": ["ja"], "filter_level": ["medium"]})
        self.assertFalse(p.matches(tweet("a", lang="ja", filter_level="low")))
        self.assertTrue(p.matches(tweet("a", lang="ja", filter_level="medium")))
        self.assertFalse(p.matches(tweet("a", lang="en", filter_level="medium")))
        self.assertTrue(Predicates.from_params({}).matches(tweet("anything")))

    @given(st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), min_size=1, max_size=6),
           st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), max_size=10))
    @settings(max_examples=100, deadline=None)
    def test_and_semantics_property(self, phrase_words, text_words):
        m = TermMatcher([" ".join(phrase_words)])
        text = " ".join(text_words).upper()
        self.assertEqual(m.matches(tweet(text)), set(phrase_words) <= set(text_words))

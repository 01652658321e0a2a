"""Stats with a Clock: rates over windows, coverage, the wader's records."""

from __future__ import annotations

import orjson
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch.stats import MAX_TYPE_NAMES, Stats


class StatsTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.stats = Stats(self.clock)

    def test_counts_and_rates(self):
        s = self.stats
        for _ in range(300):  # 5 minutes at 10 events/s, 100 bytes each
            s.events({"tweet": 9, "delete": 1}, 10, 1000)
            self.clock.advance(1)
        snap = s.snapshot()
        self.assertEqual(snap["events"]["by_type"], {"tweet": 2700, "delete": 300})
        self.assertEqual(snap["events"]["total"], 3000)
        for label in ("10s", "1m", "5m"):
            self.assertAlmostEqual(snap["rates"][label]["events_per_sec"], 10.0, delta=1.1)
            self.assertAlmostEqual(snap["rates"][label]["bytes_per_sec"], 1000.0, delta=110)
        self.clock.advance(20)  # silence: the 10 s window empties, the 5 min one barely moves
        snap = s.snapshot()
        self.assertEqual(snap["rates"]["10s"]["events_per_sec"], 0)
        self.assertGreater(snap["rates"]["5m"]["events_per_sec"], 8)
        self.assertEqual(snap["last_event_at"], 1299)
        orjson.dumps(snap)  # JSON-ready

    def test_long_silence_clears_the_ring(self):
        self.stats.events({"tweet": 5}, 5, 5)
        self.clock.advance(10_000)
        self.assertEqual(self.stats.rates()["5m"]["events_per_sec"], 0)

    def test_rate_early_divides_by_elapsed(self):
        self.clock.advance(2)
        self.stats.events({"tweet": 20}, 20, 20)
        self.assertAlmostEqual(self.stats.rates()["1m"]["events_per_sec"], 10.0, delta=0.01)

    def test_coverage_like_the_original(self):
        s = self.stats
        s.events({"tweet": 50}, 50, 1)
        s.connection_started("POST /1.1/statuses/filter.json")
        self.assertEqual(s.coverage(), 100.0)
        s.events({"tweet": 75}, 75, 1)
        s.limit_notice(25)
        self.assertEqual(s.coverage(), 75.0)
        snap = s.snapshot()
        self.assertEqual(snap["limit"], {"skipped": 25, "at": 1000, "coverage": 75.0})
        self.assertEqual(snap["connection"]["received_tweets"], 75)
        s.connection_started("again")  # a new connection starts over
        self.assertEqual(s.coverage(), 100.0)
        self.assertIsNone(s.snapshot()["limit"]["skipped"])
        self.assertEqual(s.snapshot()["connection"]["reconnects"], 1)

    def test_wader_records(self):
        s = self.stats
        s.connection_attempt("network")
        s.connection_attempt("network")
        s.connection_attempt("http")
        s.duplicates(3)
        s.parse_error("too_long", b"x" * 500)
        s.keepalive()
        s.disconnect_message(4, "stall")
        s.warning_message("FALLING_BEHIND", "m", 60)
        s.queue("q", length=5, trimmed=2, pushed=7)
        s.provide("journal", lambda: {"backlog": 4})
        s.provide("broken", lambda: 1 / 0)
        snap = s.snapshot()
        self.assertEqual(snap["connection"]["attempts_by_cause"], {"network": 2, "http": 1})
        self.assertEqual(snap["duplicates"], 3)
        self.assertEqual(snap["parse_errors"]["by_kind"], {"too_long": 1})
        self.assertEqual(len(snap["parse_errors"]["last"]["sample"]), 200)
        self.assertEqual(snap["connection"]["keepalives"], 1)
        self.assertEqual(snap["disconnects"][0]["code"], 4)
        self.assertEqual(snap["warnings"][0]["percent_full"], 60)
        self.assertEqual(snap["queues"], {"q": {"length": 5, "trimmed": 2, "pushed": 7}})
        self.assertEqual(snap["journal"], {"backlog": 4})
        self.assertIn("error", snap["broken"])


class TypeNameCapTests(unittest.SynchronousTestCase):
    """Type names come from upstream: their number is bounded, the rest count as ``other``."""

    def test_distinct_names_are_capped_and_the_rest_count_as_other(self):
        s = Stats(Clock())
        for i in range(1000):
            s.events({f"made_up_{i}": 2}, 2, 20)
        s.events({"tweet": 5, "delete": 1, "invalid": 1}, 7, 70)  # known types still get their name
        by_type = s.snapshot()["events"]["by_type"]
        self.assertLessEqual(len(by_type), MAX_TYPE_NAMES)
        self.assertEqual(sum(by_type.values()), 2007)
        self.assertEqual((by_type["tweet"], by_type["delete"], by_type["invalid"]), (5, 1, 1))
        self.assertGreater(by_type["other"], 0)
        self.assertEqual(by_type["made_up_0"], 2)  # the first names keep theirs

    def test_names_seen_before_the_cap_keep_counting(self):
        s = Stats(Clock())
        s.events({"scrub_geo": 1}, 1, 10)
        for i in range(200):
            s.events({f"x{i}": 1}, 1, 10)
        s.events({"scrub_geo": 4, "x0": 1}, 5, 50)
        by_type = s.by_type
        self.assertEqual((by_type["scrub_geo"], by_type["x0"]), (5, 2))
        self.assertLessEqual(len(by_type), MAX_TYPE_NAMES)


class BulkCountTests(unittest.SynchronousTestCase):
    """The wader reports floods in bulk: one call per turn, whatever the count."""

    def test_keepalives_and_parse_errors_in_bulk(self):
        s = Stats(Clock())
        s.keepalive(4_200_000)
        s.keepalive()
        s.parse_error("non_json", b"x", 100_000)
        s.parse_error("non_json", b"y")
        snap = s.snapshot()
        self.assertEqual(snap["connection"]["keepalives"], 4_200_001)
        self.assertEqual(snap["parse_errors"]["by_kind"], {"non_json": 100_001})
        self.assertEqual(snap["parse_errors"]["last"]["sample"], "y")

"""The benchmark's pure parts: percentiles, stamps, log counting, ratios, profile summaries.

Run with ``.venv/bin/python -m pytest -q bench/tests``. The measuring itself
is exercised by ``make bench QUICK=1``.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench import report
from bench.measure import QueueCounter, count_lines, percentile
from bench.profile import summarize
from bench.stamps import StampWriter, digest, read_stamps


class PercentileTests(SynchronousTestCase):
    def test_nearest_rank(self) -> None:
        values = list(range(1, 101))
        self.assertEqual(percentile(values, 50), 50)
        self.assertEqual(percentile(values, 99), 99)
        self.assertEqual(percentile(values, 100), 100)
        self.assertEqual(percentile([7.0], 99), 7.0)

    def test_empty_is_nan(self) -> None:
        v = percentile([], 50)
        self.assertNotEqual(v, v)


class StampTests(SynchronousTestCase):
    def test_round_trip_keeps_first_arrival(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "s.bin")
        w = StampWriter(path)
        w.add([digest(b"a"), digest(b"b")], 1.5)
        w.add([digest(b"a")], 9.0)  # a duplicate delivery arrives later
        w.close()
        stamps = read_stamps(path)
        self.assertEqual(stamps, {digest(b"a"): 1.5, digest(b"b"): 1.5})
        self.assertEqual(read_stamps(path, first=False)[digest(b"a")], 9.0)

    def test_truncated_record_ignored(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "s.bin")
        w = StampWriter(path)
        w.add([digest(b"x")], 2.0)
        w.close()
        with open(path, "ab") as f:
            f.write(b"\x01\x02\x03")  # a writer killed mid-record
        self.assertEqual(read_stamps(path), {digest(b"x"): 2.0})


class CountLinesTests(SynchronousTestCase):
    def test_event_files_only_no_symlinks_gzip_included(self) -> None:
        d = Path(tempfile.mkdtemp())
        (d / "event-1.log").write_bytes(b"{}\n{}\n")
        with gzip.open(d / "event-0.log.gz", "wb") as f:
            f.write(b"{}\n{}\n{}\n")
        (d / "event.log").symlink_to(d / "event-1.log")
        (d / "journal.state").write_bytes(b"1\n")
        self.assertEqual(count_lines(d), 5)


class FakePipe:
    def __init__(self, store: dict[str, int]) -> None:
        self.store, self.replies = store, []

    def llen(self, k: str) -> None:
        self.replies.append(self.store.get(k, 0))

    def unlink(self, k: str) -> None:
        self.replies.append(int(self.store.pop(k, 0) > 0))

    def execute(self) -> list[int]:
        return self.replies


class FakeRedis:
    def __init__(self) -> None:
        self.store: dict[str, int] = {}

    def pipeline(self, transaction: bool = True) -> FakePipe:
        assert transaction, "counting must be atomic with the drain"
        return FakePipe(self.store)


class QueueCounterTests(SynchronousTestCase):
    def test_drains_and_accumulates_slowest_queue(self) -> None:
        r = FakeRedis()
        c = QueueCounter(r, ["a", "b"])
        r.store.update(a=5, b=3)
        c.poll()
        r.store.update(a=1, b=4)
        c.poll()
        self.assertEqual(c.totals, {"a": 6, "b": 7})
        self.assertEqual(c.delivered(), 6)
        self.assertEqual(r.store, {})


def _results() -> dict:
    return {
        "limits": {"realistic": {"curl_events_per_s": 90_000.0, "mean_message_bytes": 3800.0,
                                 "redis_rpush_per_s": 100_000.0}},
        "baselines": {"realistic": {"events_per_s": 5_000.0}},
        "scenarios": {
            "1": {"title": "t", "size": "realistic", "gzip": False, "subscriptions": ["raw (raw)"],
                  "events_per_s": 30_000.0, "peak_rss_mb": 90.0, "cpu_s_per_million": 20.0,
                  "log_covers_redis": True},
            "2": {"title": "t", "size": "realistic", "gzip": False,
                  "subscriptions": ["raw (raw)", "env (envelope)", "jobs (resque)", "terms (raw, terms)"],
                  "events_per_s": 10_000.0, "peak_rss_mb": 250.0, "cpu_s_per_million": 90.0,
                  "log_covers_redis": True},
        },
        "latency": {"p50_ms": 4.0, "p99_ms": 60.0, "pause_peak_rss_mb": 150.0,
                    "catchup_peak_rss_mb": 230.0},
    }


class ReportTests(SynchronousTestCase):
    def test_ratios(self) -> None:
        rows = report.derive(_results())
        one, two = rows
        self.assertEqual(one["vs_redis_limit"], 0.3)
        self.assertEqual(one["vs_baseline"], 6.0)
        self.assertEqual(one["p99_ms"], 60.0)
        self.assertEqual(one["mb_per_s"], 114.0)
        # three queues get every event: the Redis limit per event is a third
        self.assertAlmostEqual(two["redis_limit_events_per_s"], 33_333.3)

    def test_targets_say_by_how_much(self) -> None:
        r = _results()
        t = {x["target"]: x for x in report.targets(r, report.derive(r))}
        s1 = t["scenario 1 ≥ 60,000 events/s"]
        self.assertFalse(s1["met"])
        self.assertEqual(s1["ratio"], 0.5)
        self.assertIn("short by 30,000.0 events/s (50% below)", s1["note"])
        self.assertTrue(t["scenario 1 ≥ 5× baseline"]["met"])
        p99 = t["p99 latency < 50 ms at 10,000 events/s"]
        self.assertFalse(p99["met"])
        self.assertIn("over by 10.0 ms", p99["note"])
        self.assertFalse(t["scenario 2 RSS < 200 MB"]["met"])
        backlog = t["RSS < 200 MB during a 10 s Redis pause and the catch-up"]
        self.assertEqual(backlog["value"], 230.0)  # the catch-up peak counts too
        self.assertFalse(backlog["met"])
        self.assertIsNone(t["scenario 3 ≥ 143,000 events/s"]["met"])
        self.assertIn("| 1. t | 30,000 |", report.table(report.derive(r)))


class SummarizeTests(SynchronousTestCase):
    def test_self_and_inclusive(self) -> None:
        collapsed = (
            "process 1;run (a/app.py:1);parse (x/framing.py:9) 30\n"
            "process 1;run (a/app.py:1);write (x/journal.py:3) 70\n"
        )
        text = summarize(collapsed)
        self.assertIn("100 samples", text)
        self.assertIn(" 70.0%  write (x/journal.py)", text)
        self.assertIn("100.0%  run (a/app.py)", text)


class SustainedAndStagesTests(SynchronousTestCase):
    def test_span_and_stages_per_event(self) -> None:
        from bench.measure import Window, stage_split
        from bench.run import _span, _stages_per_event

        self.assertEqual(stage_split({"journal": 1.0, "sink": 2.0}, {"journal": 1.5, "sink": 2.0, "new": 9.0}),
                         {"journal": 0.5, "sink": 0.0})
        ws = [Window(1000, 1.0, 0.04, {"journal": 0.005, "stream": 0.02}),
              Window(3000, 1.0, 0.12, {"journal": 0.025, "stream": 0.06})]
        self.assertEqual(_stages_per_event(ws), {"journal": 7.5, "stream": 20.0})
        span = _span(ws)
        self.assertEqual(span["events_per_s"], 2000.0)
        self.assertEqual(span["cpu_s_per_million"], 40.0)
        self.assertEqual(_stages_per_event([]), {})

    def test_sustained_target_and_pagecache_ratio(self) -> None:
        r = _results()
        r["limits"]["realistic"].update({"pagecache_mb_per_s": 600.0, "pagecache_events_per_s": 150_000.0,
                                         "pagecache_everysec_mb_per_s": 400.0,
                                         "pagecache_everysec_events_per_s": 100_000.0})
        sc = dict(r["scenarios"]["1"])
        sc.update({"title": "sustained", "first_window": {"events_per_s": 30_000.0, "cpu_s_per_million": 30.0},
                   "last_window": {"events_per_s": 24_000.0, "cpu_s_per_million": 40.0},
                   "last_vs_first": 0.8, "sustained_seconds": 60.0, "edge_seconds": 10})
        r["scenarios"]["5"] = sc
        rows = report.derive(r)
        self.assertEqual(rows[0]["vs_pagecache_limit"], 0.3)
        t = {x["target"]: x for x in report.targets(r, rows)}
        stable = t["scenario 5: last 10 s within 15% of the first"]
        self.assertFalse(stable["met"])
        r["limits"]["realistic"].update({"curl_mb_per_s": 342.0, "redis_payload_bytes": 3798})
        r["latency"] = None
        r["machine"] = {"cpu": "c", "cores": 2, "memory_gb": 1, "os": "o", "python": "p", "twisted": "t",
                        "redis": "r", "loadavg_at_start": [1.0, 1.0, 1.0]}
        r["rows"], r["targets"] = rows, report.targets(r, rows)
        text = report.render(r)
        self.assertIn("scenario 5 sustained 60 s: first 10 s 30,000 events/s", text)
        self.assertIn("with fdatasync every second 400 MB/s (100,000 events/s)", text)


class CeilingTests(SynchronousTestCase):
    def test_machine_and_reactor_ceilings(self) -> None:
        r = _results()
        r["machine"] = {"cores": 2}
        r["scenarios"]["1"]["stages_us_per_event"] = {"main_thread": 25.0, "other_threads": 5.0,
                                                      "redis_process": 6.0, "emulator_process": 9.0}
        one, two = report.derive(r)
        # 2 cores / (30 + 6 + 9 µs) = 44,444 events/s; 1 / 25 µs = 40,000
        self.assertEqual(one["machine_ceiling_events_per_s"], 44_444)
        self.assertEqual(one["reactor_ceiling_events_per_s"], 40_000)
        self.assertEqual(one["vs_machine_ceiling"], 0.675)
        self.assertEqual(one["vs_reactor_ceiling"], 0.75)
        self.assertIsNone(two["machine_ceiling_events_per_s"])  # not measured: no ceiling
        self.assertIn("| 0.68 (of 44,444) | 0.75 (of 40,000) |", report.table([one, two]))

    def test_probe_reads_other_processes(self) -> None:
        import os

        from bench.measure import StageProbe

        probe = StageProbe(os.getpid(), None, {"me": os.getpid(), "gone": 2**22 + 7})
        got = probe.read()
        self.assertIn("me_process", got)
        self.assertNotIn("gone_process", got)
        self.assertGreaterEqual(got["me_process"], got["main_thread"])


class LikeBaselineTests(SynchronousTestCase):
    def test_scenario2_against_both_baselines(self) -> None:
        r = _results()
        r["baselines"]["realistic+subs4"] = {"events_per_s": 2_500.0}
        r["scenarios"]["2"]["like_baseline"] = True
        one, two = report.derive(r)
        self.assertIsNone(one["vs_like_baseline"])
        self.assertEqual(two["vs_baseline"], 2.0)  # the single-queue ratio stays
        self.assertEqual(two["vs_like_baseline"], 4.0)
        self.assertIn("2.00 (5,000) one queue; 4.00 (2,500) like-for-like", report.table([one, two]))
        t = {x["target"]: x for x in report.targets(r, [one, two])}
        self.assertFalse(t["scenario 2 ≥ 5× baseline (one raw queue)"]["met"])
        self.assertEqual(t["scenario 2 ≥ 5× like-for-like baseline (the same subscriptions, naive)"]["ratio"], 0.8)
        self.assertIn("scenario 1 ≥ 5× baseline", t)

    def test_naive_filter_and_type(self) -> None:
        from bench.baseline import naive_matches, naive_type

        self.assertEqual(naive_type({"delete": {}}), "delete")
        self.assertEqual(naive_type({"text": "x", "user": {}}), "tweet")
        self.assertTrue(naive_matches({"text": "I LOVE tea"}))
        self.assertFalse(naive_matches({"text": "lovely pythons", "user": {"description": "coffee"}}))
        self.assertTrue(naive_matches({"text": "RT", "retweeted_status": {"extended_tweet": {"full_text": "coffee!"}}}))


class HotpathMicroTests(SynchronousTestCase):
    def test_measures_every_hot_spot(self) -> None:
        from bench.hotpath_micro import corpus, measure

        got = measure(corpus(40), repeat=1)
        self.assertEqual(set(got), {"frame_plain_us", "frame_gzip_us", "match_plain_words_us",
                                    "match_token_set_us", "route_scenario2_us"})
        self.assertTrue(all(v >= 0 for v in got.values()))


class ResultsFileTests(SynchronousTestCase):
    """Only a full run with the defaults replaces the committed reference (latest.json)."""

    DEFAULTS = dict(quick=False, scenario=None, no_latency=False, only_latency=False, no_baseline=False,
                    set=[], latency_rate=None, pin=False, daemon_dir=None)

    def test_a_full_run_is_the_reference(self) -> None:
        import argparse

        from bench.__main__ import is_full_run
        self.assertTrue(is_full_run(argparse.Namespace(**self.DEFAULTS)))

    def test_any_option_that_changes_what_is_measured_is_not(self) -> None:
        import argparse

        from bench.__main__ import is_full_run
        for key, value in [("quick", True), ("scenario", ["1"]), ("no_latency", True), ("only_latency", True),
                           ("no_baseline", True), ("set", ["journal.fsync=no"]), ("latency_rate", 5000.0),
                           ("pin", True), ("daemon_dir", "/dev/shm")]:
            with self.subTest(key=key):
                self.assertFalse(is_full_run(argparse.Namespace(**{**self.DEFAULTS, key: value})))

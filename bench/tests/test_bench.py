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

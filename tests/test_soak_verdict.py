"""The chaos soak's pure parts: the seeded schedule, reading the event log back, the verdict.

The verdict is what makes a soak run mean something, so each rule is
checked on a small event log written here: exactly once passes; a missing,
a doubled or an unknown value fails and is named by position and id; a
deleted file's events pass only when delivered or inside a reported gap;
a gap no deleted file explains fails; what arrived from memory during a
disk-full passes once, never twice. The run itself: tests/test_soak.py.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from array import array
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bench.soak.eventlog import QueueRule, digest, read_event_log, unwrap
from bench.soak.run import gap_ranges
from bench.soak.schedule import KINDS, FaultSelectionError, plan, select
from bench.soak.verdict import FaultRecord, judge, ranges
from flamingo.dispatch.payloads import build
from flamingo.stream.messages import message_type


class ScheduleTests(SynchronousTestCase):
    def test_same_seed_same_schedule(self) -> None:
        self.assertEqual(plan(42, 600, KINDS), plan(42, 600, KINDS))
        self.assertNotEqual(plan(42, 600, KINDS), plan(43, 600, KINDS))

    @given(st.integers(0, 2**32), st.floats(10, 1200))
    def test_faults_in_order_inside_the_run_every_kind_once_per_round(self, seed: int, duration: float) -> None:
        faults = plan(seed, duration, KINDS)
        times = [p.at for p in faults]
        self.assertEqual(times, sorted(times))
        self.assertTrue(all(0 < t < duration for t in times))
        first_round = [p.kind for p in faults[: len(KINDS)]]
        self.assertEqual(len(first_round), len(set(first_round)))

    def test_selection_includes_excludes_and_refuses_unknown_names(self) -> None:
        self.assertEqual(select(""), list(KINDS))
        self.assertEqual(select("all"), list(KINDS))
        self.assertEqual(select("disk-full,redis-kill"), ["redis-kill", "disk-full"])
        self.assertNotIn("redis-wipe", select("-redis-wipe"))
        self.assertEqual(len(select("-redis-wipe,-disk-full")), len(KINDS) - 2)
        self.assertRaises(FaultSelectionError, select, "redis-explode")
        self.assertEqual({p.kind for p in plan(1, 600, select("stream-close"))}, {"stream-close"})


class PayloadTests(SynchronousTestCase):
    @given(st.sampled_from(["raw", "envelope", "resque"]), st.sampled_from(["tweet", "delete", "limit"]),
           st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=4))
    def test_unwrap_gives_back_the_event_of_every_format(self, fmt: str, etype: str, obj: dict) -> None:
        import orjson

        event = orjson.dumps(obj)
        self.assertEqual(unwrap(fmt, build(fmt, event, etype)), event)

    def test_gap_ranges_from_error_lines(self) -> None:
        text = ("[2026-12-02 01:00:00, ERROR] - positions 18001..20000 are no longer on disk; 2000 events "
                "cannot be delivered\n"
                "[2026-12-02 01:00:01, INFO] - positions 1..5 fine\n"
                "[2026-12-02 01:00:02, ERROR] - gap: positions 30001..30100 unreadable (FileNotFoundError)\n"
                "2026-12-02T01:00:03+0000 [flamingo.sink#error] gap of 10 events, 40001-40010: missing\n"
                "[2026-12-02 01:00:04, WARN] - gap: positions 50001..50002\n"
                "[2026-12-02 01:00:05, ERROR] - gap: /x/event-20261202-000001-000000060001.log.gz is "
                "missing: positions 60001..62000\n")
        self.assertEqual(gap_ranges(text), [(18001, 20000), (30001, 30100), (40001, 40010),
                                             (60001, 62000)])
        self.assertEqual(ranges([5, 1, 2, 3, 7]), [(1, 3), (5, 5), (7, 7)])


def _tweet(i: int) -> bytes:
    return b'{"created_at":"x","id":%d,"text":"t%d","user":{"id":1}}' % (i, i)


def _delete(i: int) -> bytes:
    return b'{"delete":{"status":{"id":%d,"user_id":1}}}' % i


RULES = [QueueRule("all", "q:all", "raw", lambda line, t: True, invalid_optional=True),
         QueueRule("deletes", "q:deletes", "envelope", lambda line, t: t == "delete")]
FORMATS = {r.name: r.format for r in RULES}


class VerdictTests(SynchronousTestCase):
    """Positions 1..10 in two files (the second gzipped); 4 and 8 are deletes."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="soak-verdict-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.events = [_delete(i) if i in (4, 8) else _tweet(i) for i in range(1, 11)]
        (self.dir / "event-20260101-000000-000000000001.log").write_bytes(
            b"".join(e + b"\n" for e in self.events[:5]))
        with gzip.open(self.dir / "event-20260101-000001-000000000006.log.gz", "wb") as f:
            f.write(b"".join(e + b"\n" for e in self.events[5:]))
        self.deleted: list[Path] = []

    def delete_second_file(self) -> FaultRecord:
        aside = self.dir.parent / (self.dir.name + "-deleted")
        aside.mkdir()
        self.addCleanup(shutil.rmtree, aside, True)
        src = self.dir / "event-20260101-000001-000000000006.log.gz"
        shutil.move(src, aside / src.name)
        self.deleted = [aside / src.name]
        return FaultRecord(1, "delete-segment", "delete-segment", 1.0, 2.0, 5, 10, deleted=(6, 10))

    def judge(self, all_q: list[bytes], deletes_q: list[bytes] | None = None, *, gaps=(), faults=(),
              disk_full=False, ready=(True, "ok"), max_rss=50 << 20):  # type: ignore[no-untyped-def]
        log = read_event_log(self.dir, self.deleted, RULES, message_type)
        if deletes_q is None:
            deletes_q = [e for e in self.events if message_type(e) == "delete"]
        queues = {"all": array("Q", map(digest, all_q)), "deletes": array("Q", map(digest, deletes_q))}
        return judge(log, FORMATS, queues, list(gaps), list(faults), disk_full=disk_full,
                     ready=ready, max_rss=max_rss, figures={})

    def test_every_event_once_passes(self) -> None:
        v = self.judge(list(self.events))
        self.assertTrue(v.ok, v.render())

    def test_a_missing_event_fails_naming_its_position_id_and_fault(self) -> None:
        fault = FaultRecord(1, "daemon-kill", "daemon-kill", 1.0, 2.0, head_before=6, head_after=7)
        v = self.judge(self.events[:6] + self.events[7:], faults=[fault])
        self.assertFalse(v.ok)
        (problem,) = v.problems
        self.assertIn("queue 'all' (raw): 1 events missing, at positions 7 (id 7, in flight during #1 daemon-kill)",
                      problem)

    def test_a_loss_is_blamed_on_every_fault_while_the_event_was_undelivered(self) -> None:
        received = FaultRecord(1, "stream-close", "stream-close", 1.0, 1.0, head_before=2, head_after=3)
        restart = FaultRecord(2, "daemon-restart-redis-down", "x", 2.0, 9.0, head_before=9, head_after=10,
                              delivered_before=2)
        v = self.judge(self.events[:2] + self.events[3:], faults=[received, restart])
        self.assertIn("at positions 3 (id 3, in flight during #1 stream-close, #2 daemon-restart-redis-down)",
                      v.problems[0])

    def test_a_doubled_event_fails(self) -> None:
        v = self.judge(self.events + [self.events[2]])
        self.assertFalse(v.ok)
        self.assertIn("delivered twice or more, at positions 3", v.problems[0])

    def test_a_filtered_queue_is_checked_against_what_it_wants(self) -> None:
        v = self.judge(list(self.events), deletes_q=[self.events[3]])
        self.assertFalse(v.ok)
        self.assertIn("queue 'deletes' (envelope): 1 events missing, at positions 8", v.problems[0])
        v = self.judge(list(self.events), deletes_q=[self.events[3], self.events[7], self.events[0]])
        self.assertFalse(v.ok)  # a tweet in the deletes queue: no event of that queue
        self.assertIn("values that are no event of the event log", v.problems[0])

    def test_deleted_file_events_pass_when_delivered_or_reported_as_a_gap(self) -> None:
        fault = self.delete_second_file()
        self.assertTrue(self.judge(list(self.events), faults=[fault]).ok)
        v = self.judge(self.events[:5], deletes_q=[self.events[3]], gaps=[(6, 10)], faults=[fault])
        self.assertTrue(v.ok, v.render())

    def test_deleted_file_events_neither_delivered_nor_in_a_gap_are_a_silent_loss(self) -> None:
        fault = self.delete_second_file()
        v = self.judge(self.events[:5], deletes_q=[self.events[3]], faults=[fault])
        self.assertFalse(v.ok)
        self.assertIn("5 events missing from a deleted file, not reported as a gap, at positions 6..10",
                      v.problems[0])

    def test_a_gap_that_no_deleted_file_explains_fails(self) -> None:
        v = self.judge(list(self.events), gaps=[(2, 3)])
        self.assertFalse(v.ok)
        self.assertIn("reported gap 2..3 is not the range of a file the soak deleted", v.problems[0])

    def test_not_journaled_events_pass_once_during_disk_full_never_twice(self) -> None:
        extra = _tweet(99)
        self.assertTrue(self.judge(self.events + [extra], disk_full=True).ok)
        self.assertFalse(self.judge(self.events + [extra], disk_full=False).ok)
        self.assertFalse(self.judge(self.events + [extra, extra], disk_full=True).ok)

    def test_repeated_control_messages_during_disk_full_are_not_journaled_copies(self) -> None:
        withheld = b'{"user_withheld":{"id":5,"withheld_in_countries":["DE"]}}'
        (self.dir / "event-20260101-000002-000000000011.log").write_bytes(withheld + b"\n")
        self.assertTrue(self.judge(self.events + [withheld, withheld, withheld], disk_full=True).ok)
        self.assertFalse(self.judge(self.events + [withheld, withheld], disk_full=False).ok)
        self.assertFalse(self.judge(self.events + [self.events[0]], disk_full=True).ok)  # a tweet: doubled

    def test_a_repeated_control_message_in_a_deleted_file_and_during_disk_full(self) -> None:
        """Seed 202 (600 s): the same user_withheld bytes in a deleted file, in kept files and
        received again while the disk was full: copies that cannot be told apart, not doubles."""
        withheld = b'{"user_withheld":{"id":5,"withheld_in_countries":["DE"]}}'
        self.events[2] = self.events[6] = withheld  # positions 3 (kept) and 7 (deleted below)
        (self.dir / "event-20260101-000000-000000000001.log").write_bytes(
            b"".join(e + b"\n" for e in self.events[:5]))
        with gzip.open(self.dir / "event-20260101-000001-000000000006.log.gz", "wb") as f:
            f.write(b"".join(e + b"\n" for e in self.events[5:]))
        fault = self.delete_second_file()
        received = self.events + [withheld]  # one more copy, delivered from memory
        self.assertTrue(self.judge(received, faults=[fault], disk_full=True).ok)
        self.assertFalse(self.judge(received, faults=[fault], disk_full=False).ok)

    def test_a_wipe_window_tolerates_lost_and_replayed_events(self) -> None:
        wipe = FaultRecord(1, "redis-wipe", "redis-wipe", 1.0, 2.0, 5, 8, wipe_window=(6, 7))
        v = self.judge(self.events[:5] + [self.events[6], self.events[6]] + self.events[7:], faults=[wipe])
        self.assertTrue(v.ok, v.render())
        self.assertIn("1 events were lost with Redis and 1 replayed", " ".join(v.notes))

    def test_not_ready_at_the_end_or_too_much_memory_fails(self) -> None:
        self.assertFalse(self.judge(list(self.events), ready=(False, "/ready 503")).ok)
        self.assertFalse(self.judge(list(self.events), max_rss=201 << 20).ok)

    def test_positions_held_by_two_files_fail(self) -> None:
        (self.dir / "event-20260101-000002-000000000009.log").write_bytes(_tweet(50) + b"\n")
        v = self.judge(list(self.events) + [_tweet(50)])
        self.assertFalse(v.ok)
        self.assertIn("positions 9..9 are held by two files", v.problems[0])

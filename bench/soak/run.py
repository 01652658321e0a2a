"""One soak run: start everything, play the schedule, let it drain, judge.

The order at the end matters: faults stop, the emulator goes quiet (no new
events), the daemon is given time to deliver its whole backlog, ``/ready``
is asked, the daemon is stopped with TERM (exit 0 expected), the consumer
reads what is left, and only then are the event-log files read: so the
journal and the queues are compared at one consistent cut.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import attrs

from bench.daemon import SubSpec
from bench.procs import BenchError, children
from bench.soak.eventlog import QueueRule, read_event_log
from bench.soak.faults import FAULTS
from bench.soak.rig import Consumer, SoakDaemon, SoakEmulator, SoakRedis, journal_head, readiness
from bench.soak.schedule import KINDS, plan
from bench.soak.verdict import FaultRecord, Verdict, judge
from flamingo.domain.matching import TermMatcher
from flamingo.stream.messages import message_type

__all__ = ["Settings", "Soak", "SUBSCRIPTIONS", "gap_ranges"]

TERMS = ("love", "python", "coffee")

#: the queues the soak checks, and what each should get (the oracle: the message type,
#: and for the term filter the matcher the emulator's filter streams use)
SUBSCRIPTIONS = (
    SubSpec("all", "raw"),
    SubSpec("deletes", "envelope", types=("delete",)),
    SubSpec("terms", "resque", filter=TERMS),
)


def _rules() -> list[QueueRule]:
    matcher = TermMatcher(TERMS)
    wants: dict[str, Callable[[bytes, str], bool]] = {
        "all": lambda line, t: True,
        "deletes": lambda line, t: t == "delete",
        "terms": lambda line, t: t == "tweet" and matcher.matches_raw(line),
    }
    return [QueueRule(s.name, s.queue_key(), s.format, wants[s.name], invalid_optional=s.name == "all")
            for s in SUBSCRIPTIONS]


@attrs.frozen
class Settings:
    duration: float = 600.0
    seed: int = 1
    faults: tuple[str, ...] = tuple(KINDS)
    rate: float = 2500.0
    stall_timeout: float = 6.0
    drain_timeout: float = 180.0
    settle: float = 5.0  # seconds of live stream between the last fault and the quiet end
    keep: bool = False  # keep the run's directory (it is kept anyway when the run fails)


_GAP_RANGE = re.compile(r"(\d+)\s*(?:\.\.|-|–| to )\s*(\d+)")
_GAP_WORDS = ("gap", "no longer on disk", "cannot be delivered", "unreadable", "missing")


def gap_ranges(log_text: str) -> list[tuple[int, int]]:
    """Position ranges from the daemon's ERROR lines about events that cannot be delivered
    (``[date, ERROR] - msg`` in the log file, ``date [ns#error] msg`` on twistd's stdout)."""
    found = set()
    for line in log_text.splitlines():
        if "ERROR" not in line.upper():
            continue
        message = line.split("] ", 1)[-1]  # not the date in front
        message = re.sub(r"\S*event-\d{8}-\d{6}-\d+\S*", "FILE", message)  # nor file names
        if any(w in message.lower() for w in _GAP_WORDS):
            for a, b in _GAP_RANGE.findall(message):
                if int(a) <= int(b):
                    found.add((int(a), int(b)))
    return sorted(found)


class Soak:
    def __init__(self, settings: Settings, out: TextIO = sys.stdout) -> None:
        self.settings = settings
        self.out = out
        self.base = Path(tempfile.mkdtemp(prefix="flamingo-soak-"))
        self.deleted_dir = self.base / "deleted"
        self.deleted_dir.mkdir()
        self.records: list[FaultRecord] = []
        self.t0 = 0.0
        self._current: FaultRecord | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- processes ---------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self.redis = SoakRedis(self.base / "redis")
        self.redis.start()
        self.emulator = SoakEmulator("small", s.seed, s.rate)
        self.emulator.start()
        self.daemon = SoakDaemon(self.emulator, self.redis.port, SUBSCRIPTIONS, self.base, s.stall_timeout)
        self.daemon.seed(self.redis.client())
        self.daemon.start()
        queues = {sub.name: (sub.queue_key(), sub.format) for sub in SUBSCRIPTIONS}
        self.consumer = Consumer(self.redis, queues, self.daemon)
        self.consumer.start()

    def start_daemon(self, rec: FaultRecord) -> None:
        try:
            self.daemon.start()
        except BenchError as e:
            rec.problems.append(f"flamingod did not start: {str(e).splitlines()[0]}")

    def stop_daemon(self, rec: FaultRecord) -> None:
        code = self.daemon.term()
        if code != 0:
            rec.problems.append(f"TERM: exit status {code} (expected 0)")

    def check_alive(self, rec: FaultRecord | None) -> None:
        proc = self.daemon.flamingod.proc
        if proc is not None and proc.poll() is not None:
            msg = f"flamingod exited by itself with status {proc.returncode}"
            self.say(f"  !! {msg}; started again")
            if rec is not None:
                rec.problems.append(msg)
            children.stop(proc)
            self.daemon.flamingod.proc = None
            self.start_daemon(rec or FaultRecord(0, "-", "-", self.now()))

    # -- the run ---------------------------------------------------------------------
    def run(self) -> Verdict:
        s = self.settings
        schedule = plan(s.seed, s.duration, s.faults)
        self.say(f"soak: seed {s.seed}, {s.duration:g} s, {s.rate:g} events/s, "
                 f"faults {','.join(s.faults) or 'none'}")
        self.say(f"soak: reproduce with  make soak SEED={s.seed} DURATION={s.duration:g}"
                 + (f" FAULTS={','.join(s.faults)}" if set(s.faults) != set(KINDS) else ""))
        self.say(f"soak: directory {self.base}")
        self.say("soak: schedule: " + "; ".join(f"{p.at:g}s {p.describe()}" for p in schedule))
        try:
            self.start()
            self.t0 = time.monotonic()
            for number, p in enumerate(schedule, 1):
                if p.at >= s.duration:
                    break
                time.sleep(max(0.0, p.at - self.now()))
                self.check_alive(self.records[-1] if self.records else None)
                rec = FaultRecord(number, p.kind, p.describe(), self.now(),
                                  head_before=journal_head(self.daemon.event_dir),
                                  delivered_before=self.daemon.sink_checkpoint_copy())
                self.records.append(rec)
                FAULTS[p.kind](self, dict(p.params), rec)
                rec.ended = self.now()
                rec.head_after = journal_head(self.daemon.event_dir)
                self.say("  " + rec.line())
            # the stream runs on for a moment after the last fault: the daemon recovers on live
            # traffic (a journal that was full retries on its next append)
            time.sleep(max(s.settle, s.duration - self.now()))
            self.check_alive(self.records[-1] if self.records else None)
            return self.finish()
        finally:
            children.reap_all()

    def finish(self) -> Verdict:
        s = self.settings
        self.say(f"soak: faults stopped at {self.now():.1f}s; the stream goes quiet, waiting for delivery")
        self.emulator.send("quiet")
        drained, waited = self.wait_drained(s.drain_timeout)
        ready = self.wait_ready(30.0)
        max_rss = self.consumer.max_rss
        final = FaultRecord(len(self.records) + 1, "end", "TERM at the end", self.now(),
                            head_before=journal_head(self.daemon.event_dir))
        self.stop_daemon(final)
        with self.consumer.lock:
            self.consumer.drain()
        self.consumer.stop()
        log_text = self.daemon.log_text()
        gaps = gap_ranges(log_text)
        rules = _rules()
        log = read_event_log(self.daemon.event_dir, sorted(self.deleted_dir.iterdir()), rules, message_type)
        figures: dict[str, object] = {
            "seed": s.seed, "duration": f"{s.duration:g} s", "rate": f"{s.rate:g} events/s",
            "faults injected": len(self.records),
            "events in the event log": len(log), "last position": log.last_position,
            "event-log files": len(log.segments),
            "drained": f"yes, {waited:.0f} s after the faults stopped" if drained
            else f"NO, backlog left after {waited:.0f} s",
            "daemon runs": self.daemon.runs,
            "gap_events (status.json)": self.consumer.gap_events,
            "not journaled (disk full, last run)": self.consumer.lost_events_seen,
        }
        records = self.records + ([final] if final.problems else [])
        if not drained:
            final.problems.append(f"the backlog was not delivered ({waited:.0f} s after the faults "
                                  "stopped)")
            records = self.records + [final]
        verdict = judge(log, {r.name: r.format for r in rules}, self.consumer.got, gaps, records,
                        disk_full=any(r.kind == "disk-full" for r in self.records),
                        ready=ready, max_rss=max_rss, figures=figures)
        if self.consumer.gap_events and not gaps:
            verdict.problems.append(f"status.json counts {self.consumer.gap_events} gap_events but no "
                                    "ERROR line names their positions (or bench/soak/run.py "
                                    "gap_ranges() does not know its wording)")
            verdict.ok = False
        gap_total = sum(b - a + 1 for a, b in gaps)
        if gaps and self.consumer.gap_events and gap_total != self.consumer.gap_events:
            verdict.notes.append(f"ERROR lines name {gap_total} gap positions, status.json "
                                 f"gap_events says {self.consumer.gap_events}")
        self.say("faults injected:")
        for rec in self.records:
            self.say("  " + rec.line())
        self.say(verdict.render())
        if verdict.ok and not s.keep:
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            self.say(f"soak: kept {self.base} (daemon log: {self.daemon.flamingod.log_path}; "
                     f"process logs: {children.logdir})")
        return verdict

    def wait_drained(self, timeout: float, stuck_after: float = 45.0) -> tuple[bool, float]:
        """Until the daemon has no backlog, the journal stands still and the queues are read;
        gives up early when the sink's checkpoint has not moved for ``stuck_after`` seconds."""
        start = time.monotonic()
        stable_since = None
        last = None
        checkpoint, moved_at = None, start
        while time.monotonic() - start < timeout:
            time.sleep(1.0)
            status = self.daemon.status() or {}
            head = journal_head(self.daemon.event_dir)
            idle = status.get("journal_backlog") == 0 and head == last
            last = head
            cp = ((status.get("delivery") or {}).get("redis") or {}).get("checkpoint")
            if cp != checkpoint:
                checkpoint, moved_at = cp, time.monotonic()
            elif time.monotonic() - moved_at > stuck_after:
                self.say(f"soak: delivery stuck: the checkpoint stayed at {cp} for {stuck_after:g} s "
                         f"(backlog {status.get('journal_backlog')})")
                break
            if idle:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 3.0:
                    return True, time.monotonic() - start
            else:
                stable_since = None
        return False, time.monotonic() - start

    def wait_ready(self, timeout: float) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        ok, why = readiness(self.daemon)
        while not ok and time.monotonic() < deadline:
            time.sleep(1.0)
            ok, why = readiness(self.daemon)
        return ok, why

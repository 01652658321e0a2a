"""Measuring from the outside: Redis counts, the event log, the daemon's RSS and CPU.

Queues are counted by a drain: ``MULTI; LLEN k; UNLINK k; EXEC`` per poll,
so the count is exact, Redis memory stays flat however long the run, and
the bench behaves like the consumers the queues exist for.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

__all__ = ["QueueCounter", "ProcSampler", "StageProbe", "count_lines", "Window", "measure_windows", "percentile",
           "stage_split"]


class QueueCounter:
    """Exact per-queue event counts while draining the queues."""

    def __init__(self, client, keys: Sequence[str], side: Sequence[str] = ()) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.keys = list(keys)
        self.side = [k for k in side if k not in self.keys]  # drained and counted, not in ``delivered``
        self.totals = {k: 0 for k in self.keys + self.side}

    def poll(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=True)
        every = self.keys + self.side
        for k in every:
            pipe.llen(k)
            pipe.unlink(k)
        replies = pipe.execute()
        for i, k in enumerate(every):
            self.totals[k] += int(replies[2 * i])
        return dict(self.totals)

    def delivered(self) -> int:
        """Events in every counted queue (the slowest queue's count; ``side`` queues aside)."""
        return min(self.totals[k] for k in self.keys) if self.keys else 0


class ProcSampler:
    """Peak RSS and CPU time of one process (the daemon), sampled on demand."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_anon = 0  # RSS minus file-backed/shared pages (Linux): the heap itself
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> int:
        try:
            info = self.proc.memory_info()
        except psutil.Error:
            return 0
        rss = info.rss
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, rss - getattr(info, "shared", 0))
        self.samples.append((time.monotonic(), rss))
        return rss

    def cpu_seconds(self) -> float:
        try:
            t = self.proc.cpu_times()
        except psutil.Error:
            return 0.0
        return t.user + t.system

    def peak_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def count_lines(directory: Path) -> int:
    """Newline-terminated records in the event log files under ``directory`` (gzip included).

    Symlinks (``event.log`` points at the current file) and the journal's
    own state files are skipped.
    """
    import gzip

    total = 0
    files = [p for p in sorted(Path(directory).rglob("*")) if p.is_file() and not p.is_symlink()]
    logs = [p for p in files if p.name.startswith("event")] or files
    for path in logs:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rb") as f:
                while True:
                    chunk = f.read(1 << 22)
                    if not chunk:
                        break
                    total += chunk.count(b"\n")
        except (OSError, EOFError):
            continue
    return total


class StageProbe:
    """The daemon's CPU seconds per stage, now: ``/meta.json``'s ``cpu`` (the daemon counts
    them per batch: see ``flamingo/dispatch/stages.py``) and, from ``/proc``, its main
    (reactor) thread against all its other threads (journal writer, fsync and gzip pool);
    with ``others`` (name -> pid), the CPU seconds of those whole processes as
    ``<name>_process`` (the redis-server and the emulator sharing the machine)."""

    def __init__(self, pid: int, meta_url: str | None, others: dict[str, int] | None = None) -> None:
        self.pid = pid
        self.meta_url = meta_url
        self.others = dict(others or {})  # name -> pid of another process on the machine (redis, emulator)
        self.tick = os.sysconf("SC_CLK_TCK")

    def _process(self, pid: int) -> float | None:
        """A whole process's CPU seconds (all its threads), from ``/proc/<pid>/stat``."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime

    def _threads(self) -> dict[str, float]:
        main = other = 0.0
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return {}
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
            if int(tid) == self.pid:
                main += cpu
            else:
                other += cpu
        return {"main_thread": main, "other_threads": other}

    def read(self) -> dict[str, float]:
        out = self._threads()
        for name, pid in self.others.items():
            cpu = self._process(pid)
            if cpu is not None:
                out[f"{name}_process"] = cpu
        if self.meta_url:
            import json
            import urllib.request

            try:
                with urllib.request.urlopen(self.meta_url, timeout=5) as r:
                    cpu = json.loads(r.read()).get("cpu") or {}
            except (OSError, ValueError):
                cpu = {}
            for k, v in cpu.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[k] = float(v)
        return out


def stage_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per stage between two ``StageProbe.read()``s (keys both have)."""
    return {k: round(after[k] - before[k], 4) for k in after if k in before}


class Window:
    """One measured interval: events delivered, seconds, CPU seconds spent (and per stage)."""

    def __init__(self, events: int, seconds: float, cpu: float, stages: dict[str, float] | None = None) -> None:
        self.events = events
        self.seconds = seconds
        self.cpu = cpu
        self.stages = stages or {}

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = {"events": self.events, "seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu, 3),
             "events_per_s": round(self.rate, 1)}
        if self.stages:
            d["stages"] = self.stages
        return d


def measure_windows(counter: QueueCounter, rounds: int, round_seconds: float, warmup_events: int,
                    max_seconds: float, sampler: ProcSampler | None = None, poll: float = 0.1,
                    alive: Callable[[], bool] = lambda: True, warmup_seconds: float = 0.0,
                    probe: StageProbe | None = None) -> list[Window]:
    """Warm up (until ``warmup_events`` are delivered, then ``warmup_seconds`` more),
    then ``rounds`` back-to-back windows.

    Each window ends at the first poll past ``round_seconds``; its rate is
    events delivered (to every counted queue) over its exact duration.
    Bounded by ``max_seconds`` in all, warm-up included.
    """
    deadline = time.monotonic() + max_seconds
    windows: list[Window] = []

    def tick() -> int:
        time.sleep(poll)
        if sampler is not None:
            sampler.sample()
        counter.poll()
        if not alive():
            raise RuntimeError("a measured process exited during the run")
        return counter.delivered()

    counter.poll()
    delivered = counter.delivered()
    while delivered < warmup_events and time.monotonic() < deadline:
        delivered = tick()
    if delivered < warmup_events:
        return windows
    warm_end = time.monotonic() + warmup_seconds
    while time.monotonic() < min(warm_end, deadline):
        delivered = tick()
    for _ in range(rounds):
        if time.monotonic() >= deadline:
            break
        start_n, start_t = delivered, time.monotonic()
        start_cpu = sampler.cpu_seconds() if sampler else 0.0
        start_stages = probe.read() if probe else {}
        while time.monotonic() - start_t < round_seconds and time.monotonic() < deadline:
            delivered = tick()
        end_t = time.monotonic()
        cpu = (sampler.cpu_seconds() - start_cpu) if sampler else 0.0
        stages = stage_split(start_stages, probe.read()) if probe else None
        windows.append(Window(delivered - start_n, end_t - start_t, cpu, stages))
    return windows


def median_rate(windows: Sequence[Window]) -> float:
    return statistics.median(w.rate for w in windows) if windows else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


class NoiseMeter:
    """How much CPU *other* processes used during a measurement (the machine may be shared).

    ``foreign_cores()`` = (busy CPU seconds of the whole machine − those of
    the bench and its children) / wall seconds: 0.0 on a quiet machine, 1.0
    when something else kept a whole core busy.
    """

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = self._busy()
        self.ours0 = self._ours()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
            - getattr(t, "guest_nice", 0.0)

    @staticmethod
    def _ours() -> float:
        me = psutil.Process()
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total

    def foreign_cores(self) -> float:
        wall = time.monotonic() - self.t0
        if wall <= 0:
            return 0.0
        foreign = (self._busy() - self.busy0) - (self._ours() - self.ours0)
        return round(max(0.0, foreign / wall), 2)

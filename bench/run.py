"""The benchmark's steps: limits, baselines, Flamingo scenarios, latency and backlog.

Each step starts the processes it needs, measures, and stops them before
the next step, so no step measures while another one loads the machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from bench.daemon import Flamingod, SubSpec
from bench.limits import StreamSample, curl_stream, page_cache_write, redis_benchmark
from bench.measure import (
    NoiseMeter,
    ProcSampler,
    QueueCounter,
    StageProbe,
    count_lines,
    measure_windows,
    percentile,
)
from bench.procs import ROOT, BenchError, RedisProc, children, free_port, venv_python, wait_port
from bench.stamps import read_stamps
from bench.xscenario import EMULATOR_ARGS as X_EMULATOR
from bench.xscenario import XFlamingod

__all__ = ["Settings", "Scenario", "SCENARIOS", "Bench"]

USER, PASSWORD = "bench", "bench-password"
STREAM_PATH = "/1.1/statuses/sample.json"


@attrs.frozen
class Settings:
    rounds: int = 5
    round_seconds: float = 3.0
    warmup_seconds: float = 2.0
    max_step_seconds: float = 60.0
    limit_reads: int = 2
    limit_seconds: float = 3.0
    redis_bench_requests: int = 200_000
    latency_rate: float = 10_000.0
    latency_seconds: float = 10.0
    pause_seconds: float = 10.0
    catchup_max_seconds: float = 60.0
    seed: int = 20130803
    sustained_seconds: float = 60.0  # the sustained scenario: one run this long, 1 s windows
    sustained_edge_seconds: float = 10.0  # its first and last windows compared
    pagecache_seconds: float = 2.0  # each page-cache write limit (with and without fdatasync)

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=3, round_seconds=1.0, warmup_seconds=1.0, max_step_seconds=20.0,
                   limit_reads=1, limit_seconds=1.5, redis_bench_requests=60_000,
                   latency_seconds=4.0, pause_seconds=5.0, catchup_max_seconds=25.0,
                   sustained_seconds=10.0, sustained_edge_seconds=3.0, pagecache_seconds=1.2)


@attrs.frozen
class Scenario:
    key: str
    title: str
    size: str
    subs: tuple[SubSpec, ...]
    gzip: bool
    source: str = "twitter"  # x: bench/xscenario.py (no v1.1 limits or baseline for its data)
    sustained: bool = False  # one long run (Settings.sustained_seconds): first vs last windows
    like_baseline: bool = False  # also a baseline doing these subscriptions the naive way (baseline --subs4)

    @property
    def data(self) -> tuple[str, bool]:
        """Scenarios with the same data share the limits and the baseline."""
        return (self.size, self.gzip)

    @property
    def full_queues(self) -> int:
        """Queues that receive every event (the term-filtered one receives a share)."""
        return sum(1 for s in self.subs if not s.filter)


RAW = SubSpec("raw", "raw")
SCENARIOS = (
    Scenario("1", "realistic tweets, 1 raw subscription", "realistic", (RAW,), False),
    Scenario("2", "realistic tweets, 4 subscriptions", "realistic",
             (RAW, SubSpec("env", "envelope"), SubSpec("jobs", "resque"),
              SubSpec("terms", "raw", filter=("love", "python", "coffee"))), False, like_baseline=True),
    Scenario("3", "small tweets (~300 B), 1 raw subscription", "small", (RAW,), False),
    Scenario("4", "realistic tweets, gzip on, 1 raw subscription", "realistic", (RAW,), True),
    Scenario("5", "realistic tweets, 1 raw subscription, sustained", "realistic", (RAW,), False, sustained=True),
    Scenario("6", "X API v2 posts (~270 B), source: x, 1 raw subscription", "small", (RAW,), False, "x"),
)


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def _span(windows: Sequence[Any]) -> dict[str, Any]:
    """Consecutive windows taken as one: events/s, CPU s per M events, CPU µs per event per stage."""
    events = sum(w.events for w in windows)
    seconds = sum(w.seconds for w in windows)
    cpu = sum(w.cpu for w in windows)
    return {"events_per_s": round(events / seconds, 1) if seconds else 0.0,
            "cpu_s_per_million": round(cpu / events * 1e6, 2) if events else None,
            "stages_us_per_event": _stages_per_event(windows)}


def _stages_per_event(windows: Sequence[Any]) -> dict[str, float]:
    """The daemon's CPU µs per delivered event, per stage (``StageProbe``), over ``windows``."""
    events = sum(w.events for w in windows)
    total: dict[str, float] = {}
    for w in windows:
        for k, v in w.stages.items():
            total[k] = total.get(k, 0.0) + v
    return {k: round(v / events * 1e6, 2) for k, v in total.items()} if events else {}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Emulator:
    """``bench.emuhost`` as a subprocess (the in-reactor emulator, optionally stamping sends)."""

    def __init__(self, size: str, seed: int, rate: float = 0.0, stamps: str | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.port = free_port()
        argv = [venv_python(), "-m", "bench.emuhost", "--port", str(self.port), "--size", size,
                "--seed", str(seed), "--rate", str(rate), "--user", USER, "--password", PASSWORD,
                "--max-seconds", "900", *extra]
        if stamps:
            argv += ["--stamps", stamps]
        self.proc = children.spawn(argv, name=f"emulator-{self.port}", cwd=ROOT)
        try:
            wait_port(self.port, 30, self.proc, "emulator")
        except BenchError as e:
            raise BenchError(f"{e}\n{children.log_tail(self.proc)}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return self.url + STREAM_PATH

    def stop(self) -> None:
        children.stop(self.proc, timeout=10)


class Bench:
    def __init__(self, settings: Settings, scenarios: Sequence[Scenario] = SCENARIOS,
                 latency: bool = True, baseline: bool = True, overrides: dict[str, Any] | None = None,
                 daemon_dir: str | None = None, pin: bool = False) -> None:
        self.s = settings
        self.pin = pin
        self.overrides = overrides or {}
        self.daemon_dir = daemon_dir
        self.scenarios = list(scenarios)
        self.latency = latency
        self.baseline = baseline
        self.tmp = Path(tempfile.mkdtemp(prefix="flamingo-bench-"))
        self.redis = RedisProc().start()
        self._pin(self.redis.proc, "others")
        self.r = self.redis.client()
        self.results: dict[str, Any] = {"limits": {}, "baselines": {}, "scenarios": {}, "latency": None,
                                        "errors": []}

    def close(self) -> None:
        self.redis.stop()
        children.reap_all()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the whole run ----------------------------------------------------
    def run(self) -> dict[str, Any]:
        datas = []
        for sc in self.scenarios:
            if sc.data not in datas and sc.source == "twitter":
                datas.append(sc.data)
        for size, gzip in datas:
            self._guard(f"limits {size} gzip={gzip}", lambda: self.measure_limits(size, gzip))
            if self.baseline:
                self._guard(f"baseline {size} gzip={gzip}", lambda: self.measure_baseline(size, gzip))
                if any(sc.like_baseline and sc.data == (size, gzip) for sc in self.scenarios):
                    self._guard(f"baseline {size} gzip={gzip}, four subscriptions",
                                lambda: self.measure_baseline(size, gzip, subs4=True))
        for sc in self.scenarios:
            self._guard(f"scenario {sc.key}", lambda: self.measure_scenario(sc))
        if self.latency:
            self._guard("latency and backlog", self.measure_latency)
        return self.results

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        _log(what)
        try:
            fn()
        except BenchError as e:
            _log(f"{what} failed: {e}")
            self.results["errors"].append(f"{what}: {e}")
        except RuntimeError as e:
            _log(f"{what} failed: {e}")
            self.results["errors"].append(f"{what}: {e}")
        finally:
            children.reap_all_but(self.redis.proc)
            self.r.flushall()

    # -- limits -----------------------------------------------------------
    def measure_limits(self, size: str, gzip: bool) -> None:
        emu = self.emulator(size)
        try:
            reads: list[StreamSample] = [
                curl_stream(emu.stream_url, USER, PASSWORD, self.s.limit_seconds, gzip=gzip)
                for _ in range(self.s.limit_reads)]
        finally:
            emu.stop()
        mean_bytes = _median([r.mean_message_bytes for r in reads])
        payload = int(round(mean_bytes)) - 2  # the message without its CRLF
        limits = self.results["limits"][f"{size}{'+gzip' if gzip else ''}"] = {
            "curl_events_per_s": round(_median([r.events_per_s for r in reads]), 1),
            "curl_mb_per_s": round(_median([r.mb_per_s for r in reads]), 2),
            "mean_message_bytes": round(mean_bytes, 1),
            "redis_rpush_per_s": None,
            "redis_payload_bytes": payload,
        }
        # One thread writev-ing into the event log's filesystem, without and with everysec fdatasync.
        where = Path(self.daemon_dir or tempfile.gettempdir())
        for key, sync in (("pagecache", 0.0), ("pagecache_everysec", 1.0)):
            w = page_cache_write(where, self.s.pagecache_seconds, mean_bytes - 1, sync_every=sync)
            limits[f"{key}_mb_per_s"] = round(w.mb_per_s, 1)
            limits[f"{key}_events_per_s"] = round(w.events_per_s, 1)
        # Without redis-benchmark (e.g. redis-server from PyPI) the curl limit still stands.
        limits["redis_rpush_per_s"] = _median([
            redis_benchmark(self.redis.port, payload, self.s.redis_bench_requests)
            for _ in range(self.s.limit_reads)])

    # -- the baseline -----------------------------------------------------
    def measure_baseline(self, size: str, gzip: bool, subs4: bool = False) -> None:
        """The naive consumer on the same stream; ``subs4``: scenario 2's four subscriptions
        (results key ``<data>+subs4``), else one raw queue (key ``<data>``)."""
        emu = self.emulator(size)
        queue = "baseline:queue"
        from bench.baseline import SUBS4_SUFFIXES

        full = [f"{queue}:{x}" for x in SUBS4_SUFFIXES if x != "terms"] if subs4 else [queue]
        total = self.s.warmup_seconds + self.s.rounds * self.s.round_seconds + 10
        argv = [venv_python(), "-m", "bench.baseline", emu.stream_url, "--user", USER,
                "--password", PASSWORD, "--redis-port", str(self.redis.port), "--queue", queue,
                "--out", str(self.tmp / "baseline.jsonl"), "--seconds", str(total)]
        if gzip:
            argv.append("--gzip")
        if subs4:
            argv.append("--subs4")
        proc = children.spawn(argv, name="baseline", cwd=ROOT)
        self._pin(proc, "daemon")  # the baseline gets the daemon's place
        try:
            sampler = ProcSampler(proc.pid)
            noise = NoiseMeter()
            counter = QueueCounter(self.r, full, side=[f"{queue}:terms"] if subs4 else ())
            windows = measure_windows(counter, self.s.rounds, self.s.round_seconds,
                                      warmup_events=1, max_seconds=self.s.max_step_seconds,
                                      sampler=sampler, alive=lambda: proc.poll() is None,
                                      warmup_seconds=self.s.warmup_seconds)
            if not windows or not sum(w.events for w in windows):
                raise BenchError(f"the baseline delivered nothing\n{children.log_tail(proc)}")
            foreign = noise.foreign_cores()
        finally:
            children.stop(proc)
            emu.stop()
            (self.tmp / "baseline.jsonl").unlink(missing_ok=True)
        self.results["baselines"][f"{size}{'+gzip' if gzip else ''}{'+subs4' if subs4 else ''}"] = {
            "events_per_s": round(_median([w.rate for w in windows]), 1),
            "cpu_s_per_million": round(sum(w.cpu for w in windows) / max(1, sum(w.events for w in windows)) * 1e6, 2),
            "windows": [w.to_dict() for w in windows],
            "peak_rss_mb": round(sampler.peak_rss / 1e6, 1),
            "foreign_cores": foreign,
            "mode": "four subscriptions, naive (baseline --subs4)" if subs4 else "one raw queue",
            "queue_totals": dict(counter.totals),
        }

    # -- Flamingo ---------------------------------------------------------
    def start_daemon(self, emu: Emulator, subs: Sequence[SubSpec], gzip: bool, source: str = "twitter") -> Flamingod:
        kind = XFlamingod if source == "x" else Flamingod
        d = kind(emu.url, USER, PASSWORD, self.redis.port, subs, gzip=gzip,
                 overrides=self.overrides, base_dir=self.daemon_dir)
        d.start(self.r)
        self._pin(d.proc, "daemon")
        return d

    def _pin(self, proc: Any, role: str) -> None:
        """--pin: the daemon alone on CPU 0, everything else of ours on the other CPUs."""
        if not self.pin or proc is None:
            return
        import psutil

        cpus = list(range(psutil.cpu_count() or 1))
        if len(cpus) < 2:
            return
        try:
            psutil.Process(proc.pid).cpu_affinity(cpus[:1] if role == "daemon" else cpus[1:])
        except (psutil.Error, AttributeError, OSError):
            pass

    def emulator(self, size: str, rate: float = 0.0, stamps: str | None = None, source: str = "twitter") -> Emulator:
        emu = Emulator(size, self.s.seed, rate=rate, stamps=stamps, extra=X_EMULATOR if source == "x" else ())
        self._pin(emu.proc, "others")
        return emu

    def measure_scenario(self, sc: Scenario) -> None:
        emu = self.emulator(sc.size, source=sc.source)
        daemon = self.start_daemon(emu, sc.subs, sc.gzip, sc.source)
        try:
            assert daemon.proc is not None
            sampler = ProcSampler(daemon.proc.pid)
            full = [s.queue_key() for s in sc.subs if not s.filter]
            partial = [s.queue_key() for s in sc.subs if s.filter]
            counter = QueueCounter(self.r, full)
            side = QueueCounter(self.r, partial)
            others = {"emulator": emu.proc.pid}
            if self.redis.proc is not None:
                others["redis"] = self.redis.proc.pid
            probe = StageProbe(daemon.proc.pid, f"http://127.0.0.1:{daemon.web_port}/meta.json", others)
            noise = NoiseMeter()
            if sc.sustained:
                rounds, seconds = int(self.s.sustained_seconds), 1.0
                limit = self.s.sustained_seconds + self.s.warmup_seconds + 30
            else:
                rounds, seconds, limit = self.s.rounds, self.s.round_seconds, self.s.max_step_seconds
            windows = measure_windows(counter, rounds, seconds, 1, limit, sampler=sampler, alive=daemon.alive,
                                      warmup_seconds=self.s.warmup_seconds, probe=probe)
            if not windows or not sum(w.events for w in windows):
                raise BenchError(f"no event reached Redis within {self.s.max_step_seconds:.0f} s\n"
                                 f"{daemon.tail()}")
            foreign = noise.foreign_cores()
            side.poll()
            # Stop the stream, let the daemon deliver what it has, then compare with the log.
            emu.stop()
            settle_deadline = time.monotonic() + 15
            last = -1
            while time.monotonic() < settle_deadline:
                counter.poll()
                if counter.delivered() == last:
                    break
                last = counter.delivered()
                time.sleep(0.5)
            side.poll()
            delivered = counter.delivered()
            logged = count_lines(daemon.event_dir)
        finally:
            daemon.stop()
            emu.stop()
            daemon.cleanup()
        events = sum(w.events for w in windows)
        cpu = sum(w.cpu for w in windows)
        rate = _median([w.rate for w in windows])
        extra: dict[str, Any] = {}
        if sc.sustained:
            k = max(1, int(self.s.sustained_edge_seconds))
            first, last = _span(windows[:k]), _span(windows[-k:])
            rate = round(events / sum(w.seconds for w in windows), 1)
            extra = {"sustained_seconds": round(sum(w.seconds for w in windows), 1), "edge_seconds": k,
                     "first_window": first, "last_window": last,
                     "last_vs_first": round(last["events_per_s"] / first["events_per_s"], 3)
                     if first["events_per_s"] else None}
        self.results["scenarios"][sc.key] = {**extra,
            "title": sc.title,
            "size": sc.size,
            "gzip": sc.gzip,
            "source": sc.source,
            "like_baseline": sc.like_baseline,
            "subscriptions": [f"{s.name} ({s.format}{', terms' if s.filter else ''})" for s in sc.subs],
            "events_per_s": round(rate, 1),
            "windows": [w.to_dict() for w in windows],
            "cpu_s_per_million": round(cpu / events * 1e6, 2) if events else None,
            "stages_us_per_event": _stages_per_event(windows),
            "peak_rss_mb": round(sampler.peak_rss / 1e6, 1),
            "peak_anon_mb": round(sampler.peak_anon / 1e6, 1),
            "delivered_total": delivered,
            "event_log_lines": logged,
            "log_covers_redis": logged >= delivered,
            "term_filtered_delivered": sum(side.totals.values()) if partial else None,
            "queue_totals": {**counter.totals, **side.totals},
            "foreign_cores": foreign,
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }

    # -- latency and backlog ----------------------------------------------
    def measure_latency(self) -> None:
        """Offered 10,000 events/s; send->Redis latency; then Redis SIGSTOPped mid-run."""
        s = self.s
        sent_path = str(self.tmp / "sent.bin")
        recv_path = str(self.tmp / "received.bin")
        emu = self.emulator("realistic", rate=s.latency_rate, stamps=sent_path)
        daemon = self.start_daemon(emu, (RAW,), gzip=False)
        consumer = children.spawn(
            [venv_python(), "-m", "bench.consumer", "--redis-port", str(self.redis.port),
             "--queue", RAW.queue_key(), "--stamps", recv_path, "--seconds", "600"],
            name="consumer", cwd=ROOT)
        self._pin(consumer, "others")
        try:
            assert daemon.proc is not None
            sampler = ProcSampler(daemon.proc.pid)

            def wait(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    sampler.sample()
                    if not daemon.alive():
                        raise BenchError(f"flamingod exited\n{daemon.tail()}")
                    time.sleep(0.1)

            wait(s.warmup_seconds + 1.0)
            noise = NoiseMeter()
            t_measure = time.time()
            cpu0 = sampler.cpu_seconds()
            wait(s.latency_seconds)
            cpu_steady = sampler.cpu_seconds() - cpu0
            foreign = noise.foreign_cores()
            steady_rss = sampler.peak_rss
            t_pause = time.time()
            m_pause = time.monotonic()
            self.redis.pause()
            try:
                wait(s.pause_seconds)
            finally:
                self.redis.resume()
            t_resume = time.time()
            m_resume = time.monotonic()
            # Catch-up: every message sent before the resume has arrived.
            sent_before = None
            caught_up_at = None
            end = time.monotonic() + s.catchup_max_seconds
            while time.monotonic() < end:
                wait(0.5)
                if sent_before is None:
                    sent_before = {d for d, t in read_stamps(sent_path).items() if t < t_resume}
                arrived = read_stamps(recv_path)
                if sent_before and all(d in arrived for d in sent_before):
                    caught_up_at = max(arrived[d] for d in sent_before)
                    break
            wait(1.0)
            m_end = time.monotonic()
        finally:
            children.stop(consumer)
            emu.stop()
            daemon.stop()
            daemon.cleanup()
        sent = read_stamps(sent_path)
        arrived = read_stamps(recv_path)
        steady = [arrived[d] - t for d, t in sent.items() if t_measure <= t < t_pause - 0.5 and d in arrived]
        steady_sent = sum(1 for t in sent.values() if t_measure <= t < t_pause - 0.5)
        after = [(arrived[d], arrived[d] - t) for d, t in sent.items() if d in arrived and arrived[d] >= t_resume]
        slow_after = [a for a, lat in after if lat > 0.05]
        self.results["latency"] = {
            "offered_events_per_s": s.latency_rate,
            "measured_messages": len(steady),
            "missing_in_window": steady_sent - len(steady),
            "p50_ms": round(percentile(steady, 50) * 1000, 2) if steady else None,
            "p99_ms": round(percentile(steady, 99) * 1000, 2) if steady else None,
            "max_ms": round(max(steady) * 1000, 2) if steady else None,
            "cpu_s_per_million_at_rate": round(cpu_steady / len(steady) * 1e6, 2) if steady else None,
            "steady_peak_rss_mb": round(steady_rss / 1e6, 1),
            "pause_seconds": s.pause_seconds,
            "pause_peak_rss_mb": round(sampler.peak_between(m_pause, m_resume) / 1e6, 1),
            "catchup_peak_rss_mb": round(sampler.peak_between(m_resume, m_end) / 1e6, 1),
            "peak_anon_mb": round(sampler.peak_anon / 1e6, 1),
            "backlog_events": sum(1 for t in sent.values() if t_pause <= t < t_resume),
            "catch_up_seconds": round(caught_up_at - t_resume, 2) if caught_up_at else None,
            "latency_under_50ms_after_s": round(max(slow_after) - t_resume, 2) if slow_after else 0.0,
            "resume_to_end_s": round(m_end - m_resume, 1),
            "foreign_cores": foreign,
        }

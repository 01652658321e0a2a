"""The Jetstream scenarios: ``python -m bench --jetstream [--quick] [--rate N] [--down S]``.

1. **steady**: the Jetstream emulator makes ``--rate`` events/s (the bench mix,
   ~700 B: posts, likes, follows; zstd on, as ``jetstream.compress`` defaults),
   flamingod (``source: jetstream``) delivers them to one raw queue: events/s
   reaching Redis, the daemon's CPU per million events, the cursor's lag.
2. **catch-up**: the daemon is stopped (TERM) for ``--down`` seconds (60)
   while events keep being made, then started again: it resumes from its
   journal's cursor and replays the window. Measured: time from the restart
   until the cursor's lag is under 2 s (the replayed window drained), the
   events replayed, and their rate: end-to-end events/s when the source is not
   the limit (the emulator serves the replay as fast as TCP takes it).

Every event counted in Redis is also checked against the event log (no
loss, no repeat: the log and the queues hold the same number of events).
Writes ``bench/results/jetstream-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.daemon import Flamingod, SubSpec
from bench.measure import ProcSampler, QueueCounter, count_lines, measure_windows
from bench.procs import ROOT, BenchError, RedisProc, children, free_port, venv_python, wait_port

__all__ = ["main", "run"]

RESULTS = Path(__file__).resolve().parent / "results"
RAW = SubSpec("raw", "raw")


def _log(msg: str) -> None:
    print(f"[bench jetstream {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class JetEmulator:
    """``flamingo emulator --source jetstream`` as a subprocess."""

    def __init__(self, rate: float, retain: int, seed: int = 20130803) -> None:
        self.port = free_port()
        self.proc = children.spawn(
            [venv_python(), "-m", "flamingo.emulator", "--source", "jetstream", "--port", str(self.port),
             "--rate", str(rate), "--mix", "bench", "--retain", str(retain), "--seed", str(seed)],
            name=f"jetstream-{self.port}", cwd=ROOT)
        wait_port(self.port, 30, self.proc, "jetstream emulator")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        children.stop(self.proc, timeout=10)


def _daemon(emu: JetEmulator, redis_port: int, base_dir: str | None) -> Flamingod:
    d = Flamingod(emu.url, "", "", redis_port, [RAW], gzip=False, base_dir=base_dir)
    for key in ("username", "password", "auth"):
        d.config.pop(key, None)
    d.config.update({"source": "jetstream", "stream": "subscribe", "api": {"url": emu.url},
                     "jetstream": {"compress": True, "rewind": 5}, "wader": {"min_interval": 0}})
    return d


def _status(d: Flamingod) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{d.web_port}/status.json", timeout=5) as r:
            body: dict[str, Any] = json.load(r)
            return body
    except (OSError, ValueError):
        return {}


def _meta(d: Flamingod) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{d.web_port}/meta.json", timeout=5) as r:
            body: dict[str, Any] = json.load(r)
            return body
    except (OSError, ValueError):
        return {}


def _lag(d: Flamingod) -> float | None:
    cursor = _status(d).get("cursor") or {}
    lag = cursor.get("lag_seconds")
    return float(lag) if isinstance(lag, (int, float)) else None


def run(rate: float, down: float, rounds: int, round_seconds: float, base_dir: str | None = None) -> dict[str, Any]:
    redis = RedisProc().start()
    r = redis.client()
    emu = JetEmulator(rate, retain=int(rate * (down + 120)) + 10_000)
    daemon = _daemon(emu, redis.port, base_dir)
    out: dict[str, Any] = {"rate": rate, "down_seconds": down, "mix": "bench", "compress": True}
    try:
        daemon.start(r)
        assert daemon.proc is not None
        sampler = ProcSampler(daemon.proc.pid)
        counter = QueueCounter(r, [RAW.queue_key()])
        _log(f"steady: {rate:g} events/s offered")
        windows = measure_windows(counter, rounds, round_seconds, 1, 120, sampler=sampler,
                                  alive=daemon.alive, warmup_seconds=2)
        if not windows or not sum(w.events for w in windows):
            raise BenchError(f"no event reached Redis\n{daemon.tail()}")
        lags = [lag for lag in (_lag(daemon) for _ in range(5)) if lag is not None]
        events = sum(w.events for w in windows)
        meta = _meta(daemon)
        out["steady"] = {
            "events_per_s": round(statistics.median(w.rate for w in windows), 1),
            "windows": [w.to_dict() for w in windows],
            "cpu_s_per_million": round(sum(w.cpu for w in windows) / events * 1e6, 2),
            "mean_event_bytes": round(meta.get("events", {}).get("bytes", 0) /
                                      max(1, meta.get("events", {}).get("total", 1)), 1),
            "cursor_lag_s": round(statistics.median(lags), 3) if lags else None,
            "peak_rss_mb": round(sampler.peak_rss / 1e6, 1),
        }
        _log(f"catch-up: the daemon stops for {down:g} s")
        daemon.stop()
        counter.poll()
        before = counter.delivered()
        time.sleep(down)  # the outage being measured: events keep being made meanwhile
        t0 = time.monotonic()
        daemon.launch()
        sampler = ProcSampler(daemon.proc.pid)
        cpu0 = sampler.cpu_seconds()
        drained_at = None
        peak_rate, last_n, last_t = 0.0, counter.delivered(), t0
        while time.monotonic() - t0 < max(120.0, down * 4):
            time.sleep(0.25)
            sampler.sample()
            counter.poll()
            now, n = time.monotonic(), counter.delivered()
            if now - last_t >= 1.0:
                peak_rate = max(peak_rate, (n - last_n) / (now - last_t))
                last_n, last_t = n, now
            lag = _lag(daemon)
            if lag is not None and lag < 2.0 and n > before:
                drained_at = now
                break
        if drained_at is None:
            raise BenchError(f"the replayed window did not drain\n{daemon.tail()}")
        counter.poll()
        replayed = counter.delivered() - before
        seconds = drained_at - t0
        meta = _meta(daemon)
        out["catch_up"] = {
            "drain_seconds": round(seconds, 2),
            "events_replayed": replayed,
            "events_per_s": round(replayed / seconds, 1) if seconds > 0 else None,
            "peak_events_per_s_1s": round(peak_rate, 1),
            "cpu_s_per_million": round((sampler.cpu_seconds() - cpu0) / max(1, replayed) * 1e6, 2),
            "duplicates_dropped": meta.get("duplicates"),
            "peak_rss_mb": round(sampler.peak_rss / 1e6, 1),
        }
        emu.stop()
        time.sleep(2)
        counter.poll()
        daemon.stop()
        logged = count_lines(daemon.event_dir)
        out["check"] = {"delivered_total": counter.delivered(), "event_log_lines": logged,
                        "same": counter.delivered() == logged}
    finally:
        daemon.cleanup()
        emu.stop()
        redis.stop()
        children.reap_all()
    return out


def render(res: dict[str, Any]) -> str:
    s, c, k = res["steady"], res["catch_up"], res["check"]
    return "\n".join([
        f"Jetstream, zstd on, bench mix (~{s['mean_event_bytes']:.0f} B events), 1 raw subscription",
        f"  steady at {res['rate']:g}/s offered: {s['events_per_s']:.0f} events/s delivered, "
        f"{s['cpu_s_per_million']:.0f} CPU s per million, cursor lag {s['cursor_lag_s']} s, "
        f"peak RSS {s['peak_rss_mb']} MB",
        f"  catch-up after {res['down_seconds']:g} s down: {c['events_replayed']} events drained in "
        f"{c['drain_seconds']} s = {c['events_per_s']:.0f} events/s end to end "
        f"(peak 1 s: {c['peak_events_per_s_1s']:.0f}/s), {c['cpu_s_per_million']:.0f} CPU s per million, "
        f"{c['duplicates_dropped']} repeats dropped, peak RSS {c['peak_rss_mb']} MB",
        f"  check: {k['delivered_total']} events in Redis, {k['event_log_lines']} in the event log"
        f" ({'same' if k['same'] else 'DIFFERENT'})",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench --jetstream", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="15 s down, shorter rounds")
    p.add_argument("--rate", type=float, default=2000.0, help="events/s the emulator makes (default 2000)")
    p.add_argument("--down", type=float, default=None, help="seconds the daemon is down (default 60)")
    p.add_argument("--daemon-dir", help="where the daemon's data dir and event log go (default: $TMPDIR)")
    p.add_argument("--out", type=Path, default=RESULTS / "jetstream-latest.json")
    a = p.parse_args(argv)
    down = a.down if a.down is not None else (15.0 if a.quick else 60.0)
    rounds, round_seconds = (3, 2.0) if a.quick else (5, 3.0)
    children.install()
    try:
        res = run(a.rate, down, rounds, round_seconds, a.daemon_dir)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    res["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(render(res))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

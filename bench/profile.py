"""Where the daemon's time goes: ``python -m bench.profile [--scenario N] [--seconds S]``.

Runs one scenario's set-up (private Redis, emulator, flamingod), lets it
warm up, then samples the daemon with py-spy (``pip install py-spy``) for
``--seconds`` and prints the top functions by self time and by inclusive
time, from the collapsed stacks (also kept in ``--out``). py-spy is not a
dependency of Flamingo; it is only needed for this.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import time
from pathlib import Path

from bench.daemon import Flamingod
from bench.measure import QueueCounter
from bench.procs import BenchError, RedisProc, children
from bench.run import PASSWORD, SCENARIOS, USER, Emulator

__all__ = ["main", "summarize"]


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    short = "/".join(Path(path).parts[-2:]) if path else where
    return f"{name} ({short})"


def _frame_line(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    short = "/".join(Path(where).parts[-2:]) if where else ""
    return f"{short} {name}"


def summarize(collapsed: str, top: int = 25) -> str:
    """Top functions by self and inclusive samples from py-spy's raw (collapsed) output."""
    self_counts: collections.Counter[str] = collections.Counter()
    line_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        self_counts[frames[-1]] += n
        leaf = stack.split(";")[-1]
        line_counts[_frame_line(leaf)] += n
        for f in set(frames):
            incl_counts[f] += n
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    out += ["", "self time by line (C calls count in the line that makes them):"]
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in line_counts.most_common(min(top, 15))]
    out += ["", "inclusive time:"]
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in incl_counts.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--scenario", default="1", choices=[s.key for s in SCENARIOS])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=0.0, help="offered events/s (0 = as fast as it reads)")
    p.add_argument("--rate-hz", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--delay", type=float, default=1.0, help="seconds of streaming before sampling starts")
    a = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    sc = next(s for s in SCENARIOS if s.key == a.scenario)
    redis = RedisProc().start()
    emu = daemon = None
    try:
        emu = Emulator(sc.size, 20130803, rate=a.rate)
        daemon = Flamingod(emu.url, USER, PASSWORD, redis.port, sc.subs, gzip=sc.gzip)
        daemon.start(redis.client())
        counter = QueueCounter(redis.client(), [s.queue_key() for s in sc.subs])
        deadline = time.monotonic() + 30
        while counter.delivered() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            counter.poll()
        if counter.delivered() == 0:
            raise BenchError(f"no events reached Redis\n{daemon.tail()}")
        end_delay = time.monotonic() + a.delay
        while time.monotonic() < end_delay:  # keep draining the queues while waiting
            time.sleep(0.2)
            counter.poll()
        counter.poll()
        start_n, t0 = counter.delivered(), time.monotonic()
        raw = Path(a.out).with_suffix(".collapsed")
        raw.parent.mkdir(parents=True, exist_ok=True)
        assert daemon.proc is not None
        spy_proc = children.spawn([spy, "record", "--format", "raw", "--rate", str(a.rate_hz),
                                   "--duration", str(int(a.seconds)), "--nonblocking",
                                   "--pid", str(daemon.proc.pid), "--output", str(raw)], name="py-spy")
        while spy_proc.poll() is None and time.monotonic() - t0 < a.seconds + 30:
            time.sleep(0.25)
            counter.poll()
        rate = (counter.delivered() - start_n) / (time.monotonic() - t0)
        if not raw.exists():
            raise BenchError(f"py-spy wrote nothing\n{children.log_tail(spy_proc)}")
        text = (f"scenario {sc.key} ({sc.title}), offered {'max' if not a.rate else a.rate}, "
                f"{rate:,.0f} events/s while sampled\n\n" + summarize(raw.read_text(), a.top))
        a.out.write_text(text + "\n")
        print(text)
    except BenchError as e:
        print(f"profile: {e}", file=sys.stderr)
        return 1
    finally:
        if daemon is not None:
            daemon.cleanup()
        if emu is not None:
            emu.stop()
        redis.stop()
        children.reap_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

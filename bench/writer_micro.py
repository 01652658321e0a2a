"""The event log's cost to the reactor thread, inline against the writer thread.

``python -m bench.writer_micro [--events N] [--batch B] [--dir DIR]``

The main thread plays the reactor: it submits batches of realistic tweets
(the emulator's corpus) to a journal writer and runs the hand-overs the
writer posts (``callFromThread`` is a queue it drains between batches). What
is measured is CPU time per event, per thread (``time.thread_time`` in each
thread): what the reactor thread spends on the event log, and what the
writer thread spends. Thread CPU time leaves out the time a thread waits for
a core, so the numbers hold on a loaded machine far better than a rate does.
Rounds alternate inline and thread (A, B, A, B ...); the median of each is printed.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from flamingo.dispatch.journal import Journal
from flamingo.dispatch.journal_writer import InlineWriter, ThreadWriter, Written
from flamingo.dispatch.stages import StageCpu


def corpus(n: int) -> list[bytes]:
    from flamingo.emulator.corpus import Corpus, dumps

    c = Corpus(seed=20130803, size="realistic")
    out = []
    for m in c.messages():
        out.append(dumps(m))
        if len(out) >= n:
            return out
    return out


def one_round(mode: str, frames: list[bytes], batch: int, where: Path) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(prefix="writer-micro-", dir=where))
    try:
        j = Journal(d, kind="event", fsync="everysec", rotate_events=100_000, reactor=Clock()).open()
        calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        handed = [0]

        def deliver(w: Written) -> None:
            handed[0] += len(w.frames)

        cpu = StageCpu()
        writer: InlineWriter | ThreadWriter
        if mode == "thread":
            # inline_below=0: always the thread (a quiet stream would be written here)
            writer = ThreadWriter(j, deliver, cpu, lambda fn, *a: calls.put((fn, a)), inline_below=0)
        else:
            writer = InlineWriter(j, deliver, cpu)
        writer.start()

        def run_calls() -> None:
            while True:
                try:
                    fn, a = calls.get_nowait()
                except queue.Empty:
                    return
                fn(*a)

        types = ["tweet"] * batch
        t0, c0 = time.monotonic(), time.thread_time()
        for k in range(0, len(frames), batch):
            part = frames[k:k + batch]
            writer.submit(part, types[:len(part)], sum(map(len, part)))
            run_calls()
        main_submit = time.thread_time() - c0
        writer.stop()
        while handed[0] < len(frames):
            fn, a = calls.get(timeout=60)
            fn(*a)
        run_calls()
        wall = time.monotonic() - t0
        main = time.thread_time() - c0
        n = len(frames)
        journal_cpu = cpu.journal  # the writer thread's own (thread mode) or the inline share
        j.sync()
        j._close_fd()
        return {"reactor_us": main / n * 1e6, "reactor_submit_us": main_submit / n * 1e6,
                "journal_us": journal_cpu / n * 1e6, "wall_us": wall / n * 1e6}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.writer_micro")
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=500, help="events per submitted batch (a reactor turn)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=tempfile.gettempdir())
    a = p.parse_args(argv)
    base = corpus(min(a.events, 5000))
    frames = (base * (a.events // len(base) + 1))[:a.events]
    res: dict[str, list[dict[str, float]]] = {"inline": [], "thread": []}
    for _ in range(a.rounds):
        for mode in ("inline", "thread"):
            res[mode].append(one_round(mode, frames, a.batch, Path(a.dir)))
    load = os.getloadavg()[0]
    print(f"{a.events} events of {statistics.mean(map(len, base)):.0f} B in batches of {a.batch}, "
          f"{a.rounds} rounds each (A/B interleaved), load {load:.2f}; µs per event, median:")
    for mode, rs in res.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"  {mode:6}  reactor thread {med['reactor_us']:6.2f} (submitting {med['reactor_submit_us']:6.2f})"
              f"  journal {med['journal_us']:6.2f}  wall {med['wall_us']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

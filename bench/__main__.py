"""``python -m bench [--quick] [--scenario N ...]``: run the benchmark, print the table.

A full run (every scenario, no ``--quick``, no ``--set``, no skipped step) writes
``bench/results/latest.json``, the committed reference; any other run writes
``bench/results/last-run.json`` (untracked); both leave a timestamped copy. The whole
run is bounded by ``--max-minutes``; every child process is stopped when it
ends, however it ends.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import attrs
import yaml

from bench import report
from bench.procs import BenchError, children
from bench.run import SCENARIOS, Bench, Settings

RESULTS = Path(__file__).resolve().parent / "results"


def is_full_run(a: argparse.Namespace) -> bool:
    """Every step of every scenario with the defaults: a run fit to be the reference."""
    return not (a.quick or a.scenario or a.no_latency or a.only_latency or a.no_baseline or a.set
                or a.latency_rate or a.pin or a.daemon_dir)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--jetstream" in args:  # the Jetstream scenarios (bench/jetstream.py): steady and catch-up
        from bench import jetstream

        return jetstream.main([x for x in args if x != "--jetstream"])
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="about one minute: fewer, shorter rounds")
    p.add_argument("--scenario", action="append", choices=[s.key for s in SCENARIOS],
                   help="run only these scenarios (repeatable); default all")
    p.add_argument("--no-latency", action="store_true", help="skip the latency and Redis-pause run")
    p.add_argument("--only-latency", action="store_true", help="only the latency and Redis-pause run")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline consumer")
    p.add_argument("--latency-rate", type=float, help="offered events/s of the latency run (default 10000)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a flamingod config key for every run (YAML value), e.g. journal.fsync=no")
    p.add_argument("--daemon-dir", help="where the daemon's data dir and event log go (default: $TMPDIR)")
    p.add_argument("--pin", action="store_true",
                   help="CPU affinity: the daemon (or the baseline) alone on CPU 0, Redis/emulator/curl on the rest")
    p.add_argument("--out", type=Path, default=None,
                   help="where the results go (default: latest.json for a full run, else last-run.json)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="abort the run after this long (default 4 quick, 15 full)")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = RESULTS / ("latest.json" if is_full_run(a) else "last-run.json")

    settings = Settings.quick() if a.quick else Settings()
    if a.latency_rate:
        settings = attrs.evolve(settings, latency_rate=a.latency_rate)
    scenarios = [] if a.only_latency else [s for s in SCENARIOS if not a.scenario or s.key in a.scenario]
    limit = a.max_minutes or (4 if a.quick else 15)

    def on_alarm(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt(f"the run took longer than {limit} minutes")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(limit * 60))
    children.install()
    started = time.time()
    results: dict = {"machine": report.machine(), "quick": a.quick,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    bench = None
    try:
        overrides = {}
        for item in a.set:
            key, _, value = item.partition("=")
            # YAML 1.1 would read "no" as false; only true/false and numbers are converted.
            parsed = yaml.safe_load(value)
            if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
                parsed = value.strip()
            overrides[key.strip()] = parsed
        results["overrides"] = overrides
        results["daemon_dir"] = a.daemon_dir
        bench = Bench(settings, scenarios, latency=not a.no_latency, baseline=not a.no_baseline,
                      overrides=overrides, daemon_dir=a.daemon_dir, pin=a.pin)
        results["pinned"] = a.pin
        results.update(bench.run())
    except KeyboardInterrupt as e:
        print(f"bench interrupted: {e}", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        if bench is not None:
            bench.close()
        children.reap_all()
    results["settings"] = attrs.asdict(settings)
    results["seconds"] = round(time.time() - started, 1)
    results["rows"] = report.derive(results)
    results["targets"] = report.targets(results, results["rows"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    a.out.write_text(text + "\n")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
    (a.out.parent / f"{stamp}{'-quick' if a.quick else ''}.json").write_text(text + "\n")
    print(report.render(results))
    print(f"\nwrote {a.out} ({results['seconds']:.0f} s)")
    if results.get("errors"):
        print(f"child process logs: {children.logdir}", file=sys.stderr)
        return 1
    shutil.rmtree(children.logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

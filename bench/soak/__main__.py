"""``python -m bench.soak [--duration S] [--seed N] [--faults LIST]``: one soak run, its verdict.

Exit status 0 when the verdict passes, 1 when it fails, 2 for a bad
command line or a run that could not start.
"""

from __future__ import annotations

import argparse
import random
import sys

from bench.procs import BenchError
from bench.soak.run import Settings, Soak
from bench.soak.schedule import KINDS, FaultSelectionError, select


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Chaos soak: flamingod, Redis and the emulator under a seeded schedule of faults; "
                    "then every event of the event log must be in every queue that wants it, once.",
        epilog="fault kinds:\n" + "\n".join(f"  {k:<26} {v}" for k, v in KINDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of faults (default 600)")
    p.add_argument("--seed", type=int, default=None, help="schedule seed (default: a random one, printed)")
    p.add_argument("--faults", default="",
                   help="comma list: only these kinds; or -kind,-kind to leave some out (default all)")
    p.add_argument("--rate", type=float, default=2500.0, help="emulator events/s (default 2500)")
    p.add_argument("--keep", action="store_true", help="keep the run's directory even if it passes")
    a = p.parse_args(argv)
    try:
        kinds = select(a.faults)
    except FaultSelectionError as e:
        p.error(str(e))
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    settings = Settings(duration=a.duration, seed=seed, faults=tuple(kinds), rate=a.rate, keep=a.keep)
    try:
        verdict = Soak(settings).run()
    except BenchError as e:
        print(f"soak: could not run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 2
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())

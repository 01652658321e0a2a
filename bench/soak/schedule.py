"""The soak's fault schedule: which fault, when, with which parameters — from a seed.

Pure: ``plan(seed, duration, kinds)`` is the same list for the same arguments,
so a failing seed replays the same schedule. Faults run one after another
(each leaves the system a few seconds to settle before the next), and the
kinds come in shuffled rounds (every selected kind once before any repeats),
so even a 60 s run meets several different ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import attrs

__all__ = ["KINDS", "Planned", "plan", "select", "FaultSelectionError"]

#: kind -> what the soak does (the ``--faults`` names)
KINDS: dict[str, str] = {
    "redis-kill": "Redis kill -9, restarted on its append-only file after a few seconds",
    "redis-stop": "Redis SIGSTOP for 5-15 s, then SIGCONT",
    "redis-wipe": "Redis kill -9 and restarted empty (data files removed)",
    "daemon-kill": "flamingod kill -9, started again",
    "daemon-term": "flamingod TERM (must exit 0), started again",
    "daemon-restart-redis-down": "Redis down, flamingod TERM and started again, Redis back (AOF)",
    "stream-close": "the emulator closes the stream",
    "stream-close-mid": "the emulator sends half a message and closes",
    "stream-503": "stream closed, the next attempts get 503",
    "stream-420": "stream closed, the next attempt gets 420",
    "stream-stall": "the stream goes silent past the daemon's stall timeout",
    "disk-full": "RLIMIT_FSIZE 0 on the running daemon for 3-10 s (writes fail with EFBIG)",
    "delete-segment": "while Redis is down, an event-log file the sink still needs is deleted",
}


class FaultSelectionError(ValueError):
    """A ``--faults`` value naming no known kind."""


@attrs.frozen
class Planned:
    """One fault of the schedule: ``at`` seconds after the soak started."""

    at: float
    kind: str
    params: dict[str, float] = attrs.field(factory=dict, hash=False)

    def describe(self) -> str:
        extra = " ".join(f"{k}={v:g}" for k, v in sorted(self.params.items()))
        return f"{self.kind}" + (f" ({extra})" if extra else "")


def select(spec: str | None) -> list[str]:
    """``--faults``: empty/``all`` = every kind; ``a,b`` = only these; ``-a,-b`` = all but these."""
    names = [s.strip() for s in (spec or "").split(",") if s.strip() and s.strip() != "all"]
    unknown = [n.lstrip("-") for n in names if n.lstrip("-") not in KINDS]
    if unknown:
        raise FaultSelectionError(f"unknown fault kind(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(KINDS)})")
    include = [n for n in names if not n.startswith("-")]
    exclude = {n[1:] for n in names if n.startswith("-")}
    chosen = include or list(KINDS)
    return [k for k in KINDS if k in chosen and k not in exclude]


def _params(kind: str, rng: random.Random) -> dict[str, float]:
    if kind == "redis-stop":
        return {"seconds": round(rng.uniform(5, 15), 1)}
    if kind == "redis-kill":
        return {"down": round(rng.uniform(1, 6), 1)}
    if kind == "redis-wipe":
        return {"down": round(rng.uniform(1.5, 6), 1)}
    if kind == "daemon-restart-redis-down":
        return {"before": round(rng.uniform(2, 5), 1), "after": round(rng.uniform(3, 8), 1)}
    if kind == "daemon-kill":
        return {"down": round(rng.uniform(0, 3), 1)}
    if kind == "stream-503":
        return {"times": float(rng.randint(1, 2))}
    if kind == "stream-stall":
        return {"extra": round(rng.uniform(1, 4), 1)}
    if kind == "disk-full":
        return {"seconds": round(rng.uniform(3, 10), 1)}
    if kind == "delete-segment":
        return {"pick": round(rng.random(), 3)}
    return {}


#: rough seconds each kind keeps the system busy (so the next one is not planned inside it)
_BUSY = {"redis-stop": 15.0, "redis-kill": 8.0, "redis-wipe": 8.0, "daemon-restart-redis-down": 20.0,
         "daemon-kill": 8.0, "daemon-term": 10.0, "stream-stall": 16.0, "stream-503": 16.0,
         "stream-420": 12.0, "disk-full": 10.0, "delete-segment": 16.0}


def plan(seed: int, duration: float, kinds: Iterable[str], warmup: float = 5.0,
         settle: tuple[float, float] = (3.0, 12.0)) -> list[Planned]:
    """The faults of one run: start times within ``[warmup, duration)``, kinds in shuffled rounds."""
    kinds = list(kinds)
    rng = random.Random(seed)
    out: list[Planned] = []
    t = warmup + rng.uniform(0, settle[0])
    bag: list[str] = []
    while kinds and t < duration:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
        kind = bag.pop()
        out.append(Planned(math.floor(t * 10) / 10, kind, _params(kind, rng)))  # never past the end
        t += _BUSY.get(kind, 4.0) + rng.uniform(*settle)
    return out

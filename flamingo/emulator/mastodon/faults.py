"""What can go wrong with a Mastodon streaming server, by script or by call.

``drop`` closes every streaming connection at once (an nginx reload, a
crashed streaming process); ``refuse`` answers streaming requests (upgrade,
SSE, health) 502 for ``seconds`` while the timeline keeps making statuses;
``stall`` keeps connections open but silent (no events, no pings, no
reads) for ``seconds``. A scripted fault fires once ``after`` events have
been made (``drop:after=100``, ``refuse:after=100,seconds=10``).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = ["MastoFault", "MastoFaults", "KINDS"]

KINDS = {
    "drop": "close every streaming connection (after=N events made)",
    "refuse": "answer streaming requests 502 for seconds=T (after=N)",
    "stall": "keep streaming connections open and silent for seconds=T (after=N)",
}


@attrs.frozen
class MastoFault:
    kind: str = attrs.field(validator=attrs.validators.in_(tuple(KINDS)))
    after: int = 0
    seconds: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> MastoFault:
        """``refuse:after=100,seconds=10`` (ValueError naming what is wrong)."""
        kind, _, rest = spec.partition(":")
        after, seconds = 0, 0.0
        for part in filter(None, rest.split(",")):
            name, _, value = part.partition("=")
            if name == "after":
                after = int(value)
            elif name == "seconds":
                seconds = float(value)
            else:
                raise ValueError(f"fault {spec!r}: unknown key {name!r} (after, seconds)")
        if kind not in KINDS:
            raise ValueError(f"fault {spec!r}: unknown kind {kind!r} ({', '.join(KINDS)})")
        return cls(kind, after, seconds)


@attrs.define
class MastoFaults:
    """Pending scripted faults, and the refusal window now."""

    now: Callable[[], float]
    pending: list[MastoFault] = attrs.Factory(list)
    refuse_until: float = 0.0
    health_ok: bool = False  # refusing: /health still answers OK (only the streams are refused)
    fired: list[tuple[float, MastoFault]] = attrs.Factory(list)

    def refusing(self) -> bool:
        return self.now() < self.refuse_until

    def refuse(self, seconds: float, health: bool = False) -> None:
        self.refuse_until = max(self.refuse_until, self.now() + seconds)
        self.health_ok = health

    def due(self, made: int) -> list[MastoFault]:
        """Faults whose ``after`` is reached, removed from the plan."""
        ready = [f for f in self.pending if f.after <= made]
        self.pending = [f for f in self.pending if f.after > made]
        for f in ready:
            self.fired.append((self.now(), f))
        return ready

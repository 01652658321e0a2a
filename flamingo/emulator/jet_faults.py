"""The Jetstream emulator's scripted faults: what goes wrong, on which connection, when.

From the Python API (``emu.faults.add(JetFault("drop", after=100))``), CLI
flags (``--fault drop:after=100``) or a YAML script (``--script``)::

    faults:
      - {kind: drop, after: 100}
      - {kind: refuse, seconds: 30}
      - {kind: too_slow, after: 500}

Stream faults (drop, close, too_slow, stall) apply to the next ``times``
connections and fire once ``after`` events were sent on them. ``refuse``
answers every handshake with ``code`` (503) for ``seconds`` from when the
fault is added (or the next ``times`` handshakes when ``seconds`` is 0),
while events keep being made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

__all__ = ["JetFault", "JetFaults", "KINDS"]

#: kind -> what it does (``flamingo emulator --source jetstream --help`` shows these)
KINDS: dict[str, str] = {
    "drop": "after AFTER events, cut the TCP connection (no close frame; what is in flight is lost)",
    "close": "after AFTER events, send a close frame with CODE (default 1011) and end",
    "too_slow": "after AFTER events, send a ConsumerTooSlow error frame and cut the connection",
    "stall": "after AFTER events, send nothing and answer no ping for SECONDS",
    "refuse": "refuse handshakes with HTTP CODE (default 503) for SECONDS (or the next TIMES)",
}
_STREAM_KINDS = ("drop", "close", "too_slow", "stall")


@attrs.define
class JetFault:
    kind: str = attrs.field(validator=attrs.validators.in_(tuple(KINDS)))
    after: int = 0
    times: int = 1
    code: int | None = None
    seconds: float = 0.0
    until: float | None = None  # refuse: the clock time it ends (set when added)

    @classmethod
    def parse(cls, spec: str) -> JetFault:
        """``KIND[:key=value,...]`` (the CLI's ``--fault``)."""
        kind, _, rest = spec.partition(":")
        values: dict[str, str] = {}
        for part in filter(None, rest.split(",")):
            key, eq, value = part.partition("=")
            if not eq:
                raise ValueError(f"fault {spec!r}: expected key=value, got {part!r}")
            values[key.strip()] = value.strip()
        return cls.from_dict({"kind": kind.strip(), **values})

    @classmethod
    def from_dict(cls, item: Mapping[str, object]) -> JetFault:
        if not isinstance(item, Mapping) or "kind" not in item:
            raise ValueError(f"a fault needs a kind (one of {', '.join(KINDS)}): {item!r}")
        unknown = set(item) - {"kind", "after", "times", "code", "seconds"}
        if unknown:
            raise ValueError(f"fault keys are kind, after, times, code, seconds; got {sorted(unknown)}")
        try:
            return cls(kind=str(item["kind"]), after=int(str(item.get("after", 0))),
                       times=int(str(item.get("times", 1))),
                       code=int(str(item["code"])) if item.get("code") is not None else None,
                       seconds=float(str(item.get("seconds", 0))))
        except ValueError as e:
            raise ValueError(f"fault {dict(item)!r}: {e}") from None


class JetFaults:
    """The faults still to happen; connections take theirs when they open."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.pending: list[JetFault] = []
        self.fired: list[JetFault] = []

    def add(self, *faults: JetFault) -> None:
        for f in faults:
            if f.kind == "refuse" and f.seconds > 0:
                f.until = self.now() + f.seconds
            self.pending.append(f)

    def refusal(self) -> int | None:
        """The HTTP status to refuse a handshake with now, if a refuse fault is on."""
        now = self.now()
        for f in list(self.pending):
            if f.kind != "refuse":
                continue
            if f.until is not None:
                if now < f.until:
                    return f.code or 503
                self.pending.remove(f)
                continue
            f.times -= 1
            if f.times <= 0:
                self.pending.remove(f)
            self.fired.append(f)
            return f.code or 503
        return None

    def for_connection(self) -> JetFault | None:
        """The stream fault the next connection carries (the first in script order)."""
        for f in self.pending:
            if f.kind in _STREAM_KINDS:
                f.times -= 1
                if f.times <= 0:
                    self.pending.remove(f)
                self.fired.append(f)
                return f
        return None

"""Fault scripting: what goes wrong, on which connection, after how many messages.

Faults come from the Python API (``emu.faults.close_after(10)``), from CLI
flags (``--fault close_after:after=10``) or a YAML script::

    faults:
      - {kind: status, code: 503, times: 2}
      - {kind: close_after, after: 100}
      - {kind: stall, after: 5, seconds: 95}

Connection-level faults (``status``) answer the next ``times`` attempts;
stream faults apply to the next ``times`` streaming connections and fire
once ``after`` messages were sent on them. ``refuse`` starts at once and
resets every connection for ``seconds``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable

import attrs

from flamingo._types import JsonObject

__all__ = ["Fault", "FaultPlan", "KINDS", "STATUS_CODES"]

#: kind -> short description (also shown by ``flamingo emulator --help``)
KINDS: dict[str, str] = {
    "status": "answer HTTP status CODE to the next TIMES connection attempts (or to all for SECONDS)",
    "refuse": "reset every connection attempt for SECONDS (from now)",
    "close_after": "close the stream after AFTER messages",
    "close_mid_message": "after AFTER messages, send half of the next one and close",
    "stall": "after AFTER messages send nothing (not even keep-alives) for SECONDS",
    "drip": "from AFTER messages on, send BYTES bytes every SECONDS (slow drip)",
    "garbage": "after AFTER messages send DATA (default: random binary bytes)",
    "malformed_json": "after AFTER messages send a line that is not valid JSON",
    "bad_length": "after AFTER messages send a truncated (LENGTH=truncated) or absurd (LENGTH=absurd) length prefix",
    "connection_limit": "after AFTER messages send the plain-text line 'Exceeded connection limit for user'",
    "disconnect": "after AFTER messages send a disconnect message with CODE, then close",
    "repeat": "(X) after AFTER messages send the last COUNT posts again: duplicates, out of order",
}
STATUS_CODES = (401, 403, 404, 406, 413, 416, 420, 429, 500, 503)
STATUS_KINDS = ("status", "refuse")

DISCONNECT_REASONS = {
    1: "Shutdown",
    2: "Duplicate stream",
    3: "Control request",
    4: "Stall",
    5: "Normal",
    6: "Token revoked",
    7: "Admin logout",
    8: "Reserved",
    9: "Max message limit",
    10: "Stream exception",
    11: "Broker stall",
    12: "Shed load",
}


@attrs.define
class Fault:
    """One scripted misbehaviour (see ``KINDS``)."""

    kind: str = attrs.field(validator=attrs.validators.in_(tuple(KINDS)))
    after: int = 0
    times: int = 1
    code: int | None = None
    seconds: float = 0.0
    bytes: int = 1
    data: builtins.bytes | None = None  # builtins: the field above is named bytes
    length: str = "absurd"
    count: int = 1

    def __attrs_post_init__(self) -> None:
        if self.kind == "status" and self.code is None:
            raise ValueError("status fault needs a code")
        if self.kind == "disconnect" and self.code is None:
            self.code = 1
        if self.length not in ("absurd", "truncated"):
            raise ValueError("length must be absurd or truncated")
        if self.after < 0 or self.times < 1:
            raise ValueError("after must be >= 0 and times >= 1")

    @classmethod
    def from_dict(cls, d: JsonObject) -> Fault:
        d = dict(d)
        kind = d.pop("kind", None)
        if kind is None:  # shorthand: {close_after: 10}, {status: 503, times: 2}, {stall: 95}
            for k in KINDS:
                if k in d:
                    kind, value = k, d.pop(k)
                    if k in ("status", "disconnect"):
                        d["code"] = value
                    elif k in ("stall", "refuse"):
                        d["seconds"] = value
                    elif value is not None and value is not True:
                        d["after"] = value
                    break
        if kind is None:
            raise ValueError(f"fault without a kind: {d!r}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(KINDS)})")
        if isinstance(d.get("data"), str):
            d["data"] = d["data"].encode()
        unknown = set(d) - {"after", "times", "code", "seconds", "bytes", "data", "length", "count"}
        if unknown:
            raise ValueError(f"unknown fault option(s) {sorted(unknown)}")
        for key, number in (("after", int), ("times", int), ("code", int), ("bytes", int), ("count", int),
                            ("seconds", float)):
            if key in d and d[key] is not None:
                try:
                    d[key] = number(d[key])
                except (TypeError, ValueError):
                    raise ValueError(f"fault option {key}: not a number: {d[key]!r}") from None
        return cls(kind=kind, **d)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``KIND[:key=value,...]``, e.g. ``status:code=503,times=2`` or ``close_after:after=10``."""
        kind, _, rest = spec.partition(":")
        d: JsonObject = {"kind": kind.strip()}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"bad fault option {item!r} (want key=value)")
            d[key.strip()] = value.strip()
        return cls.from_dict(d)


class FaultPlan:
    """The queue of faults an emulator still has to play."""

    def __init__(self, now: Callable[[], float]):
        self._now = now
        self.pending: list[Fault] = []
        self.refuse_until = 0.0
        #: (code, until): status faults with ``seconds`` answer every attempt until then
        self.status_windows: list[tuple[int, float]] = []

    # -- building ----------------------------------------------------------
    def add(self, *faults: Fault) -> None:
        for fault in faults:
            if fault.kind == "refuse":
                self.refuse_until = max(self.refuse_until, self._now() + fault.seconds)
            elif fault.kind == "status" and fault.seconds > 0 and fault.code is not None:
                self.status_windows.append((fault.code, self._now() + fault.seconds))
            else:
                self.pending.append(fault)

    def clear(self) -> None:
        self.pending.clear()
        self.refuse_until = 0.0
        self.status_windows.clear()

    def respond_status(self, code: int, times: int = 1, seconds: float = 0.0) -> None:
        """Answer ``code`` to the next ``times`` attempts, or to every attempt for ``seconds``."""
        self.add(Fault("status", code=code, times=times, seconds=seconds))

    def refuse(self, seconds: float) -> None:
        self.add(Fault("refuse", seconds=seconds))

    def close_after(self, n: int, times: int = 1) -> None:
        self.add(Fault("close_after", after=n, times=times))

    def close_mid_message(self, after: int = 0, times: int = 1) -> None:
        self.add(Fault("close_mid_message", after=after, times=times))

    def stall(self, seconds: float, after: int = 0, times: int = 1) -> None:
        self.add(Fault("stall", after=after, seconds=seconds, times=times))

    def drip(self, bytes: int = 1, seconds: float = 0.01, after: int = 0, times: int = 1) -> None:
        self.add(Fault("drip", after=after, bytes=bytes, seconds=seconds, times=times))

    def garbage(self, after: int = 0, data: bytes | None = None, times: int = 1) -> None:
        self.add(Fault("garbage", after=after, data=data, times=times))

    def malformed_json(self, after: int = 0, times: int = 1) -> None:
        self.add(Fault("malformed_json", after=after, times=times))

    def bad_length(self, after: int = 0, length: str = "absurd", times: int = 1) -> None:
        self.add(Fault("bad_length", after=after, length=length, times=times))

    def connection_limit(self, after: int = 0, times: int = 1) -> None:
        self.add(Fault("connection_limit", after=after, times=times))

    def repeat(self, count: int, after: int = 0, times: int = 1) -> None:
        """X only: after ``after`` posts, send the last ``count`` again."""
        self.add(Fault("repeat", after=after, count=count, times=times))

    def disconnect(self, code: int, after: int = 0, times: int = 1) -> None:
        self.add(Fault("disconnect", after=after, code=code, times=times))

    # -- consuming ----------------------------------------------------------
    def refusing(self) -> bool:
        return self._now() < self.refuse_until

    def take_status(self) -> int | None:
        """The status to answer this attempt with, if one is scripted."""
        now = self._now()
        self.status_windows = [(code, until) for code, until in self.status_windows if now < until]
        if self.status_windows:
            return self.status_windows[0][0]
        for fault in self.pending:
            if fault.kind == "status":
                self._use(fault)
                return fault.code
        return None

    def take_stream_faults(self) -> list[Fault]:
        """The faults a new streaming connection plays, ordered by ``after``."""
        taken = [f for f in self.pending if f.kind not in STATUS_KINDS]
        for fault in taken:
            self._use(fault)
        return sorted((attrs.evolve(f, times=1) for f in taken), key=lambda f: f.after)

    def _use(self, fault: Fault) -> None:
        fault.times -= 1
        if fault.times <= 0:
            self.pending.remove(fault)

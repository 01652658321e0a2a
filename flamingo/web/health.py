"""``GET /health`` (liveness) and ``GET /ready`` (readiness), Kubernetes style.

Liveness asks "is the process itself sound?": the reactor runs and the
journal accepts writes. Restarting the daemon is the cure for a failure here,
so nothing outside the process (Redis) counts.

Readiness asks "is it doing its job?": Redis answers, the sink is not in an
error state and its backlog moves, the wader is not fatal. Every stall a
liveness probe cannot see — a sink that reconnects forever, a journal range it
cannot read, a checkpoint that never advances — shows here as a reason.

``assess`` is pure; :class:`Readiness` feeds it the App's parts and the clock.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.internet.interfaces import IReactorTime

from flamingo._types import JsonMapping, JsonObject
from flamingo.app import App, WaderControl

__all__ = ["liveness", "Reason", "REASONS", "ProgressWatch", "assess", "Readiness"]

#: Every reason /ready can give (each is a labelled gauge in /metrics).
REASONS = ("journal", "store", "sink_error", "sink_stuck", "wader_fatal")


def _ok() -> JsonObject:
    return {"ok": True, "reason": None}


def _bad(reason: str) -> JsonObject:
    return {"ok": False, "reason": reason}


def _status(app: App) -> JsonMapping | None:
    return app.delivery.status() if app.delivery is not None else None


def liveness(app: App) -> tuple[bool, dict[str, JsonObject]]:
    """``(ok, {"reactor": {...}, "journal": {...}})``, each ``{"ok", "reason"}``."""
    checks: dict[str, JsonObject] = {}
    running = getattr(app.reactor, "running", True)
    checks["reactor"] = _ok() if running else _bad("reactor is not running")
    checks["journal"] = _journal_check(_status(app))
    return all(c["ok"] for c in checks.values()), checks


def _journal_check(status: JsonMapping | None) -> JsonObject:
    if status is None:
        return _bad("delivery not started")
    journal = status.get("journal")
    if not isinstance(journal, Mapping):
        return _bad("delivery reports no journal")
    if journal.get("writable") is False or journal.get("error"):
        return _bad(str(journal.get("error") or "journal not writable"))
    return _ok()


@attrs.frozen
class Reason:
    """One thing that keeps the daemon from being ready."""

    reason: str  # one of REASONS
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "detail": self.detail}


@attrs.define
class ProgressWatch:
    """When the sink last moved, for a sink that does not say (no ``progress_at``).

    Moving means: the checkpoint changed, or there was nothing to deliver.
    The first observation counts as movement (nothing is known before it).
    """

    checkpoint: object = None
    moved_at: float | None = None

    def observe(self, checkpoint: object, backlog: float | None, now: float) -> float:
        if self.moved_at is None or not backlog or checkpoint != self.checkpoint:
            self.checkpoint = checkpoint
            self.moved_at = now
        return self.moved_at


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def stalled_for(sink: JsonMapping | None, backlog: float | None, now: float,
                watch: ProgressWatch) -> float:
    """Seconds the backlog has not moved (0 when there is none)."""
    if sink is None or not backlog:
        if sink is not None:
            watch.observe(sink.get("checkpoint"), backlog, now)
        return 0.0
    progress_at = _number(sink.get("progress_at"))
    moved_at = progress_at if progress_at is not None else \
        watch.observe(sink.get("checkpoint"), backlog, now)
    return max(0.0, now - moved_at)


def assess(*, status: JsonMapping | None, store_available: bool | None,
           wader: WaderControl | None, stalled: float, stuck_after: float) -> list[Reason]:
    """The reasons not to be ready (empty: ready). Pure."""
    reasons: list[Reason] = []
    journal = _journal_check(status)
    if not journal["ok"]:
        reasons.append(Reason("journal", journal["reason"]))
    if store_available is None:
        reasons.append(Reason("store", "store not started"))
    elif not store_available:
        reasons.append(Reason("store", "redis unreachable"))
    sink = status.get("redis") if status is not None else None
    sink = sink if isinstance(sink, Mapping) else None
    if sink is not None and sink.get("error"):
        reasons.append(Reason("sink_error", str(sink["error"])))
    if store_available and stalled >= stuck_after:
        backlog = _backlog(status, sink)
        reasons.append(Reason("sink_stuck", (
            f"a backlog of {backlog:.0f} events has not moved for {stalled:.0f}s "
            f"(health.stuck_after: {stuck_after:g}s) while Redis answers")))
    state = wader.state if wader is not None else None
    if state is not None and state.name == "fatal":
        reasons.append(Reason("wader_fatal", state.message or "the wader stopped on a fatal error"))
    return reasons


def _backlog(status: JsonMapping | None, sink: JsonMapping | None) -> float:
    for where in (sink, status):
        if where is not None:
            n = _number(where.get("backlog"))
            if n is not None:
                return n
    return 0.0


class Readiness:
    """/ready and the readiness gauges over one App, timed by ``clock``."""

    def __init__(self, app: App, clock: IReactorTime, stuck_after: float) -> None:
        self.app = app
        self.clock = clock
        self.stuck_after = stuck_after
        self.watch = ProgressWatch()

    def stalled(self, status: JsonMapping | None = None) -> float:
        """Seconds the sink's backlog has not moved; also what a periodic sample calls."""
        if status is None:
            status = _status(self.app)
        sink = status.get("redis") if status is not None else None
        sink = sink if isinstance(sink, Mapping) else None
        return stalled_for(sink, _backlog(status, sink), self.clock.seconds(), self.watch)

    def check(self) -> list[Reason]:
        status = _status(self.app)
        store = self.app.store
        return assess(status=status, store_available=None if store is None
                      else bool(store.available), wader=self.app.wader,
                      stalled=self.stalled(status), stuck_after=self.stuck_after)

"""``GET /health``: is the daemon able to do its job right now?

Three checks, each ``{"ok": bool, "reason": str | None}``: the reactor is
running, the journal accepts writes, Redis answers. Pure over an App so it is
tested without HTTP.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check"]


def _ok() -> dict[str, Any]:
    return {"ok": True, "reason": None}


def _bad(reason: str) -> dict[str, Any]:
    return {"ok": False, "reason": reason}


def check(app: Any) -> tuple[bool, dict[str, dict[str, Any]]]:
    checks: dict[str, dict[str, Any]] = {}

    reactor = app.reactor
    running = getattr(reactor, "running", True)
    checks["reactor"] = _ok() if running else _bad("reactor is not running")

    delivery = app.delivery
    if delivery is None or not hasattr(delivery, "status"):
        checks["journal"] = _bad("delivery not started")
    else:
        journal = delivery.status().get("journal")
        if not isinstance(journal, dict):
            checks["journal"] = _ok()  # a delivery without a journal (the stand-in)
        elif journal.get("writable") is False or journal.get("error"):
            checks["journal"] = _bad(str(journal.get("error") or "journal not writable"))
        else:
            checks["journal"] = _ok()

    store = app.store
    if store is None:
        checks["redis"] = _bad("store not started")
    elif not store.available:
        checks["redis"] = _bad("redis unreachable")
    else:
        checks["redis"] = _ok()

    return all(c["ok"] for c in checks.values()), checks

"""The state documents every control surface shows: /meta.json and /status.json.

REST serves them, the console's ``meta()`` and ``status()`` print them, and
the dashboard's snapshot reuses their parts; building them once keeps the
three from drifting apart.  Pure reads of an :class:`~flamingo.app.App`; the
time comes from the caller's clock.
"""

from __future__ import annotations

import os
import socket

from flamingo import __version__
from flamingo._types import JsonObject
from flamingo.app import App

__all__ = ["wader_state", "delivery_status", "redis_status", "stream_params", "stream_stats", "streams",
           "cursor_status", "gap_fill_status",
           "process_info", "meta_document", "status_document"]


def wader_state(app: App) -> JsonObject | None:
    """The wader's state as a dict, or None in a process without one."""
    return app.wader.state.to_dict() if app.wader is not None else None


def delivery_status(app: App) -> JsonObject:
    """Journal backlog and Redis delivery, or {} before delivery is built."""
    return app.delivery.status() if app.delivery is not None else {}


def redis_status(app: App) -> dict[str, bool]:
    return {"available": bool(app.store.available) if app.store is not None else False}


def stream_params(app: App) -> dict[str, list[str]]:
    """The configured stream's params from the store's copy ({} without a store)."""
    return app.store.params(app.config.stream) if app.store is not None else {}


def stream_stats(app: App, name: str) -> JsonObject:
    """A ``format: stream`` subscription's length, trims and consumer groups (lag, pending)."""
    stats = app.stats
    queue = stats.queues.get(name, {}) if stats is not None else {}
    seen = stats.streams.get(name, {}) if stats is not None else {}
    return {"length": queue.get("length"), "trimmed": queue.get("trimmed", 0),
            "pushed": queue.get("pushed", 0), "groups": list(seen.get("groups") or []),
            "at": seen.get("at")}


def streams(app: App) -> JsonObject:
    """``stream_stats`` of every stream subscription, by name."""
    subs = app.store.subscriptions() if app.store is not None else {}
    return {n: stream_stats(app, n) for n in sorted(subs) if subs[n].format == "stream"}


def cursor_status(app: App) -> JsonObject | None:
    """Jetstream's resume cursor and lag (None for sources without a cursor)."""
    return _provided(app, "cursor")


def gap_fill_status(app: App) -> JsonObject | None:
    """Mastodon's gap fills: counts, the last fill per stream, the newest ids, the REST
    budget (None for sources without gap filling)."""
    return _provided(app, "gap_fill")


def _provided(app: App, name: str) -> JsonObject | None:
    """A part's status document, as the stats hold its provider (None without one)."""
    doc = app.stats.provided(name) if app.stats is not None else None
    return doc if isinstance(doc, dict) else None


def process_info(app: App, now: float) -> JsonObject:
    """pid, version, host, running (as ``<ns>:meta:process``), start time and uptime."""
    started = app.started_at or None
    running = bool(started) and (app.wader is None or app.wader.state.name != "stopped")
    return {"pid": os.getpid(), "version": __version__, "host": socket.gethostname(),
            "running": running, "started_at": started,
            "uptime": (now - started) if started else None}


def meta_document(app: App, now: float) -> JsonObject:
    """What /meta.json shows: the stats snapshot, process info, the stream, the wader."""
    snapshot = app.stats.snapshot() if app.stats is not None else {}
    # an X filter daemon's rule sync comes with the snapshot (a stats provider, "rules")
    return {**snapshot, "process": process_info(app, now), "stream": app.config.stream,
            "source": app.config.source, "wader": wader_state(app)}


def status_document(app: App, now: float) -> JsonObject:
    """What /status.json shows: the wader's state, backlog, Redis, delivery, process."""
    wader = wader_state(app)
    state = wader or {}
    delivery = delivery_status(app)
    return {
        "wader": wader,
        "state": state.get("name"),
        "request_line": state.get("request_line"),
        "connected_since": state.get("connected_since"),
        "stream": {"name": app.config.stream, "params": stream_params(app)},
        "source": app.config.source,
        "cursor": cursor_status(app),
        "journal_backlog": delivery.get("backlog", delivery.get("journal_backlog")),
        "redis": redis_status(app),
        "delivery": delivery,
        "streams": streams(app),
        "process": process_info(app, now),
        "gap_fill": gap_fill_status(app),
        "rules": app.rules.status() if app.rules is not None else None,  # X filter rules' sync
    }

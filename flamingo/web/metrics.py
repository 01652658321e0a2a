"""``GET /metrics``: the daemon's numbers in Prometheus text format.

A custom ``Collector`` reads ``stats.snapshot()``, the wader's state, the
delivery status and the store on every scrape (nothing is double-counted or
kept twice), registered on a private ``CollectorRegistry`` so the process-wide
default registry is never touched.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = ["FlamingoCollector", "Metrics", "WADER_STATES"]

WADER_STATES = ("connecting", "connected", "retrying", "fatal", "waiting_for_params", "stopped")


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _first(d: Any, *paths: tuple[str, ...]) -> Any:
    for path in paths:
        v = _get(d, *path)
        if v is not None:
            return v
    return None


def _labelled(family: Any, values: Any, *, skip: Iterable[str] = ()) -> Any:
    """Fill a one-label family from a ``{label: number}`` mapping."""
    if isinstance(values, Mapping):
        for label, value in sorted(values.items(), key=lambda kv: str(kv[0])):
            n = _num(value)
            if n is not None and str(label) not in skip:
                family.add_metric([str(label)], n)
    return family


class FlamingoCollector(Collector):
    """Everything the dashboards need, read fresh at each scrape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        app = self.app
        snap: dict[str, Any] = {}
        if app.stats is not None:
            try:
                snap = app.stats.snapshot() or {}
            except Exception:  # a metrics scrape never fails the daemon
                snap = {}
        yield from self._events(snap)
        yield from self._connection(app, snap)
        yield from self._delivery(app, snap)

    def _events(self, snap: Mapping[str, Any]) -> Iterator[Any]:
        by_type = _first(snap, ("events", "by_type"), ("events_by_type",), ("events",))
        yield _labelled(CounterMetricFamily(
            "flamingo_events", "Events received, by type", labels=["type"]), by_type,
            skip=("total", "by_type"))
        rates = _first(snap, ("rates",), ("events", "rates"))
        fam = GaugeMetricFamily("flamingo_event_rate", "Events per second over a window",
                                labels=["window"])
        if isinstance(rates, Mapping):
            for window, value in sorted(rates.items()):
                n = _num(value)
                if n is not None and not str(window).startswith("bytes"):
                    fam.add_metric([str(window)], n)
        yield fam
        bps = _first(snap, ("bytes_per_second",), ("rates", "bytes_per_second"), ("bytes_rate",))
        fam = GaugeMetricFamily("flamingo_bytes_per_second", "Stream bytes per second")
        if _num(bps) is not None:
            fam.add_metric([], _num(bps))  # type: ignore[arg-type]
        yield fam
        last = _num(_first(snap, ("last_event_at",), ("last_event_time",), ("events", "last_at")))
        fam = GaugeMetricFamily("flamingo_last_event_timestamp_seconds",
                                "Epoch time of the last event received")
        if last is not None:
            fam.add_metric([], last)
        yield fam
        for name, paths, doc in (
            ("flamingo_limit_skipped", (("limit", "skipped"), ("limit", "undelivered"),
                                        ("limit", "track"), ("skipped",)),
             "Tweets the API said it did not deliver (limit notices)"),
            ("flamingo_coverage_ratio", (("limit", "coverage"), ("coverage",)),
             "Delivered / (delivered + skipped)"),
        ):
            fam = GaugeMetricFamily(name, doc)
            v = _num(_first(snap, *paths))
            if v is not None:
                fam.add_metric([], v)
            yield fam
        for name, key, doc in (("flamingo_duplicates", "duplicates", "Duplicates dropped"),
                               ("flamingo_parse_errors", "parse_errors", "Unparseable frames")):
            value = snap.get(key)
            fam = CounterMetricFamily(name, doc, labels=["kind"])
            if isinstance(value, Mapping):
                _labelled(fam, value, skip=("total", "sample", "samples", "last_sample"))
            elif _num(value) is not None:
                fam.add_metric(["all"], _num(value))  # type: ignore[arg-type]
            yield fam

    def _connection(self, app: Any, snap: Mapping[str, Any]) -> Iterator[Any]:
        reconnects = _first(snap, ("reconnects", "by_cause"), ("reconnects",),
                            ("connection_attempts",))
        yield _labelled(CounterMetricFamily(
            "flamingo_reconnects", "Connection attempts, by cause", labels=["cause"]),
            reconnects, skip=("total",))
        disconnects = _first(snap, ("disconnects",), ("disconnect_messages",))
        yield _labelled(CounterMetricFamily(
            "flamingo_disconnect_messages", "Disconnect messages, by code", labels=["code"]),
            disconnects, skip=("total", "last"))
        state = None
        wader = app.wader
        if wader is not None:
            state = wader.state
        names = list(WADER_STATES)
        current = getattr(state, "name", None)
        if current is not None and current not in names:
            names.append(current)
        yield StateSetMetricFamily("flamingo_wader_state", "The wader's state",
                                   value={n: n == current for n in names})
        fam = GaugeMetricFamily("flamingo_wader_attempt", "Consecutive failed attempts")
        fam.add_metric([], float(getattr(state, "attempt", 0) or 0))
        yield fam
        since = _num(getattr(state, "connected_since", None))
        fam = GaugeMetricFamily("flamingo_wader_connected_since_seconds",
                                "Epoch time the current connection started")
        if since is not None:
            fam.add_metric([], since)
        yield fam

    def _delivery(self, app: Any, snap: Mapping[str, Any]) -> Iterator[Any]:
        status: Mapping[str, Any] = {}
        if app.delivery is not None and hasattr(app.delivery, "status"):
            try:
                status = app.delivery.status() or {}
            except Exception:
                status = {}
        backlog = _num(_first(status, ("journal_backlog",), ("backlog",)))
        if backlog is None:
            backlog = _num(_first(snap, ("journal", "backlog"), ("journal_backlog",)))
        fam = GaugeMetricFamily("flamingo_journal_backlog",
                                "Events journaled but not yet delivered to Redis")
        if backlog is not None:
            fam.add_metric([], backlog)
        yield fam
        size = _num(_first(snap, ("journal", "bytes"), ("journal", "size"), ("journal_size",)))
        fam = GaugeMetricFamily("flamingo_journal_bytes", "Bytes held in the journal")
        if size is not None:
            fam.add_metric([], size)
        yield fam
        queues = _first(snap, ("queues",), ("queue_lengths",))
        q_len = GaugeMetricFamily("flamingo_queue_length", "Redis list length per subscription",
                                  labels=["subscription"])
        q_trim = CounterMetricFamily("flamingo_queue_trimmed",
                                     "Events trimmed by max_length per subscription",
                                     labels=["subscription"])
        if isinstance(queues, Mapping):
            for name, q in sorted(queues.items()):
                if isinstance(q, Mapping):
                    n = _num(_first(q, ("length",), ("len",)))
                    if n is not None:
                        q_len.add_metric([str(name)], n)
                    t = _num(q.get("trimmed"))
                    if t is not None:
                        q_trim.add_metric([str(name)], t)
                elif _num(q) is not None:
                    q_len.add_metric([str(name)], _num(q))  # type: ignore[arg-type]
        yield q_len
        yield q_trim
        store = app.store
        redis_up = _first(status, ("redis_reachable",), ("redis_available",))
        if redis_up is None and store is not None:
            redis_up = store.available
        fam = GaugeMetricFamily("flamingo_redis_up", "1 when Redis answers")
        fam.add_metric([], 1.0 if redis_up else 0.0)
        yield fam


class Metrics:
    """A private registry holding one FlamingoCollector."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, app: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FlamingoCollector(app))

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""``GET /metrics``: the daemon's numbers in Prometheus text format.

A custom ``Collector`` reads ``stats.snapshot()``, the wader's state, the
delivery status and the store on every scrape (nothing is double-counted or
kept twice), registered on a private ``CollectorRegistry`` so the process-wide
default registry is never touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from flamingo._types import JsonMapping, JsonObject
from flamingo.app import App
from flamingo.web import documents
from flamingo.web.health import REASONS, Readiness

__all__ = ["FlamingoCollector", "Metrics", "WADER_STATES"]

WADER_STATES = ("connecting", "connected", "retrying", "fatal", "waiting_for_params", "stopped")


def _num(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _get(d: object, *path: str) -> object:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _first(d: object, *paths: tuple[str, ...]) -> object:
    for path in paths:
        v = _get(d, *path)
        if v is not None:
            return v
    return None


#: the families this collector builds
Family = CounterMetricFamily | GaugeMetricFamily
#: a one-label family: counter or gauge
F = TypeVar("F", CounterMetricFamily, GaugeMetricFamily)


def _labelled(family: F, values: object, *, skip: Iterable[str] = ()) -> F:
    """Fill a one-label family from a ``{label: number}`` mapping."""
    if isinstance(values, Mapping):
        for label, value in sorted(values.items(), key=lambda kv: str(kv[0])):
            n = _num(value)
            if n is not None and str(label) not in skip:
                family.add_metric([str(label)], n)
    return family


class FlamingoCollector(Collector):
    """Everything the dashboards need, read fresh at each scrape."""

    def __init__(self, app: App, readiness: Readiness | None = None) -> None:
        self.app = app
        self.readiness = readiness  # the /ready gauges, when given

    def collect(self) -> Iterator[Metric]:
        app = self.app
        snap: JsonObject = app.stats.snapshot() if app.stats is not None else {}
        yield from self._events(snap)
        yield from self._connection(app, snap)
        yield from self._delivery(app, snap)
        yield from self._gap_fill(snap)
        yield from self._source(app)
        if self.readiness is not None:
            yield from self._ready(self.readiness)

    def _events(self, snap: JsonMapping) -> Iterator[Metric]:
        yield _labelled(CounterMetricFamily(
            "flamingo_events", "Events received, by type", labels=["type"]),
            _get(snap, "events", "by_type"))
        fam: Family = CounterMetricFamily("flamingo_received_bytes", "Stream bytes received")
        total = _num(_get(snap, "events", "bytes"))
        if total is not None:
            fam.add_metric([], total)
        yield fam
        ev = GaugeMetricFamily("flamingo_event_rate", "Events per second over a window",
                               labels=["window"])
        by = GaugeMetricFamily("flamingo_bytes_rate", "Stream bytes per second over a window",
                               labels=["window"])
        rates = snap.get("rates")
        if isinstance(rates, Mapping):
            for window, r in sorted(rates.items()):
                for fam, key in ((ev, "events_per_sec"), (by, "bytes_per_sec")):
                    n = _num(_get(r, key))
                    if n is not None:
                        fam.add_metric([str(window)], n)
        yield ev
        yield by
        for name, path, doc in (
            ("flamingo_last_event_timestamp_seconds", ("last_event_at",),
             "Epoch time of the last event received"),
            ("flamingo_limit_skipped", ("limit", "skipped"),
             "Tweets the API said it did not deliver on this connection (limit notices)"),
            ("flamingo_coverage_percent", ("limit", "coverage"),
             "Tweets delivered / (delivered + skipped), in percent"),
            ("flamingo_keepalives", ("connection", "keepalives"), "Keep-alive newlines received"),
            ("flamingo_cursor_time_us", ("cursor", "time_us"),
             "Jetstream: time_us of the newest event handed on (the resume cursor)"),
            ("flamingo_cursor_lag_seconds", ("cursor", "lag_seconds"),
             "Jetstream: now minus the newest event's time_us"),
        ):
            fam = GaugeMetricFamily(name, doc)
            v = _num(_get(snap, *path))
            if v is not None:
                fam.add_metric([], v)
            yield fam
        fam = CounterMetricFamily("flamingo_duplicates", "Duplicates dropped (overlap dedupe)")
        v = _num(snap.get("duplicates"))
        if v is not None:
            fam.add_metric([], v)
        yield fam
        yield _labelled(CounterMetricFamily(
            "flamingo_parse_errors", "Frames that could not be parsed, by kind", labels=["kind"]),
            _get(snap, "parse_errors", "by_kind"))

    def _gap_fill(self, snap: JsonMapping) -> Iterator[Metric]:
        """Mastodon: statuses recovered from the REST timelines after reconnects and restarts."""
        gap = snap.get("gap_fill")
        if not isinstance(gap, Mapping):
            return
        for name, key, doc in (
            ("flamingo_gap_fills", "fills", "Gap fills run (after a reconnect or restart)"),
            ("flamingo_gap_fill_statuses", "statuses", "Statuses recovered by gap fills"),
            ("flamingo_gap_fill_pages", "pages", "REST timeline pages read by gap fills"),
            ("flamingo_gap_fill_truncated", "truncated", "Streams whose gap was not closed (gap_max, rate limit)"),
            ("flamingo_gap_fill_failed", "failed", "Streams whose gap fill failed"),
        ):
            fam: Family = CounterMetricFamily(name, doc)
            v = _num(gap.get(key))
            if v is not None:
                fam.add_metric([], v)
            yield fam
        fam = GaugeMetricFamily("flamingo_rest_ratelimit_remaining",
                                "REST requests left in the account's rate-limit window (X-RateLimit-Remaining)")
        v = _num(_get(gap, "rate_limit", "remaining"))
        if v is not None:
            fam.add_metric([], v)
        yield fam

    def _connection(self, app: App, snap: JsonMapping) -> Iterator[Metric]:
        yield _labelled(CounterMetricFamily(
            "flamingo_connection_attempts", "Connection attempts, by cause", labels=["cause"]),
            _get(snap, "connection", "attempts_by_cause"))
        fam: Family = CounterMetricFamily("flamingo_reconnects", "Connections made after the first")
        v = _num(_get(snap, "connection", "reconnects"))
        if v is not None:
            fam.add_metric([], v)
        yield fam
        codes: dict[str, int] = {}
        for d in snap.get("disconnects") or ():
            if isinstance(d, Mapping):
                code = str(d.get("code"))
                codes[code] = codes.get(code, 0) + 1
        yield _labelled(CounterMetricFamily(
            "flamingo_disconnect_messages", "Disconnect messages (recent), by code",
            labels=["code"]), codes)
        state = documents.wader_state(app) or {}
        names = list(WADER_STATES)
        current = state.get("name")
        if current is not None and current not in names:
            names.append(current)
        yield StateSetMetricFamily("flamingo_wader_state", "The wader's state",
                                   value={n: n == current for n in names})
        fam = GaugeMetricFamily("flamingo_wader_attempt", "Consecutive failed attempts")
        fam.add_metric([], float(state.get("attempt") or 0))
        yield fam
        since = _num(state.get("connected_since"))
        fam = GaugeMetricFamily("flamingo_wader_connected_since_seconds",
                                "Epoch time the current connection started")
        if since is not None:
            fam.add_metric([], since)
        yield fam

    def _delivery(self, app: App, snap: JsonMapping) -> Iterator[Metric]:
        status: JsonMapping = documents.delivery_status(app)
        fam: Family = GaugeMetricFamily("flamingo_journal_backlog",
                                "Events journaled but not yet delivered to Redis")
        backlog = _num(_first(status, ("backlog",), ("journal_backlog",)))
        if backlog is not None:
            fam.add_metric([], backlog)
        yield fam
        journal = status.get("journal") if isinstance(status.get("journal"), Mapping) else \
            snap.get("journal")
        for name, key, doc in (("flamingo_journal_bytes", "bytes", "Bytes held in the journal"),
                               ("flamingo_journal_segments", "segments", "Journal files"),
                               ("flamingo_journal_writable", "writable",
                                "1 when the journal accepts writes")):
            fam = GaugeMetricFamily(name, doc)
            v = _num(_get(journal, key))
            if v is not None:
                fam.add_metric([], v)
            yield fam
        fam = CounterMetricFamily("flamingo_journal_errors", "Journal write errors")
        v = _num(_get(journal, "errors"))
        if v is not None:
            fam.add_metric([], v)
        yield fam
        q_len = GaugeMetricFamily("flamingo_queue_length", "Redis list length per subscription",
                                  labels=["subscription"])
        q_trim = CounterMetricFamily("flamingo_queue_trimmed",
                                     "Events trimmed by max_length per subscription",
                                     labels=["subscription"])
        q_push = CounterMetricFamily("flamingo_queue_pushed", "Events pushed per subscription",
                                     labels=["subscription"])
        queues = snap.get("queues")
        if isinstance(queues, Mapping):
            for name, q in sorted(queues.items()):
                for fam, key in ((q_len, "length"), (q_trim, "trimmed"), (q_push, "pushed")):
                    n = _num(_get(q, key))
                    if n is not None:
                        fam.add_metric([str(name)], n)
        yield q_len
        yield q_trim
        yield q_push
        yield from self._groups(snap)
        redis_up = _get(status, "redis", "connected")
        if redis_up is None and app.store is not None:
            redis_up = app.store.available
        fam = GaugeMetricFamily("flamingo_redis_up", "1 when Redis answers")
        fam.add_metric([], 1.0 if redis_up else 0.0)
        yield fam
        yield from self._pace(status)

    def _pace(self, status: JsonMapping) -> Iterator[Metric]:
        """The Redis sink pacing the stream (``redis.pace``), and what it read back from disk."""
        pace = _get(status, "redis", "pace")
        for name, key, doc in (("flamingo_sink_pacing", "holding",
                                "1 while the Redis sink holds the stream's reader (Redis slower than the stream)"),
                               ("flamingo_sink_pace_suspended_seconds", "suspended_for",
                                "Seconds pacing stays off after the source said the client falls behind")):
            fam: Family = GaugeMetricFamily(name, doc)
            v = _num(_get(pace, key))
            if v is not None:
                fam.add_metric([], v)
            yield fam
        for name, path, doc in (("flamingo_sink_paced_seconds", ("pace", "held_seconds"),
                                 "Seconds the Redis sink held the stream's reader"),
                                ("flamingo_sink_memory_dropped", ("memory_dropped",),
                                 "Events dropped from the sink's memory and read back from disk")):
            fam = CounterMetricFamily(name, doc)
            v = _num(_get(status, "redis", *path))
            if v is not None:
                fam.add_metric([], v)
            yield fam


    def _groups(self, snap: JsonMapping) -> Iterator[Metric]:
        """format stream: each consumer group's lag and pending entries (XINFO GROUPS)."""
        lag = GaugeMetricFamily("flamingo_stream_group_lag",
                                "Stream entries not yet delivered to the consumer group",
                                labels=["subscription", "group"])
        pending = GaugeMetricFamily("flamingo_stream_group_pending",
                                    "Entries delivered to the group and not yet acknowledged (XACK)",
                                    labels=["subscription", "group"])
        streams = snap.get("streams")
        if isinstance(streams, Mapping):
            for name, st in sorted(streams.items()):
                groups = st.get("groups") if isinstance(st, Mapping) else None
                for g in groups if isinstance(groups, list) else ():
                    if not isinstance(g, Mapping):
                        continue
                    for fam, key in ((lag, "lag"), (pending, "pending")):
                        n = _num(g.get(key))
                        if n is not None:
                            fam.add_metric([str(name), str(g.get("name"))], n)
        yield lag
        yield pending

    def _source(self, app: App) -> Iterator[Metric]:
        fam: Family = GaugeMetricFamily("flamingo_source_info", "The source this daemon reads (1)",
                                        labels=["source", "stream"])
        fam.add_metric([app.config.source, app.config.stream], 1.0)
        yield fam
        if app.rules is None:
            return
        st = app.rules.status()
        yield _labelled(GaugeMetricFamily("flamingo_x_rules", "X filter rules, by sync status",
                                          labels=["status"]),
                        {k: st.get(k, 0) for k in ("pending", "active", "rejected")})
        fam = GaugeMetricFamily("flamingo_x_rules_last_sync_seconds", "Epoch time of the last complete rule sync")
        last = _num(st.get("last_sync"))
        if last is not None:
            fam.add_metric([], last)
        yield fam
        fam = GaugeMetricFamily("flamingo_x_rules_sync_failing", "1 while the last rule sync attempt failed")
        fam.add_metric([], 1.0 if st.get("error") else 0.0)
        yield fam

    def _ready(self, readiness: Readiness) -> Iterator[Metric]:
        """What /ready says, as gauges an alert can name."""
        reasons = {r.reason for r in readiness.check()}
        fam = GaugeMetricFamily("flamingo_ready", "1 when GET /ready answers 200")
        fam.add_metric([], 0.0 if reasons else 1.0)
        yield fam
        fam = GaugeMetricFamily("flamingo_not_ready", "1 while this reason keeps /ready at 503",
                                labels=["reason"])
        for reason in REASONS:
            fam.add_metric([reason], 1.0 if reason in reasons else 0.0)
        yield fam
        fam = GaugeMetricFamily("flamingo_sink_stalled_seconds",
                                "Seconds the sink's backlog has not moved (0: moving or empty)")
        fam.add_metric([], readiness.stalled())
        yield fam


class Metrics:
    """A private registry holding one FlamingoCollector."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, app: App, readiness: Readiness | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FlamingoCollector(app, readiness))

    def render(self) -> bytes:
        return generate_latest(self.registry)

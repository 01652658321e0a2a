"""Turning a run's results into the table, the target ratios and ``latest.json``."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

import psutil

__all__ = ["machine", "derive", "table", "targets", "render"]

#: The issue's targets (they guide tuning; the bench reports ratios, it does not assert).
FIREHOSE_2013_AVG = 5_700
TARGET_S1 = 60_000
TARGET_S1_LIMIT_SHARE = 0.60
TARGET_S3 = 143_000
TARGET_BASELINE_X = 5.0
TARGET_P99_MS = 50.0
TARGET_RSS_MB = 200.0
TARGET_STABLE = 0.85  # the sustained run's last window within 15% of its first


def _version(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else out.strip()[:60]


def machine() -> dict[str, Any]:
    """What the numbers were taken on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import twisted

    try:
        import txredisapi

        txredis = getattr(txredisapi, "__version__", None)
    except ImportError:
        txredis = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "twisted": twisted.__version__,
        "txredisapi": txredis,
        "redis": _version(["redis-server", "--version"]),
        "loadavg_at_start": load,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def ceilings(stages: dict[str, float], cpu_s_per_million: float | None, cores: int) -> dict[str, Any]:
    """What the machine and the reactor thread could do at the CPU per event measured.

    ``machine``: ``cores / (daemon + redis-server + emulator CPU s per event)``, the
    rate at which the three processes of a scenario would keep every core busy
    (the bench's own polling not counted); ``reactor``: ``1 / reactor-thread CPU s
    per event``, the rate at which the daemon's main thread would be one full core.
    ``stages`` are CPU µs per event (``stages_us_per_event``).
    """
    daemon = (stages["main_thread"] + stages["other_threads"]
              if "main_thread" in stages and "other_threads" in stages else cpu_s_per_million)
    redis_us, emu_us = stages.get("redis_process"), stages.get("emulator_process")
    out: dict[str, Any] = {"daemon_us": daemon, "redis_us": redis_us, "emulator_us": emu_us,
                           "machine_events_per_s": None, "reactor_events_per_s": None}
    if daemon and redis_us is not None and emu_us is not None:
        out["machine_events_per_s"] = round(cores * 1e6 / (daemon + redis_us + emu_us))
    if stages.get("main_thread"):
        out["reactor_events_per_s"] = round(1e6 / stages["main_thread"])
    return out


def derive(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario with the ratios to the limit and to the baseline."""
    rows = []
    cores = int((results.get("machine") or {}).get("cores") or os.cpu_count() or 1)
    for key, sc in results["scenarios"].items():
        data = f"{sc['size']}{'+gzip' if sc['gzip'] else ''}"
        other_data = sc.get("source", "twitter") != "twitter"  # v1.1 limits and baselines do not apply
        lim = {} if other_data else results["limits"].get(data) or {}
        base = {} if other_data else results["baselines"].get(data) or {}
        like = results["baselines"].get(f"{data}+subs4") or {} if sc.get("like_baseline") else {}
        mean = lim.get("mean_message_bytes") or 0
        pushes = max(1, sum(1 for s in sc["subscriptions"] if "terms" not in s))
        redis_limit = (lim.get("redis_rpush_per_s") or 0) / pushes or None
        rate = sc["events_per_s"]
        row = {
            "scenario": key,
            "title": sc["title"],
            "events_per_s": rate,
            "mb_per_s": round(rate * mean / 1e6, 1) if mean else None,
            "redis_limit_events_per_s": round(redis_limit, 1) if redis_limit else None,
            "curl_limit_events_per_s": lim.get("curl_events_per_s"),
            "vs_redis_limit": _ratio(rate, redis_limit),
            "vs_curl_limit": _ratio(rate, lim.get("curl_events_per_s")),
            "baseline_events_per_s": base.get("events_per_s"),
            "vs_baseline": _ratio(rate, base.get("events_per_s")),
            # the same subscriptions done the naive way (bench.baseline --subs4), where measured
            "like_baseline_events_per_s": like.get("events_per_s"),
            "vs_like_baseline": _ratio(rate, like.get("events_per_s")),
            "peak_rss_mb": sc["peak_rss_mb"],
            "cpu_s_per_million": sc["cpu_s_per_million"],
            "log_covers_redis": sc["log_covers_redis"],
            "foreign_cores": sc.get("foreign_cores"),
            # what one fully used core would give at the measured CPU cost per event
            "one_core_events_per_s": round(1e6 / sc["cpu_s_per_million"]) if sc.get("cpu_s_per_million") else None,
            "pagecache_limit_events_per_s": lim.get("pagecache_everysec_events_per_s"),
            "vs_pagecache_limit": _ratio(rate, lim.get("pagecache_everysec_events_per_s")),
            "stages_us_per_event": sc.get("stages_us_per_event") or {},
            "cores": cores,
            "p50_ms": None,
            "p99_ms": None,
        }
        ceil = ceilings(row["stages_us_per_event"], sc.get("cpu_s_per_million"), cores)
        row["machine_ceiling_events_per_s"] = ceil["machine_events_per_s"]
        row["reactor_ceiling_events_per_s"] = ceil["reactor_events_per_s"]
        row["vs_machine_ceiling"] = _ratio(rate, ceil["machine_events_per_s"])
        row["vs_reactor_ceiling"] = _ratio(rate, ceil["reactor_events_per_s"])
        row["ceiling_us_per_event"] = {k: ceil[k] for k in ("daemon_us", "redis_us", "emulator_us")}
        lat = results.get("latency")
        if key == "1" and lat:
            row["p50_ms"], row["p99_ms"] = lat.get("p50_ms"), lat.get("p99_ms")
        rows.append(row)
    return rows


def _fmt(x: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if x is None:
        return "–"
    if isinstance(x, (int, float)):
        return f"{x:{spec}}{suffix}"
    return str(x)


def _like(r: dict[str, Any]) -> str:
    """Scenario 2's second baseline beside the single-queue one, labelled."""
    if not r.get("like_baseline_events_per_s"):
        return ""
    return (f" one queue; {_fmt(r['vs_like_baseline'], '.2f')} ({_fmt(r['like_baseline_events_per_s'])})"
            " like-for-like")


def table(rows: list[dict[str, Any]]) -> str:
    """The one table, as Markdown (it prints well in a terminal too)."""
    head = ("| scenario | events/s | MB/s | × Redis limit | × curl limit | × baseline (ev/s) "
            "| p50 / p99 ms | peak RSS MB | CPU s / M events | × machine ceiling (ev/s) "
            "| × reactor ceiling (ev/s) | others' load (cores) |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['scenario']}. {r['title']} | {_fmt(r['events_per_s'])} | {_fmt(r['mb_per_s'], '.1f')} "
            f"| {_fmt(r['vs_redis_limit'], '.2f')} (of {_fmt(r['redis_limit_events_per_s'])}) "
            f"| {_fmt(r['vs_curl_limit'], '.2f')} (of {_fmt(r['curl_limit_events_per_s'])}) "
            f"| {_fmt(r['vs_baseline'], '.2f')} ({_fmt(r['baseline_events_per_s'])}){_like(r)} "
            f"| {_fmt(r['p50_ms'], '.1f')} / {_fmt(r['p99_ms'], '.1f')} "
            f"| {_fmt(r['peak_rss_mb'], '.0f')} | {_fmt(r['cpu_s_per_million'], '.1f')} "
            f"| {_fmt(r.get('vs_machine_ceiling'), '.2f')} (of {_fmt(r.get('machine_ceiling_events_per_s'))}) "
            f"| {_fmt(r.get('vs_reactor_ceiling'), '.2f')} (of {_fmt(r.get('reactor_ceiling_events_per_s'))}) "
            f"| {_fmt(r.get('foreign_cores'), '.2f')} |")
    return "\n".join(lines)


def _places(goal: float) -> int:
    return 2 if goal < 10 else 1


def _target(name: str, value: float | None, goal: float, higher_is_better: bool = True,
            unit: str = "") -> dict[str, Any]:
    if value is None:
        return {"target": name, "value": None, "goal": goal, "ratio": None, "met": None,
                "note": "not measured"}
    ratio = value / goal if higher_is_better else (goal / value if value else float("inf"))
    met = value >= goal if higher_is_better else value <= goal
    if met:
        note = "met"
    elif higher_is_better:
        note = f"short by {goal - value:,.{_places(goal)}f}{unit} ({(1 - value / goal) * 100:.0f}% below)"
    else:
        note = f"over by {value - goal:,.{_places(goal)}f}{unit} ({(value / goal - 1) * 100:.0f}% above)"
    return {"target": name, "value": value, "goal": goal, "ratio": round(ratio, 3), "met": met, "note": note}


def targets(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["scenario"]: r for r in rows}
    out = []
    s1, s3 = by.get("1"), by.get("3")
    out.append(_target("scenario 1 ≥ 60,000 events/s", s1 and s1["events_per_s"], TARGET_S1, unit=" events/s"))
    out.append(_target("scenario 1 ≥ 60% of the Redis limit", s1 and s1["vs_redis_limit"],
                       TARGET_S1_LIMIT_SHARE))
    out.append(_target("scenario 3 ≥ 143,000 events/s", s3 and s3["events_per_s"], TARGET_S3, unit=" events/s"))
    for r in rows:
        like = r.get("like_baseline_events_per_s") is not None
        out.append(_target(f"scenario {r['scenario']} ≥ 5× baseline{' (one raw queue)' if like else ''}",
                           r["vs_baseline"], TARGET_BASELINE_X, unit="×"))
        if like:
            out.append(_target(f"scenario {r['scenario']} ≥ 5× like-for-like baseline (the same subscriptions, naive)",
                               r["vs_like_baseline"], TARGET_BASELINE_X, unit="×"))
    for key, sc in results["scenarios"].items():
        if sc.get("first_window"):
            out.append(_target(f"scenario {key}: last {sc['edge_seconds']} s within 15% of the first",
                               sc.get("last_vs_first"), TARGET_STABLE))
    lat = results.get("latency") or {}
    out.append(_target("p99 latency < 50 ms at 10,000 events/s", lat.get("p99_ms"), TARGET_P99_MS,
                       higher_is_better=False, unit=" ms"))
    for r in rows:
        out.append(_target(f"scenario {r['scenario']} RSS < 200 MB", r["peak_rss_mb"], TARGET_RSS_MB,
                           higher_is_better=False, unit=" MB"))
    backlog_rss = max((v for v in (lat.get("pause_peak_rss_mb"), lat.get("catchup_peak_rss_mb")) if v),
                      default=None)
    pause = lat.get("pause_seconds") or 10
    out.append(_target(f"RSS < 200 MB during a {pause:.0f} s Redis pause and the catch-up", backlog_rss, TARGET_RSS_MB,
                       higher_is_better=False, unit=" MB"))
    return out


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    parts = ["", table(rows), ""]
    lim = results["limits"]
    for key, v in lim.items():
        if isinstance(v, dict):
            parts.append(f"limits {key}: curl {v['curl_events_per_s']:,.0f} events/s "
                         f"({v['curl_mb_per_s']:.1f} MB/s, mean message {v['mean_message_bytes']:.0f} B); "
                         f"redis-benchmark RPUSH -P 64 -d {v['redis_payload_bytes']}: "
                         f"{_fmt(v['redis_rpush_per_s'])}/s")
        if v.get("pagecache_mb_per_s") is not None:
            parts.append(f"limits {key}: one thread writev into the event log's filesystem "
                         f"{v['pagecache_mb_per_s']:.0f} MB/s ({v['pagecache_events_per_s']:,.0f} events/s), "
                         f"with fdatasync every second {v['pagecache_everysec_mb_per_s']:.0f} MB/s "
                         f"({v['pagecache_everysec_events_per_s']:,.0f} events/s)")
    for key, sc in results["scenarios"].items():
        if sc.get("first_window"):
            f, last = sc["first_window"], sc["last_window"]
            parts.append(f"scenario {key} sustained {sc['sustained_seconds']:.0f} s: first {sc['edge_seconds']} s "
                         f"{f['events_per_s']:,.0f} events/s ({_fmt(f['cpu_s_per_million'], '.1f')} CPU s/M), "
                         f"last {sc['edge_seconds']} s {last['events_per_s']:,.0f} events/s "
                         f"({_fmt(last['cpu_s_per_million'], '.1f')} CPU s/M): last/first "
                         f"{_fmt(sc['last_vs_first'], '.2f')}")
    for r in rows:
        st = r.get("stages_us_per_event") or {}
        if st:
            parts.append(f"scenario {r['scenario']} CPU µs per event: " + ", ".join(
                f"{k} {st[k]:.1f}" for k in ("stream", "dispatch", "journal", "sink", "main_thread",
                                             "other_threads", "process", "redis_process",
                                             "emulator_process") if k in st))
        c = r.get("ceiling_us_per_event") or {}
        if r.get("machine_ceiling_events_per_s"):
            parts.append(
                f"scenario {r['scenario']} machine ceiling = {r['cores']} cores / (daemon {c['daemon_us']:.1f} "
                f"+ redis {c['redis_us']:.1f} + emulator {c['emulator_us']:.1f} µs per event) = "
                f"{r['machine_ceiling_events_per_s']:,} events/s, rate {_fmt(r['vs_machine_ceiling'], '.2f')} of it; "
                f"reactor ceiling = 1 / main thread {st.get('main_thread', 0):.1f} µs = "
                f"{_fmt(r['reactor_ceiling_events_per_s'])} events/s, "
                f"rate {_fmt(r['vs_reactor_ceiling'], '.2f')} of it")
    parts.append("daemon CPU per event → events/s one fully used core would give: " + ", ".join(
        f"scenario {r['scenario']} {_fmt(r.get('one_core_events_per_s'))}" for r in rows))
    lat = results.get("latency")
    if lat:
        parts.append(
            f"latency at {lat['offered_events_per_s']:,.0f} events/s offered: p50 {_fmt(lat['p50_ms'], '.1f')} ms, "
            f"p99 {_fmt(lat['p99_ms'], '.1f')} ms, max {_fmt(lat['max_ms'], '.1f')} ms "
            f"({lat['measured_messages']:,} messages, {lat['missing_in_window']} missing)")
        parts.append(
            f"backlog: Redis paused {lat['pause_seconds']:.0f} s ({lat['backlog_events']:,} events sent meanwhile): "
            f"peak RSS {lat['pause_peak_rss_mb']:.0f} MB paused, "
            f"{_fmt(lat.get('catchup_peak_rss_mb'), '.0f')} MB catching up; backlog delivered "
            f"{_fmt(lat['catch_up_seconds'], '.1f')} s after resume, latency < 50 ms again after "
            f"{_fmt(lat['latency_under_50ms_after_s'], '.1f')} s")
    parts.append("")
    parts.append("targets:")
    for t in results["targets"]:
        ratio = "" if t["ratio"] is None else f" (ratio {t['ratio']:.2f})"
        parts.append(f"  {'✔' if t['met'] else '✘' if t['met'] is False else '?'} {t['target']}: "
                     f"{_fmt(t['value'], ',.2f')}{ratio} — {t['note']}")
    for e in results.get("errors", []):
        parts.append(f"error: {e.splitlines()[0]}")
    m = results["machine"]
    parts.append("")
    parts.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, "
                 f"Python {m['python']}, Twisted {m['twisted']}, Redis {m['redis']}; "
                 f"load at start {m['loadavg_at_start']}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [FILE]``: print a saved run again (default latest.json)."""
    import json
    from pathlib import Path

    path = Path((argv or sys.argv[1:] or [str(Path(__file__).parent / "results" / "latest.json")])[0])
    results = json.loads(path.read_text())
    results["rows"] = derive(results)
    results["targets"] = targets(results, results["rows"])
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

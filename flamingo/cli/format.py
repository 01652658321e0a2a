"""How the CLI prints documents for people: tables, key/value lists, the status view.

Pure functions from JSON documents to text; ``--json`` bypasses them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from flamingo._types import JsonObject

__all__ = ["table", "flatten", "key_values", "show_params", "show_status", "SUB_COLUMNS"]


def _when(t: object) -> str:
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return "-" if t is None else str(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        text = ",".join(str(x) for x in v) if v else "-"
    else:
        text = str(v)
    # One line per row whatever the values hold.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def table(rows: list[JsonObject], columns: Sequence[str]) -> str:
    cells = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def flatten(doc: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(doc, dict) and doc:
        out: list[tuple[str, object]] = []
        for k, v in doc.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, doc)]


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v) if not isinstance(v, dict) else '-'}"
                     for k, v in pairs)


def show_params(name: str, params: dict[str, list[str]], resource: str | None = None) -> str:
    head = f"{name}" + (f" ({resource})" if resource else "")
    if not params:
        return head + "\n  (no params)"
    width = max(len(k) for k in params)
    return head + "\n" + "\n".join(f"  {k.ljust(width)}  {', '.join(v)}"
                                   for k, v in sorted(params.items()))


def show_status(doc: JsonObject) -> str:
    wader = doc.get("wader") or {}
    lines = [("state", wader.get("name") or doc.get("state")),
             ("request", doc.get("request_line") or wader.get("request_line")),
             ("connected since", _when(doc.get("connected_since") or wader.get("connected_since")))]
    if wader.get("cause"):
        lines.append(("cause", wader.get("cause")))
    if wader.get("attempt"):
        lines.append(("attempt", wader.get("attempt")))
    if wader.get("next_attempt_at"):
        lines.append(("next attempt", _when(wader.get("next_attempt_at"))))
    if wader.get("message"):
        lines.append(("message", wader.get("message")))
    stream = doc.get("stream") or {}
    if stream:
        params = stream.get("params") or {}
        lines.append(("stream", stream.get("name")))
        for k, v in sorted(params.items()):
            lines.append((f"  {k}", ", ".join(v)))
    cursor = doc.get("cursor")
    if isinstance(cursor, dict):  # Jetstream: where a reconnect resumes, and how far behind
        lag = cursor.get("lag_seconds")
        lines.append(("cursor", f"{cursor.get('time_us')} (lag {lag} s)" if lag is not None else "-"))
    rules = doc.get("rules")
    if isinstance(rules, dict):  # X filter rules and their sync with X
        lines.append(("rules", f"{rules.get('active', 0)} active, {rules.get('pending', 0)} pending, "
                               f"{rules.get('rejected', 0)} rejected; last sync {_when(rules.get('last_sync'))}"))
        if rules.get("error"):
            lines.append(("rules error", rules.get("error")))
    lines.append(("journal backlog", doc.get("journal_backlog")))
    redis = doc.get("redis") or {}
    lines.append(("redis", "reachable" if redis.get("available") else "UNREACHABLE"))
    return key_values(lines)


SUB_COLUMNS = ("name", "format", "types", "filter", "max_length", "queue")

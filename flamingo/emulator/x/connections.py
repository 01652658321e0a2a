"""X's Connections API: ``GET /2/connections`` and ``DELETE /2/connections/all``.

X added these (2025) so an app stuck on ``TooManyConnections`` — a stale
connection X still counts, say after a client was killed — can see its
streaming connections and end them instead of waiting. The emulator keeps
one ``XConnection`` per stream it served (the last ``HISTORY``), with X's
endpoint names and disconnect reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import attrs
import orjson

from flamingo._types import JsonObject
from flamingo.emulator.x.problems import invalid_request
from flamingo.emulator.x.rulesapi import page_token, token_offset

__all__ = ["XConnection", "ENDPOINT_NAMES", "list_connections", "kill_all", "HISTORY"]

HISTORY = 1000
#: Flamingo's stream name -> X's endpoint name in the Connections API
ENDPOINT_NAMES = {"filter": "filtered_stream", "sample": "sample_stream", "sample10": "sample10_stream",
                  "firehose": "firehose_stream", "tweets-compliance": "tweets_compliance_stream",
                  "users-compliance": "users_compliance_stream"}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % int((t % 1) * 1000)


@attrs.define
class XConnection:
    """One streaming connection the emulator served; ``close`` ends it if still open."""

    serial: int
    endpoint: str  # X's endpoint name
    connected_at: float
    close: Callable[[str], None] = attrs.field(repr=False)
    disconnected_at: float | None = None
    disconnect_reason: str | None = None

    @property
    def id(self) -> str:
        return str(uuid.UUID(int=0x5EED_0000_0000_0000_0000_0000_0000_0000 + self.serial))

    @property
    def active(self) -> bool:
        return self.disconnected_at is None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"id": self.id, "endpoint_name": self.endpoint, "client_ip": "127.0.0.1",
                           "connected_at": _iso(self.connected_at)}
        if self.disconnected_at is not None:
            out["disconnected_at"] = _iso(self.disconnected_at)
            out["disconnect_reason"] = self.disconnect_reason or ""
        return out


def list_connections(connections: Sequence[XConnection], pairs: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
    """``GET /2/connections``: ``status`` active (default) | inactive | all, ``endpoints``, paging."""
    params = dict(pairs)
    errors: list[tuple[str, str | None, str]] = []
    allowed = ("status", "endpoints", "max_results", "pagination_token", "connection.fields")
    for key in params:
        if key not in allowed:
            errors.append((key, params[key], f"The query parameter [{key}] is not one of [{','.join(allowed)}]"))
    status = params.get("status", "active")
    if status not in ("active", "inactive", "all"):
        errors.append(("status", status, f"The `status` query parameter value [{status}] is not one of "
                                         "[active,inactive,all]"))
    endpoints = set(params["endpoints"].split(",")) if params.get("endpoints") else None
    raw_max = params.get("max_results", "10")
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= 100:
        errors.append(("max_results", raw_max, f"The `max_results` query parameter value [{raw_max}] is not "
                                               "between 1 and 100"))
    offset = token_offset(params["pagination_token"]) if "pagination_token" in params else 0
    if offset is None:
        errors.append(("pagination_token", params["pagination_token"], "The `pagination_token` is not valid"))
    if errors:
        return 400, invalid_request(errors)
    chosen = [c for c in reversed(connections)
              if (status == "all" or c.active == (status == "active"))
              and (endpoints is None or c.endpoint in endpoints)]
    size, start = int(raw_max), offset or 0
    page = chosen[start : start + size]
    meta: JsonObject = {"result_count": len(page)}
    if start + size < len(chosen):
        meta["next_token"] = page_token(start + size)
    body: JsonObject = {"data": [c.to_json() for c in page]} if page else {}
    body["meta"] = meta
    return 200, orjson.dumps(body)


def kill_all(connections: Sequence[XConnection]) -> tuple[int, bytes]:
    """``DELETE /2/connections/all``: end every active streaming connection of the app."""
    results = []
    for conn in [c for c in connections if c.active]:
        conn.close("terminated by DELETE /2/connections/all")
        results.append({"uuid": conn.id, "success": True})
    return 200, orjson.dumps({"data": {"successful_kills": len(results), "failed_kills": 0, "results": results}})

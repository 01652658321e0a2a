"""The connection journal: one record per connection attempt, for tests and users."""

from __future__ import annotations

import attrs

from flamingo._types import JsonObject

__all__ = ["ConnectionRecord"]


@attrs.define
class ConnectionRecord:
    """One attempt. ``outcome`` is "streaming", "http NNN", "refused" or "request
    timeout" (no complete request within ``header_timeout``);
    ``messages_sent`` / ``bytes_sent`` grow while it streams; ``closed_at``
    and ``close_reason`` are set when a stream ends."""

    time: float
    method: str | None
    path: str | None
    params: dict[str, list[str]]
    identity: str | None
    outcome: str
    messages_sent: int = 0
    bytes_sent: int = 0
    gzip: bool = False
    delimited: bool = False
    closed_at: float | None = None
    close_reason: str | None = None

    def to_dict(self) -> JsonObject:
        return attrs.asdict(self)

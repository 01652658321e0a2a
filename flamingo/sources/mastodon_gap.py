"""Filling the gaps of a Mastodon connection: every stream's timeline since its newest id.

``fill_gaps`` reads each stream's REST timeline (``MastodonRest.fill``) from
the newest status id passed on for it, and merges what comes back in id order
(streams in a stable order for equal ids), as the ``update`` events the
statuses would have streamed as. A stream whose fill fails or stops early
(``gap_max``, the rate-limit reserve) is logged with the ``since_id`` it could
not close and counted in ``GapStats``, which /status.json, /meta.json and
/metrics show.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.internet import defer

from flamingo._types import JsonObject
from flamingo.logs import logger
from flamingo.sources.mastodon_api import Shaped, StreamKey, id_key, shape_status
from flamingo.sources.mastodon_rest import GapResult, MastodonRest, RestError

__all__ = ["GapStats", "fill_gaps", "label"]

log = logger("flamingo.wader")


@attrs.define
class GapStats:
    """Gap-fill figures for /status.json, /meta.json and /metrics."""

    fills: int = 0  # gap fills run (one per reconnect or restart with known positions)
    statuses: int = 0  # statuses the fills passed on (repeats not counted)
    pages: int = 0  # REST pages read
    truncated: int = 0  # streams whose gap was not closed (gap_max, rate limit)
    failed: int = 0  # streams whose fill failed (the REST API's error)
    running: bool = False
    last_at: float | None = None
    last: dict[str, JsonObject] = attrs.Factory(dict)  # per stream: since_id, filled, pages, complete, reason

    def to_dict(self, budget: dict[str, object]) -> JsonObject:
        return {"fills": self.fills, "statuses": self.statuses, "pages": self.pages,
                "truncated": self.truncated, "failed": self.failed, "running": self.running,
                "last_at": self.last_at, "last": dict(self.last), "rate_limit": budget}


def label(key: StreamKey) -> str:
    """``hashtag python``, ``list 42``, ``public:local``: a stream as logs and status name it."""
    return ":".join(key) if key[0] not in ("hashtag", "hashtag:local", "list") else f"{key[0]} {key[1]}"


def fill_gaps(rest: MastodonRest, api_url: str, since: Mapping[StreamKey, str], gap_max: int,
              gap: GapStats, now: float) -> defer.Deferred[list[Shaped]]:
    """The statuses of each stream newer than ``since[stream]``, all merged in id order."""
    return defer.Deferred.fromCoroutine(_fill_gaps(rest, api_url, since, gap_max, gap, now))


async def _fill_gaps(rest: MastodonRest, api_url: str, since: Mapping[StreamKey, str], gap_max: int,
                     gap: GapStats, now: float) -> list[Shaped]:
    gap.fills += 1
    gap.running = True
    gap.last_at = now
    out: list[tuple[tuple[int, str], StreamKey, Shaped]] = []
    try:
        for key, since_id in since.items():
            try:
                result: GapResult = await rest.fill(api_url, key, since_id, gap_max)
            except RestError as e:
                gap.failed += 1
                gap.last[label(key)] = {"since_id": since_id, "filled": 0, "complete": False,
                                        "reason": e.verdict.message}
                log.error("Gap fill of {stream} failed: {message}; statuses since {since} may be "
                          "missing", stream=label(key), message=e.verdict.message, since=since_id)
                continue
            gap.pages += result.pages
            if not result.complete:
                gap.truncated += 1
                log.warn("Gap fill of {stream} stopped ({reason}) after {n} statuses: older ones "
                         "since {since} are missing", stream=label(key), reason=result.reason,
                         n=len(result.statuses), since=since_id)
            gap.last[label(key)] = {"since_id": since_id, "filled": len(result.statuses),
                                    "pages": result.pages, "complete": result.complete,
                                    "reason": result.reason}
            for sid, body in result.statuses:
                out.append((id_key(sid), key, shape_status(key, body, sid)))
    finally:
        gap.running = False
    out.sort(key=lambda t: (t[0], t[1]))
    return [s for _, _, s in out]

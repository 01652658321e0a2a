"""``flamingo tail --group G --consumer C``: a stream subscription read as a consumer group member.

At least once: each entry is printed, then acknowledged (``XACK``). What this
consumer was given and never acknowledged (it crashed before ``XACK``) is read
again first (``XREADGROUP … 0``); what any other consumer of the group left
pending for longer than ``claim_idle`` seconds is taken over (``XAUTOCLAIM``)
and handled here. A consumer that dies after printing and before ``XACK``
sees that entry again: the consumer's work must be idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flamingo.cli.client import Reply, RespClient, ServerSaidNo, blob, items

__all__ = ["read_group", "ensure_group"]

BATCH = 100


def ensure_group(redis: RespClient, key: str, group: str) -> bool:
    """Make the group at ``$`` (new entries only) if missing; True when it was made."""
    try:
        redis.command("XGROUP", "CREATE", key, group, "$", "MKSTREAM")
        return True
    except ServerSaidNo as e:
        if "BUSYGROUP" in str(e):
            return False
        raise


def _event(fields: Reply) -> bytes | None:
    """The ``event`` field of an entry (None for an entry deleted or trimmed away meanwhile)."""
    if not fields:
        return None
    it = iter(items(fields))
    for k, v in zip(it, it):
        if k == b"event":
            return blob(v)
    return None


def _entries(reply: Reply) -> Reply:
    """XREADGROUP's reply for its one stream: that stream's entries."""
    streams = items(reply)
    return items(streams[0])[1] if streams else []


def read_group(redis: RespClient, key: str, group: str, consumer: str, show: Callable[[bytes], None], *,
               count: int | None = None, idle: float | None = None, claim_idle: float = 60.0) -> int:
    """Print and acknowledge entries until ``count`` were shown or ``idle`` s passed without one."""
    seen = 0

    def handle(entries: Reply) -> int:
        nonlocal seen
        done = 0
        for entry in items(entries):
            entry_id, fields = items(entry)
            if count is not None and seen >= count:
                break
            event = _event(fields)
            if event is not None:
                show(event)
                seen += 1
                done += 1
            redis.command("XACK", key, group, blob(entry_id))
        return done

    def want() -> int:
        return BATCH if count is None else max(0, min(BATCH, count - seen))

    # 1. what this consumer was given before and did not acknowledge
    while want():
        reply = redis.command("XREADGROUP", "GROUP", group, consumer, "COUNT", want(), "STREAMS", key, "0")
        entries = _entries(reply)
        if not entries:
            break
        handle(entries)
    idle_since = time.monotonic()
    claim_ms = max(0, int(claim_idle * 1000))
    while want():
        # 2. entries other consumers left pending too long (crashed): take them over
        reply = redis.command("XAUTOCLAIM", key, group, consumer, claim_ms, "0-0", "COUNT", want())
        if handle(items(reply)[1] if reply else []):
            idle_since = time.monotonic()
            continue
        if not want():
            break
        # 3. new entries
        wait = 1.0
        if idle is not None:
            left = idle - (time.monotonic() - idle_since)
            if left <= 0:
                break
            wait = max(0.1, min(wait, left))
        reply = redis.command("XREADGROUP", "GROUP", group, consumer, "COUNT", want(),
                              "BLOCK", int(wait * 1000), "STREAMS", key, ">", timeout=wait + 10)
        if reply and handle(_entries(reply)):
            idle_since = time.monotonic()
    return seen

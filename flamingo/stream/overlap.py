"""Ids remembered across a predicate switch, bounded in entries and in bytes.

During a graceful restart the wader remembers what the old connection sent,
so the replacement's repeats can be dropped. What an id is comes from
upstream: a broken or hostile server can send megabyte-long ids, ids that are
lists, or many large events without ids (those are keyed by their bytes). So
keys are normalised (an int, or a string of at most ``_PLAIN_ID_CHARS``,
stays as it is; anything else becomes a 16-byte digest) and the set is
bounded both by entries (``wader.dedupe_window``) and by the bytes its keys
hold (``DEDUPE_MAX_BYTES``), forgetting the oldest first.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable
from hashlib import blake2b

import orjson

__all__ = ["RecentIds", "message_id", "DEDUPE_MAX_BYTES"]

#: bytes of keys the overlap dedupe holds at most (the 50,000 default entries take ~7 MB)
DEDUPE_MAX_BYTES = 16 * 1024 * 1024
_PLAIN_ID_CHARS = 64
_ENTRY_BYTES = 100  # an OrderedDict entry's own cost, roughly

#: messages about one connection (not events): never repeats of one another
_PER_CONNECTION = frozenset(("limit", "warning", "disconnect"))


def _digest(data: bytes) -> bytes:
    return blake2b(data, digest_size=16).digest()


def _key(value: object) -> Hashable:
    """An upstream id as a small hashable key."""
    if type(value) is int or (type(value) is str and len(value) <= _PLAIN_ID_CHARS):
        return value
    try:
        data = orjson.dumps(value)
    except TypeError:  # not JSON-shaped (cannot come from orjson.loads); be safe
        data = repr(value).encode()
    return ("digest", _digest(data))


def message_id(frame: bytes) -> Hashable | None:
    """The key overlap dedupe uses: a status's id (or v2 ``data``'s), a deleted
    status's id, a digest of other events' bytes; None for per-connection notices."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if "id" in obj:
        return _key(obj.get("id_str") or obj["id"])
    data = obj.get("data")
    if isinstance(data, dict):  # X API v2
        return _key(data.get("id"))
    delete = obj.get("delete")
    if isinstance(delete, dict) and isinstance(delete.get("status"), dict):
        status = delete["status"]
        return ("delete", _key(status.get("id_str") or status.get("id")))
    if len(obj) == 1 and not _PER_CONNECTION.intersection(obj):
        # scrub_geo, status_withheld, user_withheld...: no id of their own, but
        # the same event on both connections is the same bytes
        return ("raw", _digest(frame))
    return None


def _cost(key: Hashable) -> int:
    if isinstance(key, tuple):
        return _ENTRY_BYTES + sys.getsizeof(key) + sum(_cost(part) - _ENTRY_BYTES for part in key)
    return _ENTRY_BYTES + sys.getsizeof(key)


class RecentIds:
    """An insertion-ordered set of keys, at most ``size`` of them and ``max_bytes`` of them."""

    def __init__(self, size: int, max_bytes: int = DEDUPE_MAX_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._ids: OrderedDict[Hashable, int] = OrderedDict()

    def add(self, key: Hashable) -> None:
        if key in self._ids:
            return
        cost = _cost(key)
        self._ids[key] = cost
        self.nbytes += cost
        while self._ids and (len(self._ids) > self.size or self.nbytes > self.max_bytes):
            _, old = self._ids.popitem(last=False)
            self.nbytes -= old

    def __contains__(self, key: Hashable) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

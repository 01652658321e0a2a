"""In-memory fakes of the store and stats, for tests of the wader on its own.

The daemon always runs the real parts (flamingo.dispatch.store.Store on Redis,
flamingo.dispatch.stats.Stats); these stand in for them where a test only needs the
reading side of the store or a place for the wader's counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed

__all__ = ["MemoryStore", "NullStats"]


class MemoryStore:
    """Params in memory: ``params``/``stream_names``/``subscriptions``/``on_change``/``set_params``."""

    available = True
    namespace = "flamingo"
    prefix = "flamingo"

    def __init__(self, params: dict[str, dict[str, list[str]]] | None = None) -> None:
        self._params = {k: dict(v) for k, v in (params or {}).items()}
        self._callbacks: list[Callable[[str, str], None]] = []

    def stream_names(self) -> list[str]:
        return sorted(self._params)

    def params(self, stream: str) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in self._params.get(stream, {}).items() if v}

    def subscriptions(self) -> dict[str, Any]:
        return {}

    def set_params(self, stream: str, params: dict[str, list[str]]) -> Deferred:
        self._params.setdefault(stream, {}).update({k: list(v) for k, v in params.items()})
        for cb in list(self._callbacks):
            cb("params", stream)
        return succeed(self.params(stream))

    def on_change(self, callback: Callable[[str, str], None]) -> None:
        self._callbacks.append(callback)


class NullStats:
    """Accepts the wader's stats calls and keeps simple counters."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def _bump(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def connection_attempt(self, cause: str) -> None:
        self._bump(f"reconnects.{cause}")

    def duplicates(self, n: int) -> None:
        self._bump("duplicates", n)

    def parse_error(self, kind: str, sample: bytes | str, n: int = 1) -> None:
        self._bump(f"parse_errors.{kind}", n)

    def keepalive(self, n: int = 1) -> None:
        self._bump("keepalives", n)

    def disconnect_message(self, code: int, reason: str) -> None:
        self._bump(f"disconnects.{code}")

    def snapshot(self) -> dict[str, Any]:
        return dict(self.counters)

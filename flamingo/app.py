"""The running daemon's parts, as one object handed to the REST API and the console."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from flamingo._reactor import FlamingoReactor
from flamingo._types import JsonMapping, JsonObject
from flamingo.config import Config

if TYPE_CHECKING:  # the parts import this module's users; only their types are needed here
    from twisted.internet.defer import Deferred

    from flamingo.domain.subscription import Subscription
    from flamingo.sources.xrules.service import RulesService
    from flamingo.stream.wader_core import WaderState

__all__ = ["App", "DeliveryStatus", "Started", "StatsSource", "StoreReader", "StoreWriter", "WaderControl"]


class WaderControl(Protocol):
    """What the control surfaces ask of the wader: its state, a restart."""

    @property
    def state(self) -> WaderState: ...

    def restart(self) -> None: ...

    def params_changed(self) -> None: ...


class DeliveryStatus(Protocol):
    """The delivery side as the control surfaces see it: one JSON-ready status."""

    def status(self) -> JsonObject: ...


class StatsSource(Protocol):
    """The counters as the control surfaces read them (flamingo.dispatch.stats.Stats)."""

    @property
    def queues(self) -> Mapping[str, Mapping[str, int]]:
        """Per subscription queue: length, trimmed, pushed."""

    @property
    def streams(self) -> Mapping[str, JsonMapping]:
        """Per ``format: stream`` subscription: its consumer groups and when they were read."""

    def snapshot(self) -> JsonObject: ...

    def per_second(self, seconds: int = 300) -> list[tuple[int, int]]: ...

    def provided(self, name: str) -> object:
        """What a part's status function (``provide(name, fn)``) gives now."""


class StoreReader(Protocol):
    """The store as the documents read it: its copy of params and subscriptions
    (flamingo.dispatch.store.Store; reads never wait for Redis)."""

    @property
    def available(self) -> bool:
        """Redis answers (the copy is current)."""

    @property
    def prefix(self) -> str:
        """What every key starts with (``{ns}`` in cluster mode)."""

    def params(self, stream: str) -> dict[str, list[str]]: ...

    def subscriptions(self) -> dict[str, Subscription]: ...

    def stream_names(self) -> list[str]: ...


class StoreWriter(StoreReader, Protocol):
    """The changes REST and the console make; each Deferred fires once Redis has it
    (a value the store refuses fails it with ``ValidationError``)."""

    def set_params(self, stream: str, params: JsonMapping) -> Deferred[dict[str, list[str]]]: ...

    def set_param(self, stream: str, param: str, values: object) -> Deferred[dict[str, list[str]]]: ...

    def add_values(self, stream: str, param: str, values: object) -> Deferred[dict[str, list[str]]]: ...

    def remove_values(self, stream: str, param: str, values: object) -> Deferred[dict[str, list[str]]]: ...

    def delete_param(self, stream: str, param: str) -> Deferred[dict[str, list[str]]]: ...

    def save_subscription(self, sub: Subscription) -> Deferred[Subscription]: ...

    def delete_subscription(self, name: str, drop_queue: bool = False) -> Deferred[None]: ...


@attrs.define
class Started:
    """When the service started, in reactor seconds (0.0 until it has).

    The one thing about the daemon that is only known once it runs: the App
    that holds it is built (and frozen) before then.
    """

    at: float = 0.0


@attrs.frozen
class App:
    """What control surfaces need: read state, make changes through the store.

    Built by flamingo.service once its parts exist, then never changed:
    ``store`` (a ``StoreWriter``: flamingo.dispatch.store.Store), ``stats``
    (flamingo.dispatch.stats.Stats), ``wader`` (flamingo.stream.wader.Wader),
    ``delivery`` (flamingo.dispatch: journal backlog, Redis status) and
    ``rules``. Tests leave out the parts they do not need.
    """

    config: Config
    reactor: FlamingoReactor
    store: StoreWriter | None = None
    stats: StatsSource | None = None
    wader: WaderControl | None = None
    delivery: DeliveryStatus | None = None
    rules: RulesService | None = None  # X filter rules (source: x, stream filter)
    started: Started = attrs.field(factory=Started)

    @property
    def started_at(self) -> float:
        """When the service started (reactor seconds), 0.0 before it has."""
        return self.started.at

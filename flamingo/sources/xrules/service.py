"""The rules part of a ``source: x`` daemon (filter stream): book + reconciler as one Service.

Started after the store (its first load is in), stopped before it: the
reconciler's pass in flight finishes first. ``RulesControl`` is what the
control surfaces (REST, console, status documents) are given.
"""

from __future__ import annotations

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool

from flamingo._reactor import FlamingoReactor
from flamingo._types import JsonObject
from flamingo.app import WaderControl
from flamingo.config import Config
from flamingo.dispatch.store import Store
from flamingo.logs import logger
from flamingo.sources.xrules.book import RuleBook
from flamingo.sources.xrules.client import TreqRulesApi
from flamingo.sources.xrules.model import TIERS, Rule
from flamingo.sources.xrules.reconciler import Reconciler

__all__ = ["RulesService", "build_rules", "SYNC_INTERVAL"]

log = logger("flamingo.rules")

#: seconds between passes when nothing changes (X's rules may be edited by other tools)
SYNC_INTERVAL = 300.0


class RulesService(Service):
    """The X rules of this daemon: ``rules()``, ``add``, ``remove``, ``status()``."""

    name = "rules"

    def __init__(self, book: RuleBook, reconciler: Reconciler, store: Store, pool: HTTPConnectionPool | None) -> None:
        self.book = book
        self.reconciler = reconciler
        self.store = store
        self.pool = pool
        store.on_notice("rules", book.changed)
        book.on_change(reconciler.kick)

    def startService(self) -> None:
        Service.startService(self)
        self.reconciler.start()

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self.reconciler.stop()
        if self.pool is not None:
            await self.pool.closeCachedConnections()

    # -- what the control surfaces call -------------------------------------------------

    def rules(self) -> list[Rule]:
        return self.book.rules()

    def add(self, value: object, tag: object = None) -> defer.Deferred[tuple[Rule, bool]]:
        return self.book.add(value, tag)

    def remove(self, value: object = None, tag: object = None) -> defer.Deferred[list[Rule]]:
        return self.book.remove(value, tag)

    def status(self) -> JsonObject:
        return self.reconciler.status()

    def follow(self, wader: WaderControl) -> None:
        """X refuses the filter stream while the app has no rule (409): once rules are
        added, a wader that is not connected tries again at once instead of after its backoff."""
        def added() -> None:
            if wader.state.name in ("retrying", "waiting_for_params"):
                log.info("X rules added: connecting the filter stream now")
                wader.params_changed()
        self.reconciler.on_added.append(added)


def build_rules(config: Config, store: Store, reactor: FlamingoReactor) -> RulesService | None:
    """The rules service for an X filter stream; None for any other source or stream."""
    if config.source != "x" or config.stream != "filter":
        return None
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = HTTPClient(Agent(reactor, pool=pool))
    api = TreqRulesApi(http, config.api.url, config.bearer_token or "", reactor,
                       timeout=max(config.wader.connect_timeout, 5.0))
    book = RuleBook(store, TIERS[config.x.tier], copy_path=config.data_dir / f"rules-{store.namespace}.json")
    return RulesService(book, Reconciler(book, api, reactor, config.wader.backoff, interval=SYNC_INTERVAL), store, pool)

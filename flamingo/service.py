"""FlamingoService: the daemon's parts, wired in start order, plus its signals.

Start order (children of one MultiService): store, delivery, wader, web,
console. MultiService stops children in reverse, so on TERM/INT the console
and web go first, then the wader stops reading, then delivery flushes what
was received to the event log and Redis, then the store closes; twistd waits
for every ``stopService`` Deferred before the reactor stops (exit 0).

Each part is made by one ``build_*`` function below; web and console are
left out when disabled in the config.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from flamingo import __version__
from flamingo._reactor import FlamingoReactor, maybe_global_reactor
from flamingo.app import App
from flamingo.config import Config, start_warnings
from flamingo.console import console_service
from flamingo.dispatch.dispatcher import DeliveryService
from flamingo.dispatch.dispatcher import build_delivery as _build_delivery
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.store import Store
from flamingo.logs import FlamingoLogs, logger
from flamingo.sources.xrules.service import RulesService
from flamingo.sources.xrules.service import build_rules as _build_rules
from flamingo.stream.source import JournalTail
from flamingo.stream.wader import Wader
from flamingo.stream.wader_core import MessageSink
from flamingo.web.server import web_service

__all__ = ["FlamingoService", "StoreService", "build_store", "build_stats", "build_delivery",
           "build_rules", "build_wader", "build_web", "build_console"]

log = logger("flamingo.service")

T = TypeVar("T")


# --- builders: one per part, in start order -----------------------------------


class StoreService(Service):
    """Runs a Store (``start()``/``stop()`` Deferreds) as the first child."""

    name = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    def startService(self) -> Deferred[None]:
        super().startService()  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        return maybeDeferred(self.store.start)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        return maybeDeferred(self.store.stop)


def build_stats(reactor: FlamingoReactor) -> Stats:
    return Stats(clock=reactor)


def build_store(config: Config, reactor: FlamingoReactor, stats: Stats) -> Store:
    """flamingo.dispatch.store.Store on Redis; its status feeds ``stats``."""
    store = Store.from_config(config, reactor=reactor)
    stats.provide("store", store.status)  # re-seeds after an empty Redis
    return store


def build_delivery(config: Config, reactor: FlamingoReactor, store: Store, stats: Stats) -> DeliveryService:
    """The delivery service, also the wader's MessageSink: the event log first, then Redis."""
    return _build_delivery(config, store, stats, reactor=reactor)


def build_rules(config: Config, reactor: FlamingoReactor, store: Store, stats: Stats) -> RulesService | None:
    """The rule book and its reconciler, for an X filter stream only."""
    rules = _build_rules(config, store, reactor)
    if rules is not None:  # /meta.json and <ns>:meta:stats show the rule sync
        stats.provide("rules", rules.status)
    return rules


def build_wader(config: Config, reactor: FlamingoReactor, store: Store, sink: MessageSink, stats: Stats,
                journal: JournalTail | None = None) -> Wader:
    """The wader; its source resumes from what ``journal`` holds last."""
    return Wader(config, reactor, store, sink, stats, journal=journal)


def build_web(app: App) -> IService | None:
    """The REST API on web.host:web.port, unless ``web.enabled`` is false."""
    if not app.config.web.enabled:
        return None
    return web_service(app)


def build_console(app: App) -> IService | None:
    """The SSH console, unless ``console.enabled`` is false."""
    return console_service(app)


# --- the service ----------------------------------------------------------------

#: What ``signal.signal`` returns: the handler it replaced.
_Handler = Callable[[int, FrameType | None], object] | int | None


class FlamingoService(MultiService):
    """The whole daemon as one service; twistd starts and stops it."""

    def __init__(self, config: Config, reactor: FlamingoReactor | None = None, install_signals: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        reactor = maybe_global_reactor(reactor)
        self.config = config
        self.reactor = reactor
        self.install_signals = install_signals
        self.logs = FlamingoLogs(config.logging)
        self._previous_handlers: dict[int, _Handler] = {}
        self.ready: Deferred[None] = Deferred()
        self._announced = False

        # the parts first, then the App that hands them to the web and the console
        stats = build_stats(reactor)
        store = build_store(config, reactor, stats)
        delivery = build_delivery(config, reactor, store, stats)
        rules = build_rules(config, reactor, store, stats)
        wader = build_wader(config, reactor, store, delivery, stats, delivery.journal)
        self.app = App(config=config, reactor=reactor, store=store, stats=stats, wader=wader,
                       delivery=delivery, rules=rules)
        parts: list[tuple[str, IService | None]] = [
            ("store", StoreService(store)), ("delivery", delivery), ("rules", rules), ("wader", wader),
            ("web", build_web(self.app)), ("console", build_console(self.app))]
        if rules is not None:
            rules.follow(wader)  # the filter stream waits for its first rule
        for name, part in parts:
            if part is not None:
                if getattr(part, "name", None) is None:
                    part.setName(name)
                part.setServiceParent(self)

    def privilegedStartService(self) -> None:
        self._announce()
        super().privilegedStartService()  # type: ignore[no-untyped-call]  # twisted leaves it untyped

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        self.logs.start()
        if self.config.file:
            log.info("Loaded config file from {path}", path=str(self.config.file))
        log.info("Flamingod starting (version {version}, pid {pid}, stream {stream})",
                 version=__version__, pid=os.getpid(), stream=self.config.stream)
        for warning in start_warnings(self.config):
            log.warn("{warning}", warning=warning)

    def startService(self) -> None:
        self._announce()
        self.app.started.at = self.reactor.seconds()
        if self.install_signals:
            # after the reactor's own handlers (installed once it runs), so ours win
            self.reactor.callWhenRunning(self._install_signals)
        # The store first: the wader reads its params as soon as it starts, so
        # the other parts start when the store's first load is in (or its
        # timeout passed: Redis down is not fatal, the copy fills in later).
        Service.startService(self)
        children = list(self)
        store = next((c for c in children if c.name == "store"), None)
        self.ready = maybeDeferred(store.startService) if store is not None else succeed(None)

        def start_rest(_: None) -> None:
            for child in children:
                if child is not store and self.running:
                    child.startService()

        def failed(f: Failure) -> None:
            log.failure("Store failed to start", f)

        self.ready.addErrback(failed).addCallback(start_rest)

    def stopService(self) -> Deferred[None]:
        """Stop children one after the other, last started first.

        Sequential on purpose: the wader has stopped reading (its connections
        are closed) before delivery flushes, and delivery has flushed before
        the store closes.
        """
        log.info("Flamingod stopping")
        self._restore_signals()
        Service.stopService(self)
        d: Deferred[None] = succeed(None)

        def stop(_: None, child: IService) -> Deferred[None]:
            return maybeDeferred(child.stopService)

        def failed(f: Failure, child: IService) -> None:
            log.failure("Stopping {name} failed", f, name=child.name)

        for child in reversed(list(self)):
            if child.running:
                d.addCallback(stop, child).addErrback(failed, child)

        def done(result: T) -> T:
            log.info("Flamingod stopped")
            self.logs.stop()
            self._announced = False
            return result

        return d.addBoth(done)

    # signals: TERM/INT -> reactor.stop -> stopService above; USR1; HUP

    def restart_wader(self) -> None:
        if self.app.wader is None:  # no credentials: nothing to restart
            return
        log.info("Flamingod restarting wader (SIGUSR1)")
        self.app.wader.restart()

    def reopen_logs(self) -> None:
        log.info("Reopening log files (SIGHUP)")
        self.logs.reopen()
        log.info("Log files reopened")

    def graceful_stop(self, name: str = "SIGTERM") -> None:
        """TERM/INT: stop the reactor, which stops this service (exit status 0).

        twistd's own handler would re-raise the signal after shutdown, so the
        process would end "killed by SIGTERM"; a graceful stop is a success.
        """
        log.info("Received {name}: stopping gracefully", name=name)
        if self.reactor.running:
            self.reactor.stop()

    def _install_signals(self) -> None:
        if not self.running or self._previous_handlers:
            return
        handlers: dict[int, Callable[[], None]] = {
            signal.SIGUSR1: self.restart_wader,
            signal.SIGHUP: self.reopen_logs,
            signal.SIGTERM: lambda: self.graceful_stop("SIGTERM"),
            signal.SIGINT: lambda: self.graceful_stop("SIGINT"),
        }
        for signum, action in handlers.items():
            def handler(_signum: int, _frame: FrameType | None, action: Callable[[], None] = action) -> None:
                self.reactor.callFromThread(action)

            try:
                self._previous_handlers[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread (some test runners)
                pass

    def _restore_signals(self) -> None:
        for signum, previous in self._previous_handlers.items():
            try:
                signal.signal(signum, previous)
            except (ValueError, TypeError):
                pass
        self._previous_handlers.clear()

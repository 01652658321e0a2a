"""FlamingoService: the daemon's parts, wired in start order, plus its signals.

Start order (children of one MultiService): store, delivery, wader, web,
console. MultiService stops children in reverse, so on TERM/INT the console
and web go first, then the wader stops reading, then delivery flushes what
was received to the event log and Redis, then the store closes; twistd waits
for every ``stopService`` Deferred before the reactor stops (exit 0).

Each part is made by one ``build_*`` function below. A part whose module has
not landed yet (or is disabled) gets a small stand-in, so the daemon runs
end to end from the first commit:

* ``build_store`` -> an in-memory store with no params (filter streams wait);
* ``build_delivery`` -> ``EventLogSink``, appending frames to the event log;
* ``build_web`` / ``build_console`` -> nothing.

Replacing a stand-in is one edit in the matching function.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed

from flamingo import __version__
from flamingo.app import App
from flamingo.config import Config
from flamingo.logs import FlamingoLogs, logger

__all__ = ["FlamingoService", "EventLogSink", "MemoryStore", "NullStats", "StoreService", "build_store",
           "build_stats", "build_delivery", "build_wader", "build_web", "build_console"]

log = logger("flamingo.service")


def _optional(module: str) -> Any | None:
    """Import ``module`` if it exists yet; real import errors inside it still raise."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise


# --- stand-ins until the other parts land -----------------------------------


class MemoryStore:
    """A store with params in memory (contract 3, reading side + on_change)."""

    available = True
    namespace = "flamingo"

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
    """Accepts the wader's stats calls (contract 5) and keeps simple counters."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def _bump(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def connection_attempt(self, cause: str) -> None:
        self._bump(f"reconnects.{cause}")

    def duplicates(self, n: int) -> None:
        self._bump("duplicates", n)

    def parse_error(self, kind: str, sample: bytes | str) -> None:
        self._bump(f"parse_errors.{kind}")

    def keepalive(self) -> None:
        self._bump("keepalives")

    def disconnect_message(self, code: int, reason: str) -> None:
        self._bump(f"disconnects.{code}")

    def snapshot(self) -> dict[str, Any]:
        return dict(self.counters)


class EventLogSink(Service):
    """Minimal MessageSink: appends each frame as one line to the event log.

    Files are ``<dir>/flamingo_events-<start>-<n>.json``, a new one every
    ``size`` events (the original's rule). Stands in for flamingo.dispatch.
    """

    name = "delivery"

    def __init__(self, directory: Path | None, size: int = 100_000) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.size = size
        self.received = 0
        self.request_line: str | None = None
        self._stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self._file: Any = None
        self._in_file = 0
        self._n = 0

    def _open(self) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._n += 1
        self._file = open(self.directory / f"flamingo_events-{self._stamp}-{self._n}.json", "ab")
        self._in_file = 0

    def connection_started(self, request_line: str) -> None:
        self.request_line = request_line

    def messages_received(self, frames: list[bytes]) -> None:
        self.received += len(frames)
        if self.directory is None:
            return
        i = 0
        while i < len(frames):
            if self._file is None or self._in_file >= self.size:
                if self._file is not None:
                    self._file.close()
                self._open()
            take = frames[i:i + self.size - self._in_file]
            self._file.write(b"\n".join(take) + b"\n")
            self._in_file += len(take)
            i += len(take)

    def status(self) -> dict[str, Any]:
        return {"kind": "event_log", "received": self.received, "journal_backlog": 0,
                "redis_reachable": None, "journal_errors": 0}

    def stopService(self) -> Deferred:
        super().stopService()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        return succeed(None)


# --- builders: one per part, in start order -----------------------------------


class StoreService(Service):
    """Runs a Store (``start()``/``stop()`` Deferreds) as the first child."""

    name = "store"

    def __init__(self, store: Any) -> None:
        self.store = store

    def startService(self) -> Deferred:
        super().startService()
        return maybeDeferred(self.store.start)

    def stopService(self) -> Deferred:
        super().stopService()
        return maybeDeferred(self.store.stop)


def build_store(app: App) -> IService | None:
    """Sets ``app.store`` (flamingo.store.Store on Redis); returns its service."""
    mod = _optional("flamingo.store")
    if mod is not None and hasattr(mod, "make_store"):  # a part may take over its wiring
        store, service = mod.make_store(app)
        app.store = store
        return service
    if mod is not None and hasattr(mod, "Store"):
        app.store = mod.Store.from_config(app.config, reactor=app.reactor)
        if hasattr(app.stats, "provide"):
            app.stats.provide("store", app.store.status)  # re-seeds after an empty Redis
        return StoreService(app.store)
    app.store = MemoryStore()
    return None


def build_stats(app: App) -> None:
    mod = _optional("flamingo.stats")
    app.stats = mod.Stats(clock=app.reactor) if mod is not None else NullStats()


def build_delivery(app: App) -> tuple[IService | None, Any]:
    """Sets ``app.delivery``; returns (service, MessageSink).

    flamingo.dispatch (helper C): journal/event log first, then Redis.
    The stand-in (``EventLogSink``) only appends frames to the event log.
    """
    mod = _optional("flamingo.dispatch.dispatcher")
    if mod is not None and hasattr(mod, "build_delivery"):
        delivery = mod.build_delivery(app.config, app.store, app.stats, reactor=app.reactor)
        app.delivery = delivery
        return delivery, delivery
    cfg = app.config.logging.event
    sink = EventLogSink(cfg.dir or app.config.data_dir / "events", cfg.size)
    app.delivery = sink
    return sink, sink


def build_wader(app: App, sink: Any) -> IService:
    from flamingo.stream.wader import Wader

    wader = Wader(app.config, app.reactor, app.store, sink, app.stats)
    app.wader = wader
    return wader


def build_web(app: App) -> IService | None:
    """flamingo.web (helper D): the REST API on web.host:web.port."""
    if not app.config.web.enabled:
        return None
    mod = _optional("flamingo.web.server")
    if mod is not None and hasattr(mod, "web_service"):
        return mod.web_service(app)
    return None


def build_console(app: App) -> IService | None:
    """flamingo.console (helper E): the SSH manhole; ``make_service(app)`` or None."""
    if not app.config.console.enabled:
        return None
    mod = _optional("flamingo.console")
    if mod is not None and hasattr(mod, "make_service"):
        return mod.make_service(app)
    return None


# --- the service ----------------------------------------------------------------


class FlamingoService(MultiService):
    """The whole daemon as one service; twistd starts and stops it."""

    def __init__(self, config: Config, reactor: Any = None, install_signals: bool = False) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.config = config
        self.reactor = reactor
        self.install_signals = install_signals
        self.logs = FlamingoLogs(config.logging)
        self.app = App(config=config, reactor=reactor)
        self._previous_handlers: dict[int, Any] = {}
        self.ready: Deferred = Deferred()
        self._announced = False

        build_stats(self.app)
        parts: list[tuple[str, IService | None]] = [("store", build_store(self.app))]
        delivery, sink = build_delivery(self.app)
        parts.append(("delivery", delivery))
        parts.append(("wader", build_wader(self.app, sink)))
        parts.append(("web", build_web(self.app)))
        parts.append(("console", build_console(self.app)))
        for name, part in parts:
            if part is not None:
                if getattr(part, "name", None) is None:
                    part.setName(name)
                part.setServiceParent(self)

    def privilegedStartService(self) -> None:
        self._announce()
        super().privilegedStartService()

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        self.logs.start()
        if self.config.source:
            log.info("Loaded config file from {path}", path=str(self.config.source))
        log.info("Flamingod starting (version {version}, pid {pid}, stream {stream})",
                 version=__version__, pid=os.getpid(), stream=self.config.stream)

    def startService(self) -> None:
        self._announce()
        self.app.started_at = self.reactor.seconds()
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

        def start_rest(_: Any) -> None:
            for child in children:
                if child is not store and self.running:
                    child.startService()

        self.ready.addErrback(lambda f: log.failure("Store failed to start", f))
        self.ready.addCallback(start_rest)

    def stopService(self) -> Deferred:
        """Stop children one after the other, last started first.

        Sequential on purpose: the wader has stopped reading (its connections
        are closed) before delivery flushes, and delivery has flushed before
        the store closes.
        """
        log.info("Flamingod stopping")
        self._restore_signals()
        Service.stopService(self)
        d: Deferred = succeed(None)
        for child in reversed(list(self)):
            if child.running:
                d.addCallback(lambda _, c=child: maybeDeferred(c.stopService))
                d.addErrback(lambda f, c=child: log.failure("Stopping {name} failed", f,
                                                           name=c.name))

        def done(result: Any) -> Any:
            log.info("Flamingod stopped")
            self.logs.stop()
            self._announced = False
            return result

        return d.addBoth(done)

    # signals: TERM/INT -> reactor.stop -> stopService above; USR1; HUP

    def restart_wader(self) -> None:
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
            def handler(_signum: int, _frame: Any, action: Callable[[], None] = action) -> None:
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

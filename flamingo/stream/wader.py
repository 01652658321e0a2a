"""The wader: holds the connection to a streaming API through every failure.

``Wader`` (a twisted Service) is the thin public face of a state machine
(``machine.py``) over one ``Source`` (``twitter.py`` for v1.1). It keeps at
most one live connection, plus, during a graceful restart, one candidate
with the new params: the candidate replaces the live connection as soon as
the server accepts it (Twitter's advice: connect with the new predicates,
wait for the first response, then drop the old connection); messages the
new one repeats from the old one are dropped by id for ``overlap_timeout``
seconds.

States (``WaderState.name``): connecting, connected, retrying, fatal,
waiting_for_params, stopped. Every transition is logged.

Time goes through ``clock`` (an IReactorTime; a ``task.Clock`` in tests),
the network through ``reactor`` (real loopback in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.iweb import IAgent

from flamingo.config import Config
from flamingo.logs import logger
from flamingo.sources.registry import build_source
from flamingo.sources.twitter import FATAL_DISCONNECT_CODES, Auth, TwitterV11Source, V11Stats, auth_for
from flamingo.stream.backoff import Backoffs
from flamingo.stream.endpoints import Endpoint
from flamingo.stream.flow import Flow
from flamingo.stream.machine import Inputs, build_machine
from flamingo.stream.source import JournalTail, Link, Source, Verdict
from flamingo.stream.wader_core import Core, Links, MessageSink, ParamsReader, WaderState, WaderStats

__all__ = ["Wader", "WaderState", "MessageSink", "auth_for", "FATAL_DISCONNECT_CODES"]

log = logger("flamingo.wader")

_machine = build_machine()


class Wader(Service):
    """The stream connection service: when to connect; the source says how."""

    name = "wader"

    def __init__(self, config: Config, reactor: IReactorTime, store: ParamsReader | None,
                 sink: MessageSink, stats: StreamStats | None = None,
                 clock: IReactorTime | None = None, agent: IAgent | None = None,
                 endpoint: Endpoint | None = None, auth: Auth | None = None,
                 now: Callable[[], float] | None = None, source: Source | None = None,
                 journal: JournalTail | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.store = store
        self.sink = sink
        #: back-pressure: links pause reading while it is closed (``LinkEvents.flow``)
        self.flow: Flow | None = getattr(sink, "flow", None)
        self.stats: StreamStats = stats if stats is not None else _NoStats()
        if source is None and (endpoint is not None or auth is not None or agent is not None):
            source = TwitterV11Source(config, reactor, self.clock, self.stats, endpoint=endpoint, auth=auth,
                                      agent=agent)
        self.source: Source = source if source is not None else build_source(
            config, reactor, self.clock, self.stats, journal)
        self.backoffs = Backoffs(config.wader.backoff)
        self._core = Core(config=config, clock=self.clock,
                          now=now if now is not None else self.clock.seconds,
                          source=self.source, sink=sink, stats=self.stats, store=store,
                          events=self, backoffs=self.backoffs)
        self._machine: Inputs = _machine(self._core)
        self._debounce_call: IDelayedCall | None = None
        self._subscribed = False

    # -- public ---------------------------------------------------------------

    @property
    def stream(self) -> str:
        return self.source.stream

    @property
    def state(self) -> WaderState:
        return self._core.state

    @state.setter
    def state(self, value: WaderState) -> None:  # tests pose states for REST
        self._core.state = value

    @property
    def links(self) -> Links:
        """The live connection, its candidate during a switch, and whether repeats
        of a previous connection are still being dropped."""
        return self._core.links

    @property
    def active(self) -> Link | None:
        return self.links.active

    @property
    def candidate(self) -> Link | None:
        return self.links.candidate

    def on_state(self, callback: Callable[[WaderState], None]) -> None:
        """Call ``callback(state)`` after every transition (REST events, tests)."""
        self._core.listeners.append(callback)

    def startService(self) -> None:
        Service.startService(self)
        on_change = getattr(self.store, "on_change", None)
        if not self._subscribed and on_change is not None:
            on_change(self._store_changed)
            self._subscribed = True
        self._machine.start()

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        self._cancel_debounce()
        done: defer.Deferred[None] = defer.Deferred()
        self._machine.stop(done)
        return done

    def restart(self) -> None:
        """Graceful restart now (SIGUSR1, REST, console): overlap if connected."""
        if not self.running:
            return
        log.info("Wader restart requested")
        self._cancel_debounce()
        self._machine.replace()

    def params_changed(self) -> None:
        """Params were edited: one graceful restart after ``debounce`` seconds of quiet."""
        if not self.running:
            return
        delay = self.config.wader.debounce
        if self._debounce_call is not None and self._debounce_call.active():
            self._debounce_call.reset(delay)
        else:
            self._debounce_call = self.clock.callLater(delay, self._debounced)

    # -- what links report (LinkEvents) ----------------------------------------------

    def responded(self, link: Link) -> None:
        self._machine.responded(link)

    def refused(self, link: Link, verdict: Verdict) -> None:
        self._machine.refused(link, verdict)

    def alive(self, link: Link) -> None:
        self._machine.alive(link)

    def messages(self, link: Link, frames: list[bytes]) -> None:
        self._machine.messages(link, frames)

    def ended(self, link: Link, verdict: Verdict) -> None:
        self._machine.ended(link, verdict)

    # -- params ---------------------------------------------------------------------

    def _store_changed(self, kind: str, name: str) -> None:
        if kind == "params" and name == self.stream:
            self.params_changed()

    def _debounced(self) -> None:
        self._debounce_call = None
        log.info("Stream params changed: applying the new predicates")
        self._machine.params_changed()

    def _cancel_debounce(self) -> None:
        if self._debounce_call is not None and self._debounce_call.active():
            self._debounce_call.cancel()
        self._debounce_call = None


class StreamStats(WaderStats, V11Stats, Protocol):
    """The figures the wader and its source record (``flamingo.dispatch.stats.Stats``)."""


class _NoStats:
    """No figures (tests and tools that do not read them)."""

    def connection_attempt(self, cause: str) -> None: ...

    def duplicates(self, n: int) -> None: ...

    def keepalive(self, n: int) -> None: ...

    def parse_error(self, kind: str, sample: bytes, n: int) -> None: ...

    def disconnect_message(self, code: int, reason: str) -> None: ...




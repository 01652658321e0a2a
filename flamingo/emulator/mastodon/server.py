"""``MastodonEmulator``: an instance (REST) and its streaming server on two ports.

``MastodonEmulator(MastoOptions(...), reactor=reactor).start()`` in a
running reactor; ``flamingo emulator --source mastodon`` from a shell. The
REST port answers discovery and the timelines; the streaming port (named by
``/api/v2/instance`` as ``configuration.urls.streaming``, as big instances
put it on another host) serves the WebSocket, SSE and health. Both read one
``Timeline``. ``clock`` runs every timer (status making, pings, thumps,
refusal windows), so tests may pass a ``Clock``.
"""

from __future__ import annotations

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Site

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.emulator.mastodon.faults import MastoFault, MastoFaults
from flamingo.emulator.mastodon.rest import RateLimit, RestResource, instance_document
from flamingo.emulator.mastodon.streaming import Session, StreamingResource
from flamingo.emulator.mastodon.timeline import Event, Timeline, TimelineOptions
from flamingo.emulator.running import stop_listening, tcp_address
from flamingo.emulator.server import ExposureError, is_loopback

__all__ = ["MastodonEmulator", "MastoOptions"]


@attrs.frozen
class MastoOptions:
    """What the emulated instance makes and whom it accepts.

    ``access_token``: the one user token accepted (None: any non-empty token;
    streaming always needs one, as since Mastodon 4.2). ``rate``: statuses per
    second made by the clock (0: only ``timeline.make``). ``rate_limit`` REST
    requests per ``rate_period`` seconds per token. ``ping_interval`` (WebSocket)
    and ``thump_interval`` (SSE) in seconds, 0 = never.
    """

    access_token: str | None = attrs.field(default=None, repr=False)
    seed: int = 1
    rate: float = 5.0
    retain: int = 10_000
    mention_share: float = 0.03
    direct_share: float = 0.01
    edit_share: float = 0.0
    delete_share: float = 0.0
    rate_limit: int = 300
    rate_period: float = 300.0
    ping_interval: float = 30.0
    thump_interval: float = 15.0

    def timeline_options(self) -> TimelineOptions:
        return TimelineOptions(seed=self.seed, rate=self.rate, retain=self.retain,
                               mention_share=self.mention_share, direct_share=self.direct_share,
                               edit_share=self.edit_share, delete_share=self.delete_share)


class _QuietSite(Site):
    noisy = False

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)  # type: ignore[no-untyped-call]  # twisted.web's Site

    def log(self, request: http.Request) -> None:  # no access log lines
        pass


class MastodonEmulator:
    """An instance and its streaming server, both on 127.0.0.1 by default."""

    def __init__(self, options: MastoOptions | None = None, reactor: IReactorTCP | None = None,
                 clock: IReactorTime | None = None) -> None:
        reactor = maybe_global_reactor(reactor)
        self.options = options or MastoOptions()
        self.reactor = reactor
        if clock is None:
            if not IReactorTime.providedBy(reactor):
                raise TypeError("a clock, or a reactor that is one")
            clock = reactor
        self.clock: IReactorTime = clock
        self.timeline = Timeline(self.options.timeline_options(), self.clock)
        self.timeline.listeners.append(self._fan_out)
        self.timeline.hooks.append(self._scripted)
        self.faults = MastoFaults(self.clock.seconds)
        self.rate_limit = RateLimit(self.options.rate_limit, self.options.rate_period)
        self.sessions: list[Session] = []
        self.client_messages: list[JsonObject] = []  # subscribe/unsubscribe as received
        #: while set and not fired, timeline requests wait (a slow REST API; tests release it)
        self.hold_timelines: defer.Deferred[None] | None = None
        #: while set, timeline requests are answered with this status (a REST API in trouble)
        self.fail_timelines: int | None = None
        #: False: /api/v2/instance is 404, as on servers before Mastodon 4.0 (v1's document only)
        self.instance_v2 = True
        self.counters = {"websocket_connections": 0, "sse_connections": 0, "refused": 0,
                         "unauthorized": 0, "rest_requests": 0, "timeline_pages": 0,
                         "rate_limited": 0, "drops": 0, "timelines_held": 0}
        self._ports: list[IListeningPort] = []
        self.host = "127.0.0.1"
        self.port = 0
        self.streaming_port = 0

    # -- lifecycle ----------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0, streaming_port: int = 0) -> MastodonEmulator:
        if not is_loopback(host) and not self.options.access_token:
            raise ExposureError(f"refusing to listen on {host} without --access-token: anyone who "
                                "can reach the port could read from it")
        self.host = host
        rest = self.reactor.listenTCP(port, _QuietSite(RestResource(self)), interface=host)  # type: ignore[arg-type]  # a Site is a ServerFactory
        self._ports.append(rest)
        self.port = tcp_address(rest).port
        stream = self.reactor.listenTCP(streaming_port, _QuietSite(StreamingResource(self)),  # type: ignore[arg-type]
                                        interface=host)
        self._ports.append(stream)
        self.streaming_port = tcp_address(stream).port
        self.timeline.start()
        return self

    def stop(self) -> defer.Deferred[None]:
        self.timeline.stop()
        for s in list(self.sessions):
            s.drop()
        ports, self._ports = self._ports, []
        return defer.gatherResults([stop_listening(p) for p in ports]).addCallback(lambda _: None)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def streaming_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.streaming_port}"

    def instance_document(self) -> dict[str, object]:
        return instance_document(self.url, self.streaming_url)

    # -- tokens ---------------------------------------------------------------------

    def token_problem(self, token: str | None, streaming: bool) -> str | None:
        """Mastodon's error message for this token, or None when it is accepted."""
        if not token:
            return "Missing access token" if streaming else None
        expected = self.options.access_token
        if expected is not None and token != expected:
            return "Invalid access token" if streaming else "The access token is invalid"
        return None

    # -- sessions and faults ---------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self.sessions.append(session)

    def session_closed(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    def _fan_out(self, event: Event) -> None:
        for s in list(self.sessions):
            s.deliver(event)

    def drop(self) -> int:
        """Close every streaming connection now; how many there were."""
        sessions = list(self.sessions)
        self.counters["drops"] += 1
        for s in sessions:
            s.drop()
        return len(sessions)

    def refuse(self, seconds: float, health: bool = False) -> None:
        """Streaming answers 502 for ``seconds`` (statuses keep being made); open ones are
        dropped. ``health``: the health check still says OK (only upgrades and SSE refused)."""
        self.faults.refuse(seconds, health)
        self.drop()

    def stall(self, seconds: float) -> None:
        """Open streaming connections go silent for ``seconds``."""
        stalled = list(self.sessions)
        for s in stalled:
            s.stall(True)

        def wake() -> None:
            for s in stalled:
                if s in self.sessions:
                    s.stall(False)

        self.clock.callLater(seconds, wake)

    def add_faults(self, *faults: MastoFault) -> None:
        self.faults.pending.extend(faults)

    def _scripted(self, made: int) -> None:
        for fault in self.faults.due(made):
            if fault.kind == "drop":
                self.drop()
            elif fault.kind == "refuse":
                self.refuse(fault.seconds)
            else:
                self.stall(fault.seconds)

    def subscribers(self, kind: str | None = None) -> list[Session]:
        return [s for s in self.sessions if kind is None or s.kind == kind]

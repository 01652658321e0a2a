"""Serving the API: a quiet Site (the API logs each request itself, without
query strings or bodies) bound from ``web.host``/``web.port``, and the
once-a-second sample that times a stalled sink for ``/ready``."""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint
from twisted.internet.task import LoopingCall
from twisted.web import http
from twisted.web.server import Request, Site

from flamingo.app import App
from flamingo.logs import logger
from flamingo.web.api import FlamingoApi

__all__ = ["FlamingoSite", "BoundedRequest", "WebService", "make_site", "web_service",
           "endpoint_description"]

log = logger("flamingo.web")

#: Seconds between readiness samples (a sink without progress_at is timed by them).
SAMPLE_INTERVAL = 1.0


class FlamingoSite(Site):
    """A Site without Twisted's access log: the Guard logs each request at INFO instead."""

    displayTracebacks = False
    api: FlamingoApi

    def log(self, request: http.Request) -> None:
        pass


class BoundedRequest(Request):
    """Stops buffering a body past ``max_body`` bytes (memory and disk stay
    bounded); the API then answers 413 from ``body_bytes``."""

    max_body = 1024 * 1024
    body_bytes = 0

    def handleContentChunk(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.body_bytes <= self.max_body:
            super().handleContentChunk(data)  # type: ignore[no-untyped-call]  # twisted leaves it untyped


def _bounded(limit: int) -> type[BoundedRequest]:
    """A BoundedRequest class whose limit is ``limit`` bytes (a Site makes its requests from a class)."""

    class Bounded(BoundedRequest):
        max_body = limit

    Bounded.__name__ = Bounded.__qualname__ = "BoundedRequest"
    return Bounded


def make_site(app: App) -> FlamingoSite:
    api = FlamingoApi(app)
    site = FlamingoSite(api.resource())  # type: ignore[no-untyped-call]  # twisted leaves Site untyped
    site.api = api
    site.requestFactory = _bounded(app.config.web.max_body)
    site.noisy = False
    return site


def endpoint_description(host: str, port: int) -> str:
    """``tcp:4711:interface=127.0.0.1`` (IPv6 colons escaped for strports)."""
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}"


class WebService(StreamServerEndpointService):
    """The listening port, plus the readiness sample while it runs: without
    it, a sink that stalled before the first probe would be timed from that
    probe instead of from when it stopped moving."""

    def __init__(self, endpoint: IStreamServerEndpoint, site: FlamingoSite, clock: IReactorTime) -> None:
        super().__init__(endpoint, site)  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        self._sample = LoopingCall(site.api.readiness.stalled)
        self._sample.clock = clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        self._sample.start(SAMPLE_INTERVAL, now=True).addErrback(
            lambda f: log.failure("readiness sample", f))

    def stopService(self) -> Deferred[None] | None:
        if self._sample.running:
            self._sample.stop()
        stopped: Deferred[None] | None = super().stopService()  # type: ignore[no-untyped-call]  # twisted's
        return stopped


def web_service(app: App) -> Service:
    """The REST API as a service listening on web.host:web.port (default 127.0.0.1:4711)."""
    web = app.config.web
    endpoint = serverFromString(app.reactor, endpoint_description(web.host, web.port))
    service = WebService(endpoint, make_site(app), app.reactor)
    service.setName("web")  # type: ignore[no-untyped-call]  # twisted leaves it untyped
    return service

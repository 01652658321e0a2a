"""Serving the API: a quiet Site (the API logs each request itself, without
query strings or bodies) bound from ``web.host``/``web.port``."""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.web.server import Request, Site

from flamingo.app import App
from flamingo.web.api import FlamingoApi

__all__ = ["FlamingoSite", "BoundedRequest", "make_site", "web_service", "endpoint_description"]


class FlamingoSite(Site):
    """A Site without Twisted's access log: FlamingoApi logs at INFO instead."""

    displayTracebacks = False

    def log(self, request: Any) -> None:
        pass


class BoundedRequest(Request):
    """Stops buffering a body past ``max_body`` bytes (memory and disk stay
    bounded); the API then answers 413 from ``body_bytes``."""

    max_body = 1024 * 1024
    body_bytes = 0

    def handleContentChunk(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.body_bytes <= self.max_body:
            super().handleContentChunk(data)


def make_site(app: App) -> FlamingoSite:
    site = FlamingoSite(FlamingoApi(app).resource())
    site.requestFactory = type("BoundedRequest", (BoundedRequest,),
                               {"max_body": app.config.web.max_body})
    site.noisy = False
    return site


def endpoint_description(host: str, port: int) -> str:
    """``tcp:4711:interface=127.0.0.1`` (IPv6 colons escaped for strports)."""
    return f"tcp:{port}:interface={host.replace(':', chr(92) + ':')}"


def web_service(app: App) -> Service:
    """The REST API as a service listening on web.host:web.port (default 127.0.0.1:4711)."""
    web = app.config.web
    endpoint = serverFromString(app.reactor, endpoint_description(web.host, web.port))
    service = StreamServerEndpointService(endpoint, make_site(app))
    service.setName("web")
    return service

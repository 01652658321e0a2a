"""The REST API (Klein): the original Flamingo's routes, status, metrics,
health and an OpenAPI document. ``web_service(app)`` is what the daemon runs."""

from flamingo.web.api import ApiError, FlamingoApi
from flamingo.web.server import FlamingoSite, make_site, web_service

__all__ = ["FlamingoApi", "ApiError", "FlamingoSite", "make_site", "web_service"]

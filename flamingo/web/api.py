"""The REST API: the original Flamingo's routes plus status, metrics, health,
readiness and an OpenAPI document, as one class-based Klein app.

``FlamingoApi(app).resource()`` is the whole API: the Klein app behind a
:class:`~flamingo.web.guard.Guard` that checks Host, Origin, token and body
size and logs each request before any routing (so an unknown route without
the token is still a 401). Handlers never return dicts (Klein would send an
empty 200): ``_json`` serialises.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter

from flamingo._types import JsonObject
from flamingo.app import App
from flamingo.errors import NotFound, StoreUnavailable, ValidationError
from flamingo.logs import logger
from flamingo.web import _params, dashboard, documents
from flamingo.web import rules as rules_api
from flamingo.web._params import BadRequest, RequestParams
from flamingo.web.guard import Guard
from flamingo.web.health import Readiness, liveness
from flamingo.web.metrics import Metrics
from flamingo.web.routes import ROUTES, listing

if TYPE_CHECKING:  # the store is one of App's parts; only its type is needed here
    from flamingo.app import StoreWriter
    from flamingo.domain.subscription import Subscription

__all__ = ["FlamingoApi", "ApiError", "RESOURCES"]

log = logger("flamingo.web")

#: Stream name -> the original's "resource" (v1.1 path without version).
RESOURCES = {
    "filter": "statuses/filter",
    "sample": "statuses/sample",
    "firehose": "statuses/firehose",
}

_JSON = b"application/json"


class _ParamName(BaseConverter):
    """A stream param's name in a path: anything but ``rules``, which is X's rules route."""

    regex = r"(?!rules\.json)[^/]+"


class ApiError(Exception):
    """An HTTP error answered as ``{"error": ..., "detail": ...}``."""

    def __init__(self, status: int, error: str, detail: object = None,
                 headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def _dumps(value: object) -> bytes:
    return json.dumps(value, default=str).encode("ascii")


def _json(request: IRequest, value: object, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    return _dumps(value)


_E = TypeVar("_E", bound=BaseException)


def _error(failure: Failure, kind: type[_E]) -> _E:
    """The exception an error handler was registered for (Klein calls it for nothing else)."""
    exc = failure.value
    if not isinstance(exc, kind):
        failure.raiseException()
    return exc


class FlamingoApi:
    """The REST API over one running daemon (an :class:`App`)."""

    app = Klein()
    app.url_map.converters["param"] = _ParamName  # before the routes below are declared

    def __init__(self, flamingo: App, clock: IReactorTime | None = None) -> None:
        self.flamingo = flamingo
        self.config = flamingo.config
        self.clock = clock if clock is not None else flamingo.reactor
        self.readiness = Readiness(flamingo, self.clock, self.config.health.stuck_after)
        self._metrics = Metrics(flamingo, self.readiness)
        self.guard = Guard(self.app.resource(), self.config.web)
        # The dashboard's cookie is one more credential; its poll logs at DEBUG.
        if self.config.web.token:
            self.guard.add_credential(dashboard.credential(self.config.web.token))
        self.guard.quiet_paths = frozenset({dashboard.DATA_PATH})

    # --- plumbing ---------------------------------------------------------

    def resource(self) -> Guard:
        """The API as served: the routes behind the guard."""
        return self.guard

    def _params(self, request: IRequest) -> RequestParams:
        query = urlsplit(request.uri).query
        request.content.seek(0)
        body = request.content.read()
        ctype = request.getHeader(b"content-type")
        return _params.parse_request(query, ctype.decode("latin-1") if ctype else None, body)

    # --- errors, one handler per type (Klein tries them in this order) ---------

    @app.handle_errors(ApiError)
    def _api_error(self, request: IRequest, failure: Failure) -> bytes:
        exc = _error(failure, ApiError)
        for k, v in exc.headers.items():
            request.setHeader(k, v)
        return _json(request, {"error": exc.error, "detail": exc.detail}, exc.status)

    @app.handle_errors(BadRequest)
    def _bad_request(self, request: IRequest, failure: Failure) -> bytes:
        exc = _error(failure, BadRequest)
        return _json(request, {"error": exc.message, "detail": exc.detail}, 400)

    @app.handle_errors(ValidationError)
    def _invalid(self, request: IRequest, failure: Failure) -> bytes:
        exc = _error(failure, ValidationError)
        return _json(request, {"error": str(exc), "detail": {
            "field": exc.field, "message": exc.message, "limit": exc.limit}}, 422)

    @app.handle_errors(NotFound)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        exc = _error(failure, NotFound)
        return _json(request, {"error": str(exc), "detail": {"what": exc.what,
                                                             "name": exc.name}}, 404)

    @app.handle_errors(StoreUnavailable)
    def _store_unavailable(self, request: IRequest, failure: Failure) -> bytes:
        return _json(request, {"error": "redis unavailable",
                               "detail": str(failure.value) or "the change was not made"}, 503)

    @app.handle_errors(MethodNotAllowed)
    def _method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        allowed = sorted(_error(failure, MethodNotAllowed).valid_methods or ())
        request.setHeader(b"allow", ", ".join(allowed).encode())
        return _json(request, {"error": "method not allowed", "detail": {"allowed": allowed}}, 405)

    @app.handle_errors(HTTPException)
    def _http_error(self, request: IRequest, failure: Failure) -> bytes:
        exc = _error(failure, HTTPException)
        code = exc.code or 500
        error = "no such route" if code == 404 else (exc.name or "error").lower()
        return _json(request, {"error": error,
                               "detail": request.path.decode("latin-1", "replace")}, code)

    @app.handle_errors(Exception)
    def _internal_error(self, request: IRequest, failure: Failure) -> bytes:
        log.failure("unhandled error in {method} {path}", failure,
                    method=request.method.decode("latin-1"),
                    path=request.path.decode("latin-1", "replace"))
        return _json(request, {"error": "internal error", "detail": type(failure.value).__name__}, 500)

    # --- reading helpers --------------------------------------------------------

    @property
    def store(self) -> StoreWriter:
        if self.flamingo.store is None:
            raise ApiError(503, "store not started", None)
        return self.flamingo.store

    def _stream(self, name: str) -> str:
        known = set(RESOURCES) | set(self.store.stream_names())
        if name not in known:
            raise ApiError(404, f"unknown stream {name!r}", {"streams": sorted(known)})
        return name

    def _stream_doc(self, name: str) -> JsonObject:
        return {"name": name, "resource": RESOURCES.get(name), "params": self.store.params(name)}

    def _wader_state(self) -> JsonObject | None:
        return documents.wader_state(self.flamingo)

    def _writable(self) -> StoreWriter:
        store = self.store
        if not store.available:
            raise ApiError(503, "redis unavailable", "the change was not made; retry later")
        return store

    def _subscription_doc(self, sub: Subscription) -> JsonObject:
        doc = sub.to_dict()
        doc["queue"] = sub.queue_key(self.store.prefix)
        if sub.format == "stream":
            doc["stream"] = documents.stream_stats(self.flamingo, sub.name)
        return doc

    def _subscription(self, name: str) -> Subscription:
        sub = self.store.subscriptions().get(name)
        if sub is None:
            raise ApiError(404, "Subscription does not exist", {"name": name})
        return sub

    # --- the original's routes -------------------------------------------------

    @app.route("/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1").lower()
        if "application/json" in accept:
            return _json(request, {"resources": [
                {"method": r.method, "path": r.path, "summary": r.summary}
                for r in sorted(ROUTES, key=lambda r: (r.path, r.method))]})
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return ("\n".join(listing()) + "\n").encode()

    @app.route("/meta.json", methods=["GET"])
    def meta(self, request: IRequest) -> bytes:
        return _json(request, documents.meta_document(self.flamingo, self.clock.seconds()))

    @app.route("/streams/<name>.json", methods=["GET"])
    def get_stream(self, request: IRequest, name: str) -> bytes:
        return _json(request, self._stream_doc(self._stream(name)))

    @app.route("/streams/<name>.json", methods=["PUT"])
    async def put_stream(self, request: IRequest, name: str) -> bytes:
        name = self._stream(name)
        given = self._params(request)
        new = {k: _params.split_values(given.raw(k)) for k in given.names() if k != "name"}
        if not new:
            raise BadRequest("no params given", {"example": "track=a,b&follow=1,2"})
        store = self._writable()
        await store.set_params(name, new)
        log.info("Set {keys} on stream {stream}", keys=",".join(sorted(new)), stream=name)
        return _json(request, {**self._stream_doc(name), "wader": self._wader_state()})

    @app.route("/streams/<name>/<param:key>.json", methods=["GET"])
    def get_param(self, request: IRequest, name: str, key: str) -> bytes:
        name = self._stream(name)
        return _json(request, self.store.params(name).get(key, []))

    def _param_result(self, request: IRequest, name: str, key: str) -> bytes:
        state = self._wader_state()
        if state is not None and state.get("name"):
            request.setHeader(b"flamingo-wader-state", str(state["name"]).encode())
        return _json(request, self.store.params(name).get(key, []))

    @app.route("/streams/<name>/<param:key>.json", methods=["POST"])
    async def post_param(self, request: IRequest, name: str, key: str) -> bytes:
        name = self._stream(name)
        given = self._params(request)
        _params.check_known(given, ("values", "add", "remove"))
        add = given.split("add")
        if add is None:
            add = given.split("values")
        remove = given.split("remove")
        if add is None and remove is None:
            raise BadRequest("give values=A,B or add=A,B and/or remove=C", {"param": key})
        store = self._writable()
        if add:
            await store.add_values(name, key, add)
        if remove and key in store.params(name):  # removing what is not there: a no-op
            await store.remove_values(name, key, remove)
        return self._param_result(request, name, key)

    @app.route("/streams/<name>/<param:key>.json", methods=["PUT"])
    async def put_param(self, request: IRequest, name: str, key: str) -> bytes:
        name = self._stream(name)
        given = self._params(request)
        _params.check_known(given, ("values",))
        values = given.split("values")
        if values is None:
            raise BadRequest("give values=A,B", {"param": key})
        store = self._writable()
        await store.set_param(name, key, values)
        return self._param_result(request, name, key)

    @app.route("/streams/<name>/<param:key>.json", methods=["DELETE"])
    async def delete_param(self, request: IRequest, name: str, key: str) -> bytes:
        name = self._stream(name)
        given = self._params(request)
        _params.check_known(given, ("values",))
        values = given.split("values")
        store = self._writable()
        if key not in store.params(name):
            pass  # as the original: deleting an unset param answers []
        elif values:
            await store.remove_values(name, key, values)
        else:
            await store.delete_param(name, key)
        return self._param_result(request, name, key)

    @app.route("/subscriptions.json", methods=["GET"])
    def list_subscriptions(self, request: IRequest) -> bytes:
        subs = self.store.subscriptions()
        return _json(request, [self._subscription_doc(subs[n]) for n in sorted(subs)])

    @app.route("/subscriptions.json", methods=["POST"])
    async def post_subscription(self, request: IRequest) -> bytes:
        from flamingo.domain.subscription import Subscription

        given = self._params(request)
        _params.check_known(given, ("name",) + _SUB_OPTIONS)
        name = given.one("name")
        if name is None:
            raise BadRequest("give name=N", {"field": "name"})
        sub = Subscription.create(name, **_subscription_options(given))
        store = self._writable()
        await store.save_subscription(sub)
        return _json(request, self._subscription_doc(sub))

    @app.route("/subscriptions/<name>.json", methods=["GET"])
    def get_subscription(self, request: IRequest, name: str) -> bytes:
        return _json(request, self._subscription_doc(self._subscription(name)))

    @app.route("/subscriptions/<name>.json", methods=["PATCH"])
    async def patch_subscription(self, request: IRequest, name: str) -> bytes:
        from flamingo.domain.subscription import Subscription

        old = self._subscription(name)
        given = self._params(request)
        _params.check_known(given, ("name",) + _SUB_OPTIONS)
        if given.has("name") and given.one("name") != name:
            raise BadRequest("a subscription cannot be renamed", {"field": "name"})
        options = {"format": old.format, "types": old.types, "filter": old.filter,
                   "max_length": old.max_length, "groups": old.groups, "rules": old.rules}
        changes = _subscription_options(given)
        if not changes:
            raise BadRequest("no options given", {"options": list(_SUB_OPTIONS)})
        options.update(changes)
        sub = Subscription.create(name, **options)
        store = self._writable()
        await store.save_subscription(sub)
        return _json(request, self._subscription_doc(sub))

    @app.route("/subscriptions/<name>.json", methods=["DELETE"])
    async def delete_subscription(self, request: IRequest, name: str) -> bytes:
        sub = self._subscription(name)
        given = self._params(request)
        _params.check_known(given, ("drop_queue",))
        drop = _params.parse_bool("drop_queue", given.one("drop_queue"))
        store = self._writable()
        await store.delete_subscription(name, drop_queue=drop)
        return _json(request, {**self._subscription_doc(sub), "deleted": True,
                               "queue_dropped": drop})

    # --- new routes ------------------------------------------------------------

    @app.route("/streams/filter/rules.json", methods=["GET", "POST", "DELETE"])
    async def filter_rules(self, request: IRequest) -> bytes:
        rules = self.flamingo.rules
        if rules is None:
            raise ApiError(404, "no filter rules here: they are for source: x, stream: filter",
                           {"source": self.config.source, "stream": self.config.stream})
        status, body = await rules_api.handle(rules, request.method.decode("latin-1"), self._params(request))
        return _json(request, body, status)

    @app.route("/status.json", methods=["GET"])
    def status(self, request: IRequest) -> bytes:
        return _json(request, documents.status_document(self.flamingo, self.clock.seconds()))

    @app.route("/wader/restart.json", methods=["POST"])
    def restart_wader(self, request: IRequest) -> bytes:
        wader = self.flamingo.wader
        if wader is None:
            raise ApiError(503, "wader not started", None)
        log.info("Restarting wader (REST)")
        wader.restart()
        return _json(request, {"restarting": True, "wader": self._wader_state()})

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", self._metrics.content_type.encode())
        return self._metrics.render()

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        ok, checks = liveness(self.flamingo)
        body = {"status": "ok" if ok else "unhealthy", "checks": checks}
        if not ok:
            reason = "; ".join(f"{k}: {v['reason']}" for k, v in checks.items() if not v["ok"])
            body.update(reason=reason, error="unhealthy", detail=reason)
        return _json(request, body, 200 if ok else 503)

    @app.route("/ready", methods=["GET"])
    def ready(self, request: IRequest) -> bytes:
        reasons = self.readiness.check()
        body: JsonObject = {"status": "ready" if not reasons else "not ready",
                                "reasons": [r.to_dict() for r in reasons]}
        if reasons:
            body.update(error="not ready",
                        detail="; ".join(f"{r.reason}: {r.detail}" for r in reasons))
        return _json(request, body, 503 if reasons else 200)

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        from flamingo.web.openapi import document

        return _json(request, document())

    # --- the dashboard: everything else is in flamingo/web/dashboard.py ---

    @app.route(dashboard.PAGE_PATH, methods=["GET"])
    def dashboard_page(self, request: Request) -> bytes:  # sets a cookie: Request.addCookie
        return dashboard.page(request, self.config.web.token)

    @app.route(dashboard.DATA_PATH, methods=["GET"])
    def dashboard_data(self, request: IRequest) -> bytes:
        return _json(request, dashboard.snapshot(self.flamingo))

    @app.route(dashboard.STATIC_PREFIX + "<path:name>", methods=["GET"])
    def dashboard_static(self, request: IRequest, name: str) -> bytes:
        body = dashboard.static(request, name)
        if body is None:
            raise ApiError(404, "no such file", {"name": name})
        return body


_SUB_OPTIONS = ("format", "types", "filter", "max_length", "groups", "rules")


def _subscription_options(given: RequestParams) -> JsonObject:
    """format / types / filter / max_length, only those given."""
    out: JsonObject = {}
    if given.has("format"):
        out["format"] = given.one("format")
    if given.has("types"):
        out["types"] = given.split("types") or None
    if given.has("filter"):
        out["filter"] = tuple(given.split("filter") or ())
    if given.has("max_length"):
        out["max_length"] = _params.parse_int("max_length", given.one("max_length"))
    if given.has("groups"):
        out["groups"] = tuple(given.split("groups") or ())
    if given.has("rules"):
        out["rules"] = tuple(given.split("rules") or ())
    return out

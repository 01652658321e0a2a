"""The OpenAPI 3 document of the REST API, built in code from the route table.

Kept true by a schemathesis run against the live server in the test suite
(tests/test_web_schema.py): every status a route can answer is listed, every
schema is what the handlers really send.
"""

from __future__ import annotations

import copy
import functools

from flamingo import __version__
from flamingo._types import JsonObject
from flamingo.domain import catalog
from flamingo.web.health import REASONS
from flamingo.web.routes import ROUTES

__all__ = ["document"]

_STR_LIST = {"type": "array", "items": {"type": "string"}}
_NULLABLE_NUM = {"type": ["number", "null"]}

SCHEMAS: JsonObject = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {}},
    },
    "Params": {
        "type": "object",
        "description": "param -> sorted values (empty params omitted)",
        "additionalProperties": _STR_LIST,
    },
    "WaderState": {
        "type": ["object", "null"],
        "properties": {
            "name": {"type": "string"},
            "cause": {"type": ["string", "null"]},
            "attempt": {"type": ["integer", "null"]},
            "next_attempt_at": _NULLABLE_NUM,
            "message": {"type": ["string", "null"]},
            "connected_since": _NULLABLE_NUM,
            "request_line": {"type": ["string", "null"]},
        },
    },
    "Stream": {
        "type": "object",
        "required": ["name", "resource", "params"],
        "properties": {
            "name": {"type": "string"},
            "resource": {"type": ["string", "null"]},
            "params": {"$ref": "#/components/schemas/Params"},
            "wader": {"$ref": "#/components/schemas/WaderState"},
        },
    },
    "Values": _STR_LIST,
    "Subscription": {
        "type": "object",
        "required": ["name", "format", "types", "filter", "max_length", "queue"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
            "format": {"type": "string", "enum": ["raw", "envelope", "resque", "stream"]},
            "types": {"type": ["array", "null"], "items": {"type": "string"}},
            "filter": _STR_LIST,
            "max_length": {"type": ["integer", "null"], "minimum": 1},
            "groups": _STR_LIST,
            "stream": {"$ref": "#/components/schemas/StreamStats"},
            "rules": _STR_LIST,
            "queue": {"type": "string"},
            "deleted": {"type": "boolean"},
            "queue_dropped": {"type": "boolean"},
        },
    },
    "StreamStats": {
        "type": "object",
        "description": "format stream: length, trims and each consumer group's lag and pending",
        "properties": {
            "length": {"type": ["integer", "null"]}, "trimmed": {"type": "integer"},
            "pushed": {"type": "integer"}, "at": _NULLABLE_NUM,
            "groups": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "consumers": {"type": ["integer", "null"]},
                "pending": {"type": ["integer", "null"]}, "lag": {"type": ["integer", "null"]},
                "last_delivered_id": {"type": ["string", "null"]}}}},
        },
    },
    "SubscriptionList": {"type": "array",
                         "items": {"$ref": "#/components/schemas/Subscription"}},
    "SubscriptionOptions": {
        "type": "object",
        "properties": {
            "format": {"type": "string", "enum": ["raw", "envelope", "resque", "stream"]},
            "groups": {"type": ["string", "number", "array", "null"],
                       "items": {"type": ["string", "number"]}},
            "types": {"type": ["string", "number", "array", "null"],
                      "items": {"type": ["string", "number"]}},
            "filter": {"type": ["string", "number", "array", "null"],
                       "items": {"type": ["string", "number"]}},
            "max_length": {"type": ["integer", "null"], "minimum": 1},
            "rules": {"type": ["string", "number", "array", "null"],
                      "items": {"type": ["string", "number"]}},
        },
    },
    "Rule": {
        "type": "object",
        "required": ["value", "tag", "id", "status", "error"],
        "properties": {
            "value": {"type": "string"},
            "tag": {"type": ["string", "null"]},
            "id": {"type": ["string", "null"], "description": "X's id, once active"},
            "status": {"type": "string", "enum": ["pending", "active", "rejected"]},
            "error": {"type": ["string", "null"], "description": "X's message, when rejected"},
        },
    },
    "RuleList": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}},
    "Process": {
        "type": "object",
        "properties": {"pid": {"type": "integer"}, "version": {"type": "string"},
                       "host": {"type": "string"}, "running": {"type": "boolean"},
                       "started_at": _NULLABLE_NUM, "uptime": _NULLABLE_NUM},
    },
    "Meta": {
        "type": "object",
        "required": ["process", "stream", "wader"],
        "properties": {"process": {"$ref": "#/components/schemas/Process"},
                       "stream": {"type": "string"},
                       "source": {"type": "string"},
                       "rules": {"$ref": "#/components/schemas/RuleSync"},
                       "wader": {"$ref": "#/components/schemas/WaderState"}},
    },
    "Status": {
        "type": "object",
        "required": ["wader", "state", "request_line", "connected_since", "stream",
                     "journal_backlog", "redis", "delivery", "streams", "process", "source", "cursor", "gap_fill",
                     "rules"],
        "properties": {
            "wader": {"$ref": "#/components/schemas/WaderState"},
            "state": {"type": ["string", "null"]},
            "request_line": {"type": ["string", "null"]},
            "connected_since": _NULLABLE_NUM,
            "stream": {"type": "object", "properties": {
                "name": {"type": "string"}, "params": {"$ref": "#/components/schemas/Params"}}},
            "journal_backlog": {"type": ["integer", "null"]},
            "redis": {"type": "object", "required": ["available"],
                      "properties": {"available": {"type": "boolean"}}},
            "delivery": {"type": "object"},
            "streams": {"type": "object", "description": "format stream subscriptions by name",
                        "additionalProperties": {"$ref": "#/components/schemas/StreamStats"}},
            "process": {"$ref": "#/components/schemas/Process"},
            "source": {"type": "string", "enum": ["twitter", "x", "jetstream", "mastodon"]},
            "cursor": {"type": ["object", "null"], "description":
                       "Jetstream: time_us of the newest event handed on, lag_seconds (now - time_us), "
                       "the cursor the connection asked for (requested), journaled_at_start"},
            "gap_fill": {"type": ["object", "null"], "description":
                         "Mastodon: fills, statuses, pages, truncated, failed, running, last_at, last "
                         "(per stream: since_id, filled, pages, complete, reason), rate_limit, "
                         "newest_ids (per stream), streaming_url, transport"},
            "rules": {"anyOf": [{"$ref": "#/components/schemas/RuleSync"}, {"type": "null"}],
                      "description": "X filter rules' sync (source: x, stream filter); null otherwise"},
        },
    },
    "RuleSync": {
        "type": "object",
        "description": "X filter rules (source: x, stream filter): counts and the last sync",
        "properties": {
            "rules": {"type": "integer"}, "pending": {"type": "integer"}, "active": {"type": "integer"},
            "rejected": {"type": "integer"}, "last_sync": _NULLABLE_NUM, "last_attempt": _NULLABLE_NUM,
            "next_sync_at": _NULLABLE_NUM, "error": {"type": ["string", "null"]},
            "cause": {"type": ["string", "null"]}, "syncing": {"type": "boolean"},
            "passes": {"type": "integer"}, "deleted_at_x": {"type": "integer"},
        },
    },
    "Restart": {
        "type": "object", "required": ["restarting", "wader"],
        "properties": {"restarting": {"type": "boolean"},
                       "wader": {"$ref": "#/components/schemas/WaderState"}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unhealthy"]},
            "reason": {"type": "string"},
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "checks": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["ok", "reason"],
                "properties": {"ok": {"type": "boolean"},
                               "reason": {"type": ["string", "null"]}}}},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status", "reasons"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "reasons": {"type": "array", "items": {
                "type": "object", "required": ["reason", "detail"],
                "properties": {"reason": {"type": "string", "enum": list(REASONS)},
                               "detail": {"type": "string"}}}},
            "error": {"type": "string"},
            "detail": {"type": "string"},
        },
    },
    "Resources": {
        "type": "object", "required": ["resources"],
        "properties": {"resources": {"type": "array", "items": {
            "type": "object", "required": ["method", "path", "summary"],
            "properties": {"method": {"type": "string"}, "path": {"type": "string"},
                           "summary": {"type": "string"}}}}},
    },
}

_ERRORS = {
    "400": "Malformed input",
    "401": "Missing or wrong `Authorization: Bearer <web.token>`",
    "403": "An Origin header that is not this API's own origin (no CORS)",
    "404": "Unknown stream, subscription or route",
    "405": "Wrong method for this path",
    "413": "Body larger than web.max_body",
    "421": "A Host header that is not loopback, localhost, web.host or in web.allowed_hosts",
    "422": "A value the Streaming API (or Flamingo) would refuse; detail.limit names the rule",
    "503": "Redis unavailable: the change was not made",
}

_PARAM_NAMES = ("track", "follow", "locations", "language", "filter_level",
                "stall_warnings", "delimited", "count")


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JsonObject, description: str = "OK") -> JsonObject:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(code: str) -> JsonObject:
    return _json(_ref("Error"), _ERRORS.get(code, "Error"))


def _query(name: str, description: str, schema: JsonObject | None = None) -> JsonObject:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str, description: str) -> JsonObject:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def _body(properties: JsonObject) -> JsonObject:
    """Parameters may also come as a JSON or form body (Content-Type decides)."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"required": False, "content": {
        "application/json": {"schema": schema},
        "application/x-www-form-urlencoded": {"schema": schema},
    }}


_SUB_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
_FORMAT = {"type": "string", "enum": ["raw", "envelope", "resque", "stream"]}
_MAX_LENGTH = {"type": ["integer", "null"], "minimum": 1}  # "null" (or empty) means no cap
#: What the server takes for a list-like parameter in a body: "a,b", 5, [a, 5], or null (unset).
_LIST_OR_STR = {"type": ["string", "number", "array", "null"],
                "items": {"type": ["string", "number"]}}
_NAME = {**_path("name", "Stream name"),
         "schema": {"type": "string", "enum": list(catalog.all_streams())}}
_KEY = _path("key", "Parameter name: track, follow, locations, language, ...")
_SUB = _path("name", "Subscription name")
_VALUES = _query("values", "Comma-separated values")


def _operation(method: str, path: str) -> JsonObject:
    """Parameters, body and responses of one route (errors added by the caller)."""
    ok: JsonObject
    params: list[JsonObject] = []
    body: JsonObject | None = None
    errors = ["401", "403", "421"]  # the guard's, on every route
    key = (method, path)
    if key == ("GET", "/"):
        ok = {"description": "One `METHOD /path` per line; JSON when asked",
              "content": {"text/plain": {"schema": {"type": "string"}},
                          "application/json": {"schema": _ref("Resources")}}}
    elif key == ("GET", "/meta.json"):
        ok = _json(_ref("Meta"))
    elif path == "/streams/:name.json":
        params = [_NAME]
        errors += ["404"]
        if method == "PUT":
            params += [_query(p, f"Comma-separated values of {p}") for p in _PARAM_NAMES]
            body = _body({p: _LIST_OR_STR for p in _PARAM_NAMES})
            errors += ["400", "413", "422", "503"]
        ok = _json(_ref("Stream"))
    elif path == "/streams/:name/:key.json":
        params = [_NAME, _KEY]
        errors += ["404"]
        if method == "POST":
            params += [_VALUES, _query("add", "Values to add"),
                       _query("remove", "Values to remove")]
            body = _body({"values": _LIST_OR_STR, "add": _LIST_OR_STR, "remove": _LIST_OR_STR})
        elif method in ("PUT", "DELETE"):
            params += [_VALUES]
            body = _body({"values": _LIST_OR_STR})
        if method != "GET":
            errors += ["400", "413", "422", "503"]
        ok = _json(_ref("Values"))
    elif key == ("GET", "/subscriptions.json"):
        ok = _json(_ref("SubscriptionList"))
    elif key == ("POST", "/subscriptions.json"):
        params = [_query("name", "Subscription name ([A-Za-z0-9_.:-]{1,64})", _SUB_NAME),
                  _query("format", "raw | envelope | resque | stream", _FORMAT),
                  _query("groups", "format stream: comma-separated consumer groups to create"),
                  _query("types", "Comma-separated event types (default: all)"),
                  _query("filter", "Comma-separated terms an event must contain"),
                  _query("max_length", "Trim the list to this many events", _MAX_LENGTH),
                  _query("rules", "Comma-separated X rule tags a post must have matched (source: x)")]
        props = {"name": {"type": ["string", "number"]}, **SCHEMAS["SubscriptionOptions"]["properties"]}
        body = _body(props)
        errors += ["400", "413", "422", "503"]
        ok = _json(_ref("Subscription"))
    elif path == "/subscriptions/:name.json":
        params = [_SUB]
        errors += ["404"]
        if method == "PATCH":
            params += [_query("format", "raw | envelope | resque | stream", _FORMAT),
                       _query("groups", "format stream: comma-separated consumer groups"),
                       _query("types", "Comma-separated event types"),
                       _query("filter", "Comma-separated terms"),
                       _query("max_length", "Trim the list to this many events", _MAX_LENGTH),
                       _query("rules", "Comma-separated X rule tags")]
            body = _body(SCHEMAS["SubscriptionOptions"]["properties"])
            errors += ["400", "413", "422", "503"]
        elif method == "DELETE":
            params += [_query("drop_queue", "true: also delete the subscription's list",
                              {"type": "string", "enum": ["", "true", "false", "1", "0", "yes",
                                                          "no", "on", "off"]})]
            errors += ["400", "503"]
        ok = _json(_ref("Subscription"))
    elif path == "/streams/filter/rules.json":
        errors += ["404"]  # a daemon of another source or stream has no rules
        if method != "GET":
            params = [_query("value", "The rule's value (X's rule syntax)"),
                      _query("tag", "The rule's tag (what subscriptions route by)")]
            body = _body({"value": {"type": ["string", "number", "null"]},
                          "tag": {"type": ["string", "number", "null"]}})
            errors += ["400", "413", "422", "503"]
        ok = _json(_ref("Rule"), "The rule (already there: 200, unchanged)") if method == "POST" \
            else _json(_ref("RuleList"))
    elif key == ("GET", "/status.json"):
        ok = _json(_ref("Status"))
    elif key == ("POST", "/wader/restart.json"):
        errors += ["503"]
        ok = _json(_ref("Restart"))
    elif key == ("GET", "/metrics"):
        ok = {"description": "Prometheus text format 0.0.4",
              "content": {"text/plain": {"schema": {"type": "string"}}}}
    elif key == ("GET", "/health"):
        ok = _json(_ref("Health"), "Live")
    elif key == ("GET", "/ready"):
        ok = _json(_ref("Ready"), "Ready")
    elif key == ("GET", "/openapi.json"):
        ok = _json({"type": "object"}, "This document")
    else:  # pragma: no cover - a route without a description is a bug
        raise KeyError(key)
    responses: JsonObject = {"200": ok}
    if key == ("GET", "/health"):
        responses["503"] = _json(_ref("Health"), "Unhealthy; `reason` says why")
    if key == ("GET", "/ready"):
        responses["503"] = _json(_ref("Ready"), "Not ready; `reasons` say why")
    if key == ("POST", "/streams/filter/rules.json"):
        responses["201"] = _json(_ref("Rule"), "Added: pending until X has it")
    for code in sorted(set(errors)):
        responses.setdefault(code, _error(code))
    op: JsonObject = {"responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    return op


@functools.lru_cache(maxsize=1)
def _build() -> JsonObject:
    paths: dict[str, JsonObject] = {}
    for route in ROUTES:
        op = _operation(route.method, route.path)
        op["summary"] = route.summary
        op["operationId"] = _operation_id(route.method, route.path)
        if route.original:
            op["tags"] = ["original"]
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flamingo REST API",
            "version": __version__,
            "description": "Control a running flamingod: stream params, subscriptions, "
                           "status, metrics. Errors are {\"error\", \"detail\"}.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "Only when web.token is set"}},
        },
        "security": [{}, {"token": []}],
    }


def _operation_id(method: str, path: str) -> str:
    words = [w.lstrip(":").replace(".json", "") for w in path.strip("/").split("/") if w]
    return "_".join([method.lower()] + (words or ["index"])).replace(".", "_")


def document() -> JsonObject:
    """The OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_build())

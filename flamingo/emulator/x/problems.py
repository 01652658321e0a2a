"""X API v2 error bodies (RFC 7807 "problems"), as X sends them.

Whole-request errors are a problem object (``title``, ``detail``, ``type``,
``status``); a bad query parameter is X's ``Invalid Request`` with an
``errors`` list naming the parameter; in-stream errors are a line
``{"errors": [problem]}``. Pure: each function returns the bytes.
"""

from __future__ import annotations

import orjson

from flamingo._types import JsonObject

__all__ = ["PROBLEMS", "problem", "invalid_request", "unauthorized", "too_many_requests", "too_many_connections",
           "no_rules", "usage_capped", "operational_disconnect", "status_problem", "error_line"]

PROBLEMS = "https://api.x.com/2/problems/"

_TITLES = {
    400: "Invalid Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found Error",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(title: str, detail: str, kind: str = "about:blank", **extra: object) -> JsonObject:
    """A problem object; ``kind`` is a path under X's problem URL or ``about:blank``."""
    out: JsonObject = {"title": title, "detail": detail,
                       "type": kind if kind == "about:blank" else PROBLEMS + kind}
    out.update(extra)
    return out


def invalid_request(errors: list[tuple[str, str | None, str]]) -> bytes:
    """400: one entry per bad parameter, ``(name, bad value or None, message)``."""
    items = [{"parameters": {name: [value] if value is not None else []}, "message": message}
             for name, value, message in errors]
    return orjson.dumps({"errors": items, "title": "Invalid Request",
                         "detail": "One or more parameters to your request was invalid.",
                         "type": PROBLEMS + "invalid-request"})


def unauthorized() -> bytes:
    return orjson.dumps({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})


def too_many_requests() -> bytes:
    return orjson.dumps({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                         "status": 429})


def too_many_connections() -> JsonObject:
    """The answer to a stream connection beyond the app's allowance (X sends it with 429)."""
    return problem("ConnectionException", "This stream is currently at the maximum allowed connection limit.",
                   "streaming-connection", connection_issue="TooManyConnections")


def no_rules() -> JsonObject:
    """The answer (409) to a filtered-stream connection while the app has no rules."""
    return problem("ConnectionException", "You must define rules using the POST /2/tweets/search/stream/rules "
                   "endpoint before connecting to filtered stream.", "streaming-connection",
                   connection_issue="RuleConfigurationIssue")


def usage_capped() -> JsonObject:
    """The app has used its post allowance (X: 429 at connect, and the stream ends)."""
    return problem("UsageCapExceeded", "Usage cap exceeded: Monthly product cap", "usage-capped",
                   period="Monthly", scope="Product")


def operational_disconnect() -> JsonObject:
    return problem("operational-disconnect", "This stream has been disconnected upstream for operational reasons.",
                   "operational-disconnect", disconnect_type="UpstreamOperationalDisconnect")


def status_problem(code: int, detail: str) -> bytes:
    """Any other whole-request error (scripted statuses, 404, 405, 408, 5xx)."""
    title = _TITLES.get(code, "Error")
    return orjson.dumps({"title": title, "detail": detail or title, "type": "about:blank", "status": code})


def error_line(*problems: JsonObject) -> bytes:
    """An in-stream error line (without its CRLF)."""
    return orjson.dumps({"errors": list(problems)})

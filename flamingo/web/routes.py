"""The route table: one list that ``GET /``, the OpenAPI document and the
docs are all made from, so they cannot drift from each other."""

from __future__ import annotations

import attrs

__all__ = ["Route", "ROUTES", "listing"]


@attrs.frozen
class Route:
    method: str
    path: str  # the original's Sinatra spelling, e.g. /streams/:name.json
    summary: str
    original: bool = False  # a route of the Ruby Flamingo (kept as it was)

    @property
    def openapi_path(self) -> str:
        """``/streams/:name.json`` -> ``/streams/{name}.json``."""
        parts = []
        for seg in self.path.split("/"):
            if seg.startswith(":"):
                name, dot, rest = seg[1:].partition(".")
                seg = "{" + name + "}" + dot + rest
            parts.append(seg)
        return "/".join(parts)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "The list of resources (text/plain; JSON with Accept: application/json)", True),
    Route("GET", "/meta.json", "Stats and process info", True),
    Route("GET", "/streams/:name.json", "A stream's name, resource and params", True),
    Route("PUT", "/streams/:name.json", "Set each given param (track=a,b&follow=1,2)", True),
    Route("GET", "/streams/:name/:key.json", "The values of one param", True),
    Route("POST", "/streams/:name/:key.json", "Add values (values=A,B) or add=A,B&remove=C", True),
    Route("PUT", "/streams/:name/:key.json", "Replace a param's values (values=A,B)", True),
    Route("DELETE", "/streams/:name/:key.json", "Delete a param, or only the given values", True),
    Route("GET", "/subscriptions.json", "Every subscription", True),
    Route("POST", "/subscriptions.json", "Create (or replace) a subscription (name=N, options)", True),
    Route("GET", "/subscriptions/:name.json", "One subscription", True),
    Route("PATCH", "/subscriptions/:name.json", "Change some options of a subscription"),
    Route("DELETE", "/subscriptions/:name.json", "Delete a subscription (drop_queue=true drops its list)", True),
    Route("GET", "/streams/filter/rules.json", "X filter rules (source: x): value, tag, X's id, status, error"),
    Route("POST", "/streams/filter/rules.json", "Add an X rule (value=V, tag=T); X is changed without a reconnect"),
    Route("DELETE", "/streams/filter/rules.json", "Remove X rules by value=V or tag=T; the rules left"),
    Route("GET", "/status.json", "Wader state, request line, connected since, backlog, Redis"),
    Route("POST", "/wader/restart.json", "Graceful wader restart (what USR1 does)"),
    Route("GET", "/metrics", "Prometheus text format"),
    Route("GET", "/health", "Liveness: 200 while the reactor runs and the journal accepts writes"),
    Route("GET", "/ready", "Readiness: 200, or 503 with the reasons (Redis, sink stuck or failing, wader fatal)"),
    Route("GET", "/openapi.json", "This API as an OpenAPI 3 document"),
)


def listing() -> list[str]:
    """``GET /`` as the original printed it: ``"METHOD /path"`` lines, sorted."""
    return sorted(f"{r.method} {r.path}" for r in ROUTES)

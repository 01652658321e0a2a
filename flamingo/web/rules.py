"""``/streams/filter/rules.json``: the X filter rules Flamingo holds (source: x).

GET lists them with their sync state; POST ``value=...&tag=...`` adds one
(201, or 200 and the rule unchanged for a value already there; 422 for what
X would refuse: empty, over the tier's length or count); DELETE ``?value=``
or ``?tag=`` removes and answers the rules left. X itself is changed by the
reconciler, without reconnecting the stream.
"""

from __future__ import annotations

from flamingo._types import JsonObject
from flamingo.sources.xrules.service import RulesService
from flamingo.web import _params
from flamingo.web._params import RequestParams

__all__ = ["handle"]


async def handle(rules: RulesService, method: str, given: RequestParams) -> tuple[int, JsonObject | list[JsonObject]]:
    """-> (status, JSON body) for one request."""
    if method == "GET":
        _params.check_known(given, ())
        return 200, [r.to_dict() for r in rules.rules()]
    _params.check_known(given, ("value", "tag"))
    value, tag = given.one("value"), given.one("tag")
    if method == "POST":
        rule, created = await rules.add("" if value is None else value, tag)
        return (201 if created else 200), rule.to_dict()
    left = await rules.remove(value, tag)
    return 200, [r.to_dict() for r in left]

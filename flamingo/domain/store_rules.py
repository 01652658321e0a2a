"""The store's rules, without I/O: what a param value, a stream name and a change notice may be,
and when a subscription may use a queue key.

Kept apart from store.py so they can be read (and tested) without Redis.
"""

from __future__ import annotations

import re

from flamingo.domain import catalog, predicates
from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError
from flamingo.sources import jetstream_events

__all__ = ["PARAM_RE", "STREAM_RE", "Target", "change_targets", "param_values", "validate_params",
           "boxes", "appends_only", "foreign_queue"]

PARAM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")  # Jetstream's are camelCase
STREAM_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # Mastodon's have colons (hashtag:local)

#: What a change notice asks to read again: ("params", stream, param or None)
#: or ("subscription", name, None).
Target = tuple[str, str, "str | None"]


def change_targets(message: str) -> list[Target] | None:
    """What a message on ``<ns>:changes`` names; None (read everything) for any other message.

    ``params:<stream>:<param>`` and ``subscriptions:<name>`` are what this
    version publishes; ``params:<stream>`` is an older daemon's (and the
    re-seed's) notice for a whole stream.
    """
    kind, _, rest = message.partition(":")
    if kind == "subscriptions" and rest:
        return [("subscription", rest, None)]
    if kind == "params":
        # a whole stream's notice names a stream; else the param is after the last colon
        stream, param = (rest, "") if rest in catalog.all_streams() else rest.rpartition(":")[::2]
        if STREAM_RE.fullmatch(stream) and (not param or PARAM_RE.fullmatch(param)):
            return [("params", stream, param or None)]
    return None


def param_values(param: str, values: object) -> list[str]:
    """A param's values as given (list or comma string) -> sorted, unique strings."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise ValidationError(param, f"expected a list of values, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValidationError(param, f"values must be strings, got {v!r}")
        out.append(str(v).strip())
    if param == "locations":
        out = boxes(out)
    return sorted(set(out))


def appends_only(sub: Subscription) -> bool:
    """A Resque subscription without max_length may feed an existing worker queue."""
    return sub.format == "resque" and sub.max_length is None


def foreign_queue(sub: Subscription, queue: str, kind: str) -> ValidationError:
    """The refusal of a queue key Flamingo did not create (REST: 422)."""
    if sub.format == "resque" and kind == "list":
        return ValidationError("max_length", f"{queue} is an existing Resque queue that Flamingo did not "
                               "create: max_length would trim other producers' jobs (drop max_length, "
                               "or choose another name)")
    return ValidationError("name", f"{queue} already exists ({kind}) and was not created by Flamingo: "
                           "choose another subscription name")


def boxes(values: list[str]) -> list[str]:
    """Location numbers grouped four by four ("w,s,e,n"): params are Redis sets, and
    a set of loose numbers would lose each box's order."""
    numbers = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if len(numbers) % 4:
        return values  # left as given: validation names the mistake
    return [",".join(numbers[i : i + 4]) for i in range(0, len(numbers), 4)]


def validate_params(stream: str, params: dict[str, list[str]], source: str = "twitter") -> None:
    """Refuse what the source's API would refuse (v1.1: predicates.py; others: their param keys)."""
    if not STREAM_RE.fullmatch(stream):
        raise ValidationError("stream", f"not a stream name: {stream!r}")
    for param, values in params.items():
        if not isinstance(param, str) or not PARAM_RE.fullmatch(param):
            raise ValidationError("param", f"not a parameter name: {param!r}")
        for v in values:
            if not isinstance(v, str) or not v.strip():
                raise ValidationError(param, f"values must be non-empty strings, got {v!r}")
    if source != "twitter":
        unknown = catalog.unknown_params(source, params)
        if unknown:
            allowed = ", ".join(catalog.spec_for(source).params) or "none: rules instead"
            raise ValidationError(unknown[0], f"unknown parameter {unknown[0]!r} for source {source} "
                                  f"(its params: {allowed})")
        if source == "jetstream":
            jetstream_events.check_params(params)
        if source == "mastodon":
            from flamingo.sources.mastodon_api import param_problem

            problem = param_problem(params)
            if problem is not None:
                raise ValidationError(*problem)
        return
    problems = predicates.validate_params(stream, {k: list(v) for k, v in params.items() if v}, allow_count=True)
    # A filter stream without predicates is a valid state to store: the wader
    # waits for params (it is how a fresh daemon starts).
    problems = [p for p in problems if p.limit != "at least one predicate"]
    if problems:
        p = problems[0]
        if isinstance(p, ValidationError):
            raise p
        raise ValidationError(getattr(p, "field", "params"), getattr(p, "message", str(p)),
                              getattr(p, "limit", None))

"""A subscription: one Redis list (or stream) fed with the events a consumer asked for.

Pure data: validated once in ``Subscription.create`` (errors name the field,
REST turns them into 422), encoded to and from the Redis hash
``<ns>:subscription:<name>`` by ``to_hash`` / ``from_hash``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs
import orjson

from flamingo._types import JsonObject
from flamingo.errors import ValidationError

__all__ = ["Subscription", "FORMATS", "KNOWN_TYPES", "NAME_RE"]

FORMATS = ("raw", "envelope", "resque", "stream")

#: Types message_type() produces for v1.1; any other identifier is allowed too
#: (a single-key control message is typed by its key).
KNOWN_TYPES = ("tweet", "delete", "scrub_geo", "limit", "status_withheld", "user_withheld",
               "disconnect", "warning", "invalid")

NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: dots and dashes: Bluesky's types are collection NSIDs (app.bsky.feed.post)
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,316}")
MAX_TERMS = 400
MAX_TERM_BYTES = 60
MAX_TAG_CHARS = 256


def _tuple_of_str(field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ValidationError(field, f"expected a list of strings, got {type(value).__name__}")
    out = []
    for v in value:
        if not isinstance(v, str):
            raise ValidationError(field, f"expected strings, got {type(v).__name__} {v!r}")
        out.append(v.strip())
    return tuple(out)


@attrs.frozen
class Subscription:
    """One queue's options. ``types=None`` means every type; ``filter=()`` means no term filter."""

    name: str
    format: str = "raw"
    types: tuple[str, ...] | None = None
    filter: tuple[str, ...] = ()
    max_length: int | None = None
    groups: tuple[str, ...] = ()  # format stream: consumer groups made with the stream
    rules: tuple[str, ...] = ()  # X rule tags: only posts whose matching_rules has one

    @classmethod
    def create(cls, name: object, **options: object) -> Subscription:
        """Validate and build; raises ValidationError naming the field."""
        unknown = set(options) - {"format", "types", "filter", "max_length", "groups", "rules"}
        if unknown:
            field = sorted(unknown)[0]
            raise ValidationError(field, "unknown option (allowed: format, types, filter, max_length, groups, rules)")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ValidationError("name", f"must match [A-Za-z0-9_.:-]{{1,64}}, got {name!r}",
                                  limit="name: [A-Za-z0-9_.:-]{1,64}")

        fmt = options.get("format")
        fmt = "raw" if fmt is None else fmt
        if fmt not in FORMATS:
            raise ValidationError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}",
                                  limit="format: " + "|".join(FORMATS))

        types = options.get("types")
        if types is not None:
            types_t = _tuple_of_str("types", types)
            if not types_t:
                types = None  # an empty list means "all", like no option at all
            else:
                for t in types_t:
                    if not _TYPE_RE.fullmatch(t):
                        raise ValidationError("types", f"not an event type: {t!r}")
                types = tuple(sorted(set(types_t)))

        terms = _tuple_of_str("filter", options.get("filter") or ())
        if len(terms) > MAX_TERMS:
            raise ValidationError("filter", f"at most {MAX_TERMS} terms, got {len(terms)}",
                                  limit=f"filter: at most {MAX_TERMS} terms")
        for t in terms:
            if not t or len(t.encode()) > MAX_TERM_BYTES:
                raise ValidationError("filter", f"each term must be 1..{MAX_TERM_BYTES} bytes, got {t!r}",
                                      limit=f"filter: terms of 1..{MAX_TERM_BYTES} bytes")
        terms = tuple(dict.fromkeys(terms))  # unique, order kept

        max_length = options.get("max_length")
        if max_length is not None:
            if isinstance(max_length, str) and max_length.strip().isdigit():
                max_length = int(max_length)
            if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
                raise ValidationError("max_length", f"must be an integer >= 1, got {max_length!r}")
        groups = _groups(options.get("groups"), fmt)
        tags = _tuple_of_str("rules", options.get("rules") or ())
        if len(tags) > MAX_TERMS or any(not t or len(t) > MAX_TAG_CHARS for t in tags):
            raise ValidationError("rules", f"at most {MAX_TERMS} rule tags of 1..{MAX_TAG_CHARS} characters",
                                  limit=f"rules: tags of 1..{MAX_TAG_CHARS} characters")
        return cls(name=name, format=fmt, types=types, filter=terms, max_length=max_length, groups=groups,
                   rules=tuple(dict.fromkeys(tags)))

    def queue_key(self, namespace: str) -> str:
        """The Redis list (or stream) this subscription's events go to."""
        if self.format == "resque":
            return f"resque:queue:{self.name}"
        if self.format == "stream":
            return f"{namespace}:stream:{self.name}"
        return f"{namespace}:queue:{self.name}"

    def wants_type(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types

    def to_dict(self) -> JsonObject:
        """JSON-ready (REST, console, meta); ``groups`` for streams, ``rules`` only when set (X)."""
        doc: JsonObject = {"name": self.name, "format": self.format,
                           "types": list(self.types) if self.types is not None else None,
                           "filter": list(self.filter), "max_length": self.max_length}
        if self.format == "stream":
            doc["groups"] = list(self.groups)
        if self.rules:
            doc["rules"] = list(self.rules)
        return doc

    def to_hash(self) -> dict[str, str]:
        """The fields of ``<ns>:subscription:<name>`` (lists as JSON, absent = empty string)."""
        return {"format": self.format,
                "types": orjson.dumps(list(self.types)).decode() if self.types is not None else "",
                "filter": orjson.dumps(list(self.filter)).decode() if self.filter else "",
                "max_length": str(self.max_length) if self.max_length is not None else "",
                "groups": orjson.dumps(list(self.groups)).decode() if self.groups else "",
                "rules": orjson.dumps(list(self.rules)).decode() if self.rules else ""}

    @classmethod
    def from_hash(cls, name: str, fields: Mapping[str, object] | Mapping[bytes, object]) -> Subscription:
        """Decode a hash written by ``to_hash`` (or by hand: comma lists are accepted).

        Keys are bytes from Redis, str from the store's copy (a str key wins).
        """
        named: dict[str, object] = {}
        for key, value in fields.items():
            if isinstance(key, str):
                named[key] = value
            else:
                named.setdefault(key.decode("utf-8", "replace"), value)

        def get(k: str) -> str:
            v = named.get(k, "")
            return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))

        def lst(k: str) -> Iterable[str] | None:
            s = get(k).strip()
            if not s:
                return None
            if s.startswith("["):
                try:
                    values: Iterable[str] | None = orjson.loads(s)
                    return values
                except orjson.JSONDecodeError:
                    raise ValidationError(k, f"invalid JSON list {s!r}") from None
            return s
        return cls.create(name, format=get("format") or None, types=lst("types"),
                          filter=lst("filter"), max_length=get("max_length").strip() or None,
                          groups=lst("groups"), rules=lst("rules"))


def _groups(value: object, fmt: str) -> tuple[str, ...]:
    """``groups``: consumer group names, for ``format: stream`` only."""
    groups = tuple(dict.fromkeys(_tuple_of_str("groups", value or ())))
    if groups and fmt != "stream":
        raise ValidationError("groups", f"consumer groups need format: stream, not {fmt}")
    for g in groups:
        if not NAME_RE.fullmatch(g):
            raise ValidationError("groups", f"each group must match [A-Za-z0-9_.:-]{{1,64}}, got {g!r}")
    if len(groups) > 32:
        raise ValidationError("groups", f"at most 32 groups, got {len(groups)}", limit="groups: at most 32")
    return groups

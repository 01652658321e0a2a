"""Streaming API v1.1 parameters: what the service accepted (matching is in matching.py).

Pure functions and values only. The same rules serve three callers: the
emulator (answers 406/413/416), the REST API (maps a ``Problem`` to 422) and
the store (refuses to save what the service would refuse).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

__all__ = [
    "Problem",
    "validate_params",
    "split_values",
    "parse_boxes",
    "STREAMS",
    "MAX_TRACK",
    "MAX_FOLLOW",
    "MAX_BOXES",
    "MAX_PHRASE_BYTES",
    "FOLLOW_ID",
    "FILTER_LEVELS",
]

STREAMS = ("filter", "sample", "firehose")
MAX_TRACK = 400
MAX_FOLLOW = 5000
MAX_BOXES = 25
MAX_PHRASE_BYTES = 60
MAX_COUNT = 150_000
FILTER_LEVELS = ("none", "low", "medium")
PREDICATE_PARAMS = ("track", "follow", "locations")
KNOWN_PARAMS = frozenset(
    PREDICATE_PARAMS
    + ("language", "filter_level", "stall_warnings", "delimited", "count")
)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
FOLLOW_ID = re.compile(r"^[0-9]{1,19}$")


@attrs.frozen
class Problem:
    """One rule a parameter breaks; ``status`` is what the service answered."""

    field: str
    message: str
    limit: str | None = None
    status: int = 406


def split_values(values: Iterable[str]) -> list[str]:
    """Comma-separated values flattened, stripped, empties dropped (order kept)."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                out.append(part)
    return out


def validate_params(
    stream: str, params: Mapping[str, Sequence[str]], *, allow_count: bool = False
) -> list[Problem]:
    """Every problem the service would report for these parameters (empty = OK).

    ``params`` maps a parameter to its values; each value may itself be a
    comma-separated list, as it is on the wire. ``allow_count`` is the role
    that may backfill with ``count`` (otherwise ``count`` gets 416).
    """
    problems: list[Problem] = []
    if stream not in STREAMS:
        return [Problem("stream", f"unknown stream {stream!r}", "one of " + "|".join(STREAMS), 404)]
    for name in params:
        if name not in KNOWN_PARAMS:
            problems.append(Problem(name, f"unknown parameter {name!r}"))
    track = split_values(params.get("track", ()))
    follow = split_values(params.get("follow", ()))
    locations = split_values(params.get("locations", ()))
    if stream == "filter":
        if not (track or follow or locations):
            problems.append(
                Problem(
                    "track",
                    "filter needs at least one of track, follow or locations",
                    "at least one predicate",
                )
            )
    else:
        for name in PREDICATE_PARAMS:
            if split_values(params.get(name, ())):
                problems.append(
                    Problem(name, f"{name} is only accepted by the filter stream", "filter only")
                )
    problems.extend(_check_track(params.get("track", ()), track))
    problems.extend(_check_follow(follow))
    problems.extend(_check_locations(locations))
    problems.extend(_check_language(params.get("language", ())))
    problems.extend(_check_choice(params, "filter_level", FILTER_LEVELS))
    problems.extend(_check_choice(params, "stall_warnings", ("true", "false")))
    problems.extend(_check_choice(params, "delimited", ("length",)))
    problems.extend(_check_count(params.get("count", ()), allow_count))
    return problems


def _check_track(raw: Sequence[str], phrases: list[str]) -> list[Problem]:
    problems = []
    if raw and not phrases:
        problems.append(Problem("track", "no phrase given", "1..60 bytes per phrase"))
    for phrase in phrases:
        size = len(phrase.encode("utf-8"))
        if size > MAX_PHRASE_BYTES:
            problems.append(
                Problem("track", f"phrase {phrase[:20]!r}... is {size} bytes", "1..60 bytes per phrase")
            )
    if len(phrases) > MAX_TRACK:
        problems.append(
            Problem("track", f"{len(phrases)} phrases", f"at most {MAX_TRACK} phrases", 413)
        )
    return problems


def _check_follow(ids: list[str]) -> list[Problem]:
    problems = []
    for value in ids:
        if not FOLLOW_ID.match(value) or int(value) >= 2**63:
            problems.append(Problem("follow", f"{value[:30]!r} is not a user id", "numeric user ids"))
            break
    if len(ids) > MAX_FOLLOW:
        problems.append(Problem("follow", f"{len(ids)} ids", f"at most {MAX_FOLLOW} ids", 413))
    return problems


def parse_boxes(values: list[str]) -> list[tuple[float, float, float, float]]:
    """Groups of four floats; ValueError when not numeric or not a multiple of 4."""
    numbers = [float(v) for v in values]
    if len(numbers) % 4:
        raise ValueError("locations must be groups of 4 numbers")
    return [(numbers[i], numbers[i + 1], numbers[i + 2], numbers[i + 3]) for i in range(0, len(numbers), 4)]


def _check_locations(values: list[str]) -> list[Problem]:
    if not values:
        return []
    rule = "SW lon,lat,NE lon,lat per box; sides 0.1..360 degrees"
    try:
        boxes = parse_boxes(values)
    except ValueError as error:
        return [Problem("locations", str(error) if "groups" in str(error) else "not a number", rule)]
    problems = []
    for i, (w, s, e, n) in enumerate(boxes):
        if not all(math.isfinite(x) for x in (w, s, e, n)):
            problems.append(Problem("locations", f"box {i + 1}: not a finite number", rule))
        elif not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
            problems.append(Problem("locations", f"box {i + 1}: coordinates out of range", rule))
        elif not (w < e and s < n):
            problems.append(Problem("locations", f"box {i + 1}: south-west corner must come first", rule))
        elif not (0.1 <= e - w <= 360 and 0.1 <= n - s <= 360):
            problems.append(Problem("locations", f"box {i + 1}: each side must span 0.1..360 degrees", rule))
        if problems:
            break
    if len(boxes) > MAX_BOXES:
        problems.append(
            Problem("locations", f"{len(boxes)} boxes", f"at most {MAX_BOXES} boxes", 413)
        )
    return problems


def _check_language(raw: Sequence[str]) -> list[Problem]:
    values = split_values(raw)
    if raw and not values:
        return [Problem("language", "no language given", "BCP 47 codes")]
    for value in values:
        if not _LANGUAGE.match(value):
            return [Problem("language", f"{value[:20]!r} is not a BCP 47 code", "BCP 47 codes")]
    return []


def _check_choice(params: Mapping[str, Sequence[str]], name: str, choices: Sequence[str]) -> list[Problem]:
    if name not in params:
        return []
    values = list(params[name])
    if len(values) != 1 or values[0] not in choices:
        return [Problem(name, f"{','.join(values)[:30]!r} is not allowed", "one of " + "|".join(choices))]
    return []


def _check_count(raw: Sequence[str], allow: bool) -> list[Problem]:
    if not raw:
        return []
    if not allow:
        return [Problem("count", "count is not allowed for this role", "backfill roles only", 416)]
    values = list(raw)
    if len(values) != 1 or not re.fullmatch(r"-?[0-9]{1,6}", values[0]) or abs(int(values[0])) > MAX_COUNT:
        return [Problem("count", f"{','.join(values)[:20]!r} is not allowed", f"-{MAX_COUNT}..{MAX_COUNT}")]
    return []

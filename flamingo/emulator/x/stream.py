"""X API v2 streams: the request's parameters, the world's one sequence of posts, one connection's view.

The world is a pure function of a position ``p``: template ``p % n`` of the
corpus with the id prefix of cycle ``p // n``, so ids increase along the
world and a position always renders to the same bytes. With ``rate > 0``
position ``p`` is due ``p / rate`` seconds after the emulator started (on
its clock): overlapping and successive connections see the same post at the
same position, and ``backfill_minutes`` starts a new connection that many
minutes back, re-sending posts an earlier connection already delivered
(the duplicates a client must drop by id). With ``rate = 0`` (as fast as the
client reads) the world's head is the furthest position any connection has
read, and a backfill minute counts as ``RATE0_BACKFILL_PER_MINUTE`` positions.

A partitioned stream (``sample10`` 1–2, ``firehose`` 1–20, compliance 1–4)
reads the positions ``p`` with ``p % partitions == partition - 1``. The
filter stream reads the positions whose template matches at least one
effective rule, each once, with every matching rule in ``matching_rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

from flamingo.emulator.corpus import ID_SENTINEL, id_prefix
from flamingo.emulator.faults import Fault
from flamingo.emulator.session import StreamSession
from flamingo.emulator.x.corpus import (
    EXPANSIONS,
    MEDIA_FIELDS,
    PLACE_FIELDS,
    POLL_FIELDS,
    TWEET_FIELDS,
    USER_FIELDS,
    FieldSet,
)
from flamingo.emulator.x.problems import error_line, operational_disconnect, too_many_connections

__all__ = ["StreamSpec", "STREAMS", "StreamRequest", "parse_stream_request", "XWorld", "XStreamSource",
           "XStreamSession", "RATE0_BACKFILL_PER_MINUTE"]

RATE0_BACKFILL_PER_MINUTE = 600


@attrs.frozen
class StreamSpec:
    name: str  # Flamingo's stream name (catalog)
    content: str  # posts | tweet_events | user_events
    partitions: int | None  # partition required, 1..partitions


STREAMS: dict[str, StreamSpec] = {
    "/2/tweets/search/stream": StreamSpec("filter", "posts", None),
    "/2/tweets/sample/stream": StreamSpec("sample", "posts", None),
    "/2/tweets/sample10/stream": StreamSpec("sample10", "posts", 2),
    "/2/tweets/firehose/stream": StreamSpec("firehose", "posts", 20),
    "/2/tweets/compliance/stream": StreamSpec("tweets-compliance", "tweet_events", 4),
    "/2/users/compliance/stream": StreamSpec("users-compliance", "user_events", 4),
}

_FIELD_PARAMS: dict[str, tuple[str, ...]] = {
    "tweet.fields": TWEET_FIELDS,
    "expansions": EXPANSIONS,
    "user.fields": USER_FIELDS,
    "media.fields": MEDIA_FIELDS,
    "poll.fields": POLL_FIELDS,
    "place.fields": PLACE_FIELDS,
}
_TIME_PARAMS = ("start_time", "end_time")


@attrs.frozen
class StreamRequest:
    spec: StreamSpec
    fields: FieldSet
    partition: int | None
    backfill_minutes: int


ParamError = tuple[str, str | None, str]


def _int_param(name: str, raw: str, low: int, high: int, errors: list[ParamError]) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        errors.append((name, raw, f"The `{name}` query parameter value [{raw}] is not a number"))
        return None
    if not low <= value <= high:
        errors.append((name, raw, f"The `{name}` query parameter value [{raw}] is not between {low} and {high}"))
        return None
    return value


def parse_stream_request(spec: StreamSpec, pairs: Sequence[tuple[str, str]]) -> StreamRequest | list[ParamError]:
    """The connection's request, or X's per-parameter errors (answered 400)."""
    params: dict[str, str] = {}
    for key, value in pairs:
        params[key] = f"{params[key]},{value}" if key in params else value
    allowed = ["backfill_minutes", *_TIME_PARAMS]
    if spec.content == "posts":
        allowed += list(_FIELD_PARAMS)
    if spec.partitions:
        allowed.append("partition")
    errors: list[ParamError] = []
    for key in params:
        if key not in allowed:
            errors.append((key, params[key],
                           f"The query parameter [{key}] is not one of [{','.join(sorted(allowed))}]"))
    chosen: dict[str, frozenset[str]] = {}
    for name, values in _FIELD_PARAMS.items():
        if name not in params:
            continue
        items = [v.strip() for v in params[name].split(",")]
        for item in items:
            if item not in values:
                errors.append((name, item, f"The `{name}` query parameter value [{item}] is not one of "
                                           f"[{','.join(values)}]"))
        chosen[name] = frozenset(items)
    partition = None
    if spec.partitions:
        raw = params.get("partition", "")
        if not raw:
            errors.append(("partition", None, "The `partition` query parameter can not be empty"))
        else:
            partition = _int_param("partition", raw, 1, spec.partitions, errors)
    backfill = 0
    if "backfill_minutes" in params:
        backfill = _int_param("backfill_minutes", params["backfill_minutes"], 0, 5, errors) or 0
    if errors:
        return errors
    fields = FieldSet(chosen.get("tweet.fields", frozenset()), chosen.get("expansions", frozenset()),
                      chosen.get("user.fields", frozenset()), chosen.get("media.fields", frozenset()),
                      chosen.get("poll.fields", frozenset()), chosen.get("place.fields", frozenset()))
    return StreamRequest(spec, fields, partition, backfill)


class XWorld:
    """Where the world's head is: due positions (``rate > 0``) or the furthest read (``rate = 0``)."""

    def __init__(self, rate: float, clock: IReactorTime):
        self.rate = rate
        self.clock = clock
        self.started = clock.seconds()
        self.served = 0  # rate 0: the furthest position any connection has read

    def head(self) -> int:
        if self.rate > 0:
            return int((self.clock.seconds() - self.started) * self.rate + 1e-6)
        return self.served

    def start(self, backfill_minutes: int) -> int:
        """Where a new connection starts reading."""
        per_minute = self.rate * 60 if self.rate > 0 else RATE0_BACKFILL_PER_MINUTE
        return max(0, self.head() - int(backfill_minutes * per_minute))


class XStreamSource:
    """One connection's reader of the world (a ``Source`` for ``StreamSession``).

    ``lines[i]`` is template ``i`` rendered for this connection without its
    closing brace; ``match(i)`` gives its ``matching_rules`` tail (filter
    stream) or None to skip it; without ``match`` every position is sent.
    """

    def __init__(self, world: XWorld, lines: Sequence[bytes], *, start: int,
                 match: Callable[[int], bytes | None] | None = None,
                 partition: tuple[int, int] | None = None):
        self.world = world
        self.lines = lines
        self.match = match
        self.partition = partition
        self.cursor = start

    def lag(self) -> int:
        """Positions due that this connection has not read yet."""
        return max(0, self.world.head() - self.cursor)

    def skip(self) -> None:
        """A stalled connection loses what it missed."""
        self.cursor = max(self.cursor, self.world.head())

    def take(self, max_messages: int, max_bytes: int) -> tuple[bytes, int]:
        world, lines, match = self.world, self.lines, self.match
        n = len(lines)
        parts, part = self.partition or (1, 1)
        pos = self.cursor
        # rate 0: at most one whole cycle of the world per call (nothing matches if none of it does)
        stop = world.head() if world.rate > 0 else pos + n * parts
        out: list[bytes] = []
        size = 0
        prefix_cycle, prefix = -1, b""
        while pos < stop and len(out) < max_messages and size < max_bytes:
            if parts > 1:
                gap = (part - 1 - pos) % parts
                if gap:
                    pos += gap
                    continue
            index = pos % n
            tail = match(index) if match is not None else b"}"
            if tail is not None:
                cycle = pos // n + 1
                if cycle != prefix_cycle:
                    prefix_cycle, prefix = cycle, id_prefix(cycle)
                line = (lines[index] + tail).replace(ID_SENTINEL, prefix)
                out.append(line)
                size += len(line)
            pos += 1
        self.cursor = pos
        if world.rate <= 0:
            world.served = max(world.served, pos)
        if not out:
            return b"", 0
        return b"\r\n".join(out) + b"\r\n", len(out)


class XStreamSession(StreamSession):
    """A v1.1 ``StreamSession`` (framing, keep-alives, pacing, faults) speaking X's in-stream errors.

    A disconnect (scripted, shutdown, a client too slow) is X's
    ``operational-disconnect`` error line, then the connection closes; the
    ``connection_limit`` fault is the ``TooManyConnections`` error line.
    """

    def disconnect(self, code: int, reason: str | None = None) -> None:
        if self.closed:
            return
        self.send_message(error_line(operational_disconnect()))
        self.close(f"operational-disconnect ({reason or code})")

    def _fire(self, fault: Fault) -> None:
        if fault.kind == "connection_limit":
            self.send_message(error_line(too_many_connections()))
            self.close("fault connection_limit")
        elif fault.kind == "malformed_json":
            self._wire(b'{"data":{"id":"1","text":"unterminated\r\n')
        else:
            super()._fire(fault)

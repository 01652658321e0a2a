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

import math
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

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
from flamingo.emulator.x.limits import UsageCap
from flamingo.emulator.x.problems import error_line, operational_disconnect, too_many_connections, usage_capped

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
    start_time: float | None = None  # recovery (unix seconds): re-stream from here ...
    end_time: float | None = None  # ... to here (default: now), then disconnect


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


def _time_param(name: str, raw: str, errors: list[ParamError]) -> float | None:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        errors.append((name, raw, f"The `{name}` query parameter value [{raw}] is not a valid time "
                                  "(YYYY-MM-DDTHH:mm:ssZ)"))
        return None


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
    times = {name: _time_param(name, params[name], errors) for name in _TIME_PARAMS if name in params}
    if times and spec.name == "sample":
        errors.append(("start_time", params.get("start_time"), "The sample stream does not support recovery "
                                                               "(start_time/end_time)"))
    elif "end_time" in times and "start_time" not in times:
        errors.append(("start_time", None, "The `start_time` query parameter can not be empty when `end_time` "
                                           "is given"))
    else:
        begin, until = times.get("start_time"), times.get("end_time")
        if begin is not None and until is not None and until <= begin:
            errors.append(("end_time", params["end_time"], "The `end_time` must be after `start_time`"))
    if errors:
        return errors
    fields = FieldSet(chosen.get("tweet.fields", frozenset()), chosen.get("expansions", frozenset()),
                      chosen.get("user.fields", frozenset()), chosen.get("media.fields", frozenset()),
                      chosen.get("poll.fields", frozenset()), chosen.get("place.fields", frozenset()))
    return StreamRequest(spec, fields, partition, backfill, times.get("start_time"), times.get("end_time"))


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

    def position_at(self, when: float) -> int:
        """The first position due at or after unix time ``when`` (``rate > 0``), within the world."""
        return max(0, min(self.head(), math.ceil((when - self.started) * self.rate - 1e-6)))

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
                 partition: tuple[int, int] | None = None, end: int | None = None,
                 cap: UsageCap | None = None):
        self.world = world
        self.cap = cap  # the app's post allowance: at 0 the stream ends (``capped``)
        self.capped = False
        self.end = end  # recovery: stop before this position, then the session closes
        self.lines = lines
        self.match = match
        self.partition = partition
        self.cursor = start
        self.recent: deque[bytes] | None = None  # the last lines sent, kept for the repeat fault

    def remember(self, n: int) -> None:
        """Keep the last ``n`` lines sent (for ``again``)."""
        keep = n if self.recent is None else max(n, self.recent.maxlen or 0)
        self.recent = deque(self.recent or (), maxlen=keep)

    def again(self, n: int) -> list[bytes]:
        """The last ``n`` lines sent, oldest first (X sometimes sends posts twice)."""
        if not self.recent or n <= 0:
            return []
        return list(self.recent)[-n:]

    def lag(self) -> int:
        """Positions due that this connection has not read yet."""
        head = self.world.head() if self.end is None else min(self.end, self.world.head())
        return max(0, head - self.cursor)

    @property
    def done(self) -> bool:
        """A recovery stream has sent its whole window."""
        return self.end is not None and self.cursor >= self.end

    def skip(self) -> None:
        """A stalled connection loses what it missed."""
        self.cursor = max(self.cursor, self.world.head())

    def take(self, max_messages: int, max_bytes: int) -> tuple[bytes, int]:
        if self.cap is not None:
            max_messages = min(max_messages, self.cap.remaining())
            if max_messages <= 0:
                self.capped = True
                return b"", 0
        world, lines, match = self.world, self.lines, self.match
        n = len(lines)
        parts, part = self.partition or (1, 1)
        pos = self.cursor
        # rate 0: at most one whole cycle of the world per call (nothing matches if none of it does)
        stop = world.head() if world.rate > 0 else pos + n * parts
        if self.end is not None:
            stop = min(stop, self.end)
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
        if self.cap is not None:
            self.cap.spend(len(out))
        if self.recent is not None:
            self.recent.extend(out)
        return b"\r\n".join(out) + b"\r\n", len(out)


class XStreamSession(StreamSession):
    """A v1.1 ``StreamSession`` (framing, keep-alives, pacing, faults) speaking X's in-stream errors.

    A disconnect (scripted, shutdown, a client too slow) is X's
    ``operational-disconnect`` error line, then the connection closes; the
    ``connection_limit`` fault is the ``TooManyConnections`` error line.
    A recovery stream closes once it has sent its window; the ``repeat``
    fault re-sends the last posts (duplicates, out of order, as X may).
    """

    def start(self) -> None:
        repeats = [f.count for f in self.faults if f.kind == "repeat"]
        if repeats and isinstance(self.source, XStreamSource):
            self.source.remember(max(repeats))
        super().start()

    def _flush_backlog(self) -> None:
        super()._flush_backlog()
        self._check_end()

    def _pump(self) -> None:
        super()._pump()
        self._check_end()

    def _check_end(self) -> None:
        """A recovery stream (``start_time``) disconnects once its window is sent, as X's does;
        any stream ends with a ``UsageCapExceeded`` line once the app's post allowance is used."""
        source = self.source
        if not isinstance(source, XStreamSource) or self.closed:
            return
        if source.done:
            self.close("recovery complete")
        elif source.capped or (source.cap is not None and not source.cap.remaining()):
            self.send_message(error_line(usage_capped()))
            self.close("usage cap exceeded")

    def disconnect(self, code: int, reason: str | None = None) -> None:
        if self.closed:
            return
        self.send_message(error_line(operational_disconnect()))
        self.close(f"operational-disconnect ({reason or code})")

    def _fire(self, fault: Fault) -> None:
        if fault.kind == "connection_limit":
            self.send_message(error_line(too_many_connections()))
            self.close("fault connection_limit")
        elif fault.kind == "repeat" and isinstance(self.source, XStreamSource):
            lines = self.source.again(fault.count)
            if lines:
                self._send_messages(b"\r\n".join(lines) + b"\r\n", len(lines))
        elif fault.kind == "malformed_json":
            self._wire(b'{"data":{"id":"1","text":"unterminated\r\n')
        else:
            super()._fire(fault)

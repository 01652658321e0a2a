"""Sans-IO framing of a streaming-API response body: bytes in, messages out.

The v1.1 streams separate messages with ``\\r\\n``; a message may contain
``\\n`` but never ``\\r``. Blank lines are keep-alives. With
``delimited=length`` each message is preceded by a line holding its byte
count (which includes the message's own trailing ``\\r\\n``); keep-alive
newlines may come before a length.

Because a message never contains ``\\r\\n``, the parser splits on it for
both framings and checks length prefixes rather than trusting them: a
garbled or absurd prefix is counted and the stream resynchronises at the
next ``\\r\\n`` by construction. Nothing in here raises on bad input.

Speed: each chunk is scanned in place (no joined copy of it); a pending
partial message is joined once with the chunk's first piece (chunks without
``\\r\\n`` are only queued, never re-scanned). With ``delimited=length`` a
message is sliced out by its announced length when that slice ends in CRLF and
holds no CR (a one-byte scan): exactly what splitting on CRLF would give, found
without the slower two-byte search.

Hostile bodies: decoding is done in slices (``StreamDecoder.step`` decodes at
most ``slice_bytes`` of body per call, gzip or not), so a small gzip bomb
costs many small steps the caller can spread over reactor turns, never one
long one. Runs of keep-alives are counted in bulk (a list count, a regex
run), not one Python iteration each. A gzip body is one gzip member: a second
member or trailing bytes after its end make the stream ``broken``.
"""

from __future__ import annotations

import re
import zlib
from collections import deque
from typing import NamedTuple

__all__ = ["FrameParser", "GzipDecoder", "StreamDecoder", "ParseError", "SAMPLE_BYTES",
           "SLICE_BYTES", "MAX_ERROR_SAMPLES", "LINE_COST"]

SAMPLE_BYTES = 200
#: error samples kept between two ``take_errors()`` calls
MAX_ERROR_SAMPLES = 16
#: body bytes (after gzip) decoded and framed per ``StreamDecoder.step``
SLICE_BYTES = 16 * 1024
#: what one line handled in Python costs, in bytes of body: so a step's cost
#: (``last_step_cost``) follows the work of a slice of tiny garbage lines too
LINE_COST = 128
_CRLF = b"\r\n"
_CRLF_RUN = re.compile(rb"(?:\r\n)+")
_MAX_LENGTH_DIGITS = 9  # a prefix longer than this is garbage whatever the limit
_SLICE_MIN = 512  # announced lengths from which slicing by length beats splitting the chunk


class ParseError(NamedTuple):
    """``kind``: too_long | bad_length | length_mismatch | non_json | gzip."""

    kind: str
    sample: bytes


class FrameParser:
    """``feed(bytes) -> list[bytes]``: complete messages, without their CRLF.

    Counters: ``messages``, ``keepalives``, ``errors_total``; ``take_errors()``
    returns (and forgets) the errors seen since the last call, at most
    ``MAX_ERROR_SAMPLES`` of them (a line of garbage repeated a million times
    is a million errors, not a million samples); ``take_error_counts()`` has
    the count of every kind.
    """

    def __init__(self, max_message_bytes: int = 1024 * 1024) -> None:
        self.max_message_bytes = max_message_bytes
        self.messages = 0
        self.keepalives = 0
        self.bulk_keepalives = 0  # the part of ``keepalives`` counted a run at a time
        self.lines = 0  # lines handled one by one (bulk-counted keep-alives aside): a step's work
        self.errors_total = 0
        self._errors: list[ParseError] = []
        self._error_counts: dict[str, int] = {}
        self._pending: list[bytes] = []  # chunks of an incomplete message, no CRLF among them
        self._pending_len = 0
        self._discarding = False  # skipping an oversized message up to the next CRLF
        self._last_cr = False  # the previous chunk ended with b"\r"
        self._expect: int | None = None  # length announced by the last prefix
        self._slicing = False  # recent messages were length-prefixed and large: slice, not split

    # -- errors ---------------------------------------------------------------

    def _error(self, kind: str, sample: bytes) -> None:
        self.errors_total += 1
        counts = self._error_counts
        counts[kind] = counts.get(kind, 0) + 1
        if len(self._errors) < MAX_ERROR_SAMPLES:
            self._errors.append(ParseError(kind, bytes(sample[:SAMPLE_BYTES])))

    def take_errors(self) -> list[ParseError]:
        """Samples of the errors since the last call (at most ``MAX_ERROR_SAMPLES``)."""
        errors, self._errors = self._errors, []
        return errors

    def take_error_counts(self) -> dict[str, int]:
        """Errors by kind since the last call."""
        counts, self._error_counts = self._error_counts, {}
        return counts

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return self._pending_len

    # -- parsing --------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        if self._discarding:
            data = self._skip_to_crlf(data)
            if not data:
                return []
        out: list[bytes] = []
        pos = 0
        if self._pending:
            # complete the pending message; the rest of the chunk is scanned in place
            if self._last_cr and data[:1] == b"\n":  # the CRLF straddles the chunks
                self._pending[-1] = self._pending[-1][:-1]
                pos = 1
            else:
                i = data.find(_CRLF)
                if i == -1:
                    self._queue(data)
                    return out
                self._pending.append(data[:i])
                pos = i + 2
            line = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
            self.lines += 1
            self._line(line, out)
        append = out.append
        limit = self.max_message_bytes
        expect = self._expect
        prefixed = False
        if not self._slicing:
            # small or undelimited messages: one split in C beats a find per line
            if pos == 0:
                lines = data.split(_CRLF)
            elif pos == 1:
                lines = data[1:].split(_CRLF)
            else:
                lines = data.split(_CRLF)
                del lines[0]  # the end of the pending message, done above
            tail = lines.pop()
            empty = lines.count(b"")
            if empty:  # keep-alives, counted at once (a bomb of them is millions)
                self.keepalives += empty
                self.bulk_keepalives += empty
                lines = list(filter(None, lines))
            self.lines += len(lines)
            for line in lines:
                if expect is None and line[:1] == b"{" and len(line) <= limit:
                    append(line)  # the fast path: a JSON object, no length announced
                    continue
                if line.isdigit() and len(line) <= _MAX_LENGTH_DIGITS and int(line) <= limit + 2:
                    if expect is not None:  # two prefixes in a row
                        self._error("length_mismatch", line)
                    expect = int(line)
                    prefixed = True
                    continue
                self._expect = expect
                self._line(line, out)
                expect = self._expect
            self._expect = expect
            self.messages += len(out)
            self._last_cr = False
            if tail:
                self._queue(tail)
            # length-prefixed messages of some size: slice them from the next chunk on
            self._slicing = prefixed and len(data) >= _SLICE_MIN * len(out)
            return out
        find = data.find
        startswith = data.startswith
        handled = 0
        while True:
            if expect is not None and 2 < expect <= limit + 2:
                # delimited=length: slice the announced message out directly. It is
                # exactly the line splitting on CRLF would give when it ends in CRLF
                # and holds no CR at all (a one-byte memchr, not a CRLF search)
                end = pos + expect - 2
                if startswith(_CRLF, end) and startswith(b"{", pos) and find(b"\r", pos, end) == -1:
                    append(data[pos:end])
                    pos = end + 2
                    expect = None
                    handled += 1
                    continue
            i = find(_CRLF, pos)
            if i == -1:
                break
            if i == pos:  # a run of keep-alives, counted at once
                run = _CRLF_RUN.match(data, pos)  # matches: data[pos:pos + 2] is CRLF
                end = run.end() if run is not None else pos + 2
                self.keepalives += (end - pos) // 2
                self.bulk_keepalives += (end - pos) // 2
                pos = end
                continue
            line = data[pos:i]
            pos = i + 2
            handled += 1
            if expect is None and line[:1] == b"{" and len(line) <= limit:
                append(line)
                continue
            if line.isdigit() and len(line) <= _MAX_LENGTH_DIGITS and int(line) <= limit + 2:
                if expect is not None:
                    self._error("length_mismatch", line)
                expect = int(line)
                continue
            self._expect = expect
            self._line(line, out)
            expect = self._expect
        self._expect = expect
        self.lines += handled
        self.messages += len(out)
        self._last_cr = False
        self._slicing = len(data) >= _SLICE_MIN * len(out)
        if pos < len(data):
            self._queue(data[pos:] if pos else data)
        return out

    def _queue(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_len += len(data)
        self._last_cr = data[-1:] == b"\r"
        if self._pending_len > self.max_message_bytes + 2:
            head = self._pending[0]
            self._error("too_long", head)
            self._pending = []
            self._pending_len = 0
            self._discarding = True
            self._expect = None

    def _skip_to_crlf(self, data: bytes) -> bytes:
        if self._last_cr and data[:1] == b"\n":
            self._discarding = False
            self._last_cr = False
            return data[1:]
        i = data.find(_CRLF)
        if i == -1:
            self._last_cr = data[-1:] == b"\r"
            return b""
        self._discarding = False
        self._last_cr = False
        return data[i + 2:]

    def _line(self, line: bytes, out: list[bytes]) -> None:
        """One line (CRLF removed) by the general rules: keep-alive, length prefix, message."""
        first = line[:1]
        limit = self.max_message_bytes
        if first == b"{" and self._expect is None and len(line) <= limit:
            out.append(line)
            return
        if not line or line.isspace():
            self.keepalives += 1
            return
        if line.isdigit():
            if len(line) > _MAX_LENGTH_DIGITS or int(line) > limit + 2:
                self._error("bad_length", line)
                self._expect = None
            else:
                if self._expect is not None:  # two prefixes in a row
                    self._error("length_mismatch", line)
                self._expect = int(line)
            return
        expect, self._expect = self._expect, None
        if len(line) > limit:
            self._error("too_long", line)
            return
        if first not in (b"{", b"["):
            stripped = line.strip()
            if stripped[:1] not in (b"{", b"["):
                self._error("non_json", line)
                return
            line = stripped
        if expect is not None and expect != len(line) + 2:
            self._error("length_mismatch", line)
        out.append(line)


class GzipDecoder:
    """Incremental decoding of one gzip member (``Content-Encoding: gzip``), in slices.

    ``decode(data, max_out)`` returns at most ``max_out`` bytes; input it could
    not decode yet is held (``pending``) and decoded by the next calls with
    ``data=b""``. Bytes after the member's end (a second member, garbage) set
    ``error``: the streaming API sends one member, so anything else is a body
    we cannot trust (and zlib would otherwise drop it silently).
    """

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._full = False  # the last call filled its slice: zlib may hold more output
        self.error: str | None = None

    @property
    def pending(self) -> bool:
        """Input taken but not decoded yet: call ``decode(b"", n)`` again."""
        return self.error is None and (bool(self._z.unconsumed_tail) or self._full)

    def decode(self, data: bytes, max_out: int) -> bytes:
        """At most ``max_out`` decoded bytes; raises ``zlib.error`` on a corrupt stream."""
        z = self._z
        if self.error is not None:
            return b""
        if z.eof:
            if data:
                self.error = "data after the end of the gzip stream"
            return b""
        if z.unconsumed_tail:
            data = z.unconsumed_tail + data if data else z.unconsumed_tail
        out = z.decompress(data, max_out)
        self._full = len(out) == max_out and not z.eof
        if z.eof and z.unused_data:
            self.error = "data after the end of the gzip stream (a second member or garbage)"
        return out


class StreamDecoder:
    """Content decoding plus framing for one response body, in bounded steps.

    ``push(data)`` queues received bytes (no work); each ``step()`` decodes
    and frames at most ``slice_bytes`` of the body and returns the complete
    messages; ``pending`` says whether more steps are due. The caller decides
    how many steps a reactor turn gets, from ``last_step_cost`` (a slice of
    three-byte garbage lines is more work than a slice of tweets). ``feed(data)`` is push-and-drain, for
    callers that do not need the bound.

    ``broken`` turns true when the body cannot be decoded any further (a
    corrupt gzip stream, bytes after its end): the wader then recycles the
    connection. Messages decoded before the fault are still returned.
    """

    def __init__(self, max_message_bytes: int = 1024 * 1024, gzip: bool = False,
                 slice_bytes: int = SLICE_BYTES) -> None:
        self.parser = FrameParser(max_message_bytes)
        self._gzip = GzipDecoder() if gzip else None
        self.slice_bytes = slice_bytes
        self._input: deque[bytes] = deque()
        self._offset = 0  # bytes of _input[0] already taken
        self.queued = 0  # bytes pushed and not taken yet
        self.last_step_bytes = 0  # decoded bytes the last step handed to the parser
        self.last_step_cost = 0  # its work: bytes, plus LINE_COST per line not bulk-counted
        self.broken = False

    @property
    def gzip(self) -> bool:
        """The body is gzip-compressed."""
        return self._gzip is not None

    def push(self, data: bytes) -> None:
        if data and not self.broken:
            self._input.append(data)
            self.queued += len(data)

    @property
    def pending(self) -> bool:
        if self.broken:
            return False
        return bool(self._input) or (self._gzip is not None and self._gzip.pending)

    def step(self) -> list[bytes]:
        """Decode and frame at most ``slice_bytes`` of the body."""
        if self.broken:
            return []
        gz = self._gzip
        if gz is None:
            data = self._take(self.slice_bytes)
        else:
            try:
                data = gz.decode(b"" if gz.pending else self._take(self.slice_bytes),
                                 self.slice_bytes)
            except zlib.error as e:
                self._break(str(e))
                return []
        self.last_step_bytes = len(data)
        parser = self.parser
        before = parser.lines  # (counted by the parser: a count of CRLFs here cost ~10% of the reactor)
        out = parser.feed(data)
        self.last_step_cost = len(data) + LINE_COST * (parser.lines - before)
        if gz is not None and gz.error is not None:
            self._break(gz.error)
        return out

    def feed(self, data: bytes) -> list[bytes]:
        """Push ``data`` and decode everything queued (unbounded work: tests, tools)."""
        self.push(data)
        out: list[bytes] = []
        while self.pending:
            out.extend(self.step())
        return out

    def _take(self, n: int) -> bytes:
        if not self._input:
            return b""
        head, off = self._input[0], self._offset
        if off == 0 and len(head) <= n:
            self._input.popleft()
            data = head
        else:
            data = head[off:off + n]
            self._offset = off + len(data)
            if self._offset >= len(head):
                self._input.popleft()
                self._offset = 0
        self.queued -= len(data)
        return data

    def _break(self, reason: str) -> None:
        self.broken = True
        self._input.clear()
        self._offset = self.queued = 0
        self.parser._error("gzip", reason.encode())

    def take_errors(self) -> list[ParseError]:
        return self.parser.take_errors()

    def take_error_counts(self) -> dict[str, int]:
        return self.parser.take_error_counts()

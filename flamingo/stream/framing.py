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
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

__all__ = ["FrameParser", "GzipDecoder", "StreamDecoder", "ParseError", "SAMPLE_BYTES"]

SAMPLE_BYTES = 200
_CRLF = b"\r\n"
_MAX_LENGTH_DIGITS = 9  # a prefix longer than this is garbage whatever the limit
_SLICE_MIN = 512  # announced lengths from which slicing by length beats splitting the chunk


class ParseError(NamedTuple):
    """``kind``: too_long | bad_length | length_mismatch | non_json | gzip."""

    kind: str
    sample: bytes


class FrameParser:
    """``feed(bytes) -> list[bytes]``: complete messages, without their CRLF.

    Counters: ``messages``, ``keepalives``, ``errors_total``; ``take_errors()``
    returns (and forgets) the errors seen since the last call.
    """

    def __init__(self, max_message_bytes: int = 1024 * 1024) -> None:
        self.max_message_bytes = max_message_bytes
        self.messages = 0
        self.keepalives = 0
        self.errors_total = 0
        self._errors: list[ParseError] = []
        self._pending: list[bytes] = []  # chunks of an incomplete message, no CRLF among them
        self._pending_len = 0
        self._discarding = False  # skipping an oversized message up to the next CRLF
        self._last_cr = False  # the previous chunk ended with b"\r"
        self._expect: int | None = None  # length announced by the last prefix
        self._slicing = False  # recent messages were length-prefixed and large: slice, not split

    # -- errors ---------------------------------------------------------------

    def _error(self, kind: str, sample: bytes) -> None:
        self.errors_total += 1
        self._errors.append(ParseError(kind, bytes(sample[:SAMPLE_BYTES])))

    def take_errors(self) -> list[ParseError]:
        errors, self._errors = self._errors, []
        return errors

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
                    continue
            i = find(_CRLF, pos)
            if i == -1:
                break
            line = data[pos:i]
            pos = i + 2
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
    """Incremental gzip (``Content-Encoding: gzip``) decoding."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        return self._z.decompress(data)


class StreamDecoder:
    """Content decoding plus framing for one response body.

    ``broken`` turns true when the body cannot be decoded any further (a
    corrupt gzip stream): the wader then recycles the connection.
    """

    def __init__(self, max_message_bytes: int = 1024 * 1024, gzip: bool = False) -> None:
        self.parser = FrameParser(max_message_bytes)
        self._gzip = GzipDecoder() if gzip else None
        self.broken = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.broken:
            return []
        if self._gzip is not None:
            try:
                data = self._gzip.decode(data)
            except zlib.error as e:
                self.broken = True
                self.parser._error("gzip", str(e).encode())
                return []
        return self.parser.feed(data)

    def take_errors(self) -> list[ParseError]:
        return self.parser.take_errors()

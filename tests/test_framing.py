"""The framing parser: same messages whatever the chunking; garbage never raises."""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.framing import FrameParser, StreamDecoder

_json_text = st.text(
    alphabet=st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)), max_size=60)
messages = st.lists(
    st.builds(lambda t, n: json.dumps({"text": t, "id": n}, ensure_ascii=False).encode()
              .replace(b"\\n", b"\n"), _json_text, st.integers(0, 2**63)),
    min_size=0, max_size=25)


def encode(msgs: list[bytes], delimited: bool, keepalives: list[int]) -> bytes:
    out = []
    for i, m in enumerate(msgs):
        out.append(b"\r\n" * (keepalives[i % len(keepalives)] if keepalives else 0))
        if delimited:
            out.append(b"%d\r\n" % (len(m) + 2))
        out.append(m + b"\r\n")
    return b"".join(out)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(data[last:p])
        last = p
    chunks.append(data[last:])
    return chunks


def parse_all(chunks: list[bytes], gz: bool = False, limit: int = 1024 * 1024) -> tuple[list[bytes], StreamDecoder]:
    d = StreamDecoder(limit, gzip=gz)
    out: list[bytes] = []
    for c in chunks:
        out.extend(d.feed(c))
    return out, d


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(messages, st.booleans(), st.lists(st.integers(0, 3), max_size=4),
           st.lists(st.integers(0, 10_000), max_size=30), st.booleans())
    def test_any_split_parses_the_same(self, msgs, delimited, keepalives, cuts, gz):
        data = encode(msgs, delimited, keepalives)
        if gz:
            data = gzip.compress(data)
        out, d = parse_all(split_at(data, cuts), gz)
        self.assertEqual(out, msgs)
        self.assertEqual(d.take_errors(), [])
        expected_ka = sum(keepalives[i % len(keepalives)] for i in range(len(msgs))) if keepalives else 0
        self.assertEqual(d.parser.keepalives, expected_ka)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=200), max_size=20), st.booleans())
    def test_garbage_never_raises(self, chunks, gz):
        d = StreamDecoder(256, gzip=gz)
        for c in chunks:
            for m in d.feed(c):
                self.assertIsInstance(m, bytes)
                self.assertNotIn(b"\r\n", m)
                self.assertLessEqual(len(m), 256)
        d.take_errors()

    @settings(max_examples=100, deadline=None)
    @given(messages, st.binary(max_size=50).filter(lambda b: b"\r\n" not in b))
    def test_resynchronises_after_garbage(self, msgs, garbage):
        data = garbage + b"\r\n" + encode(msgs, True, [1])
        out, _ = parse_all([data])
        self.assertEqual(out[-len(msgs):] if msgs else [], msgs)


class ExampleTests(SynchronousTestCase):
    def test_keepalives_counted_not_passed(self):
        p = FrameParser()
        self.assertEqual(p.feed(b"\r\n\r\n{\"a\":1}\r\n\r\n"), [b'{"a":1}'])
        self.assertEqual(p.keepalives, 3)

    def test_message_with_newline_inside(self):
        p = FrameParser()
        self.assertEqual(p.feed(b'{"a":\n1}\r\n'), [b'{"a":\n1}'])

    def test_length_split_across_chunks_and_crlf_split(self):
        p = FrameParser()
        out = p.feed(b"1") + p.feed(b"0\r") + p.feed(b"\n{\"a\":12}\r") + p.feed(b"\n")
        self.assertEqual(out, [b'{"a":12}'])
        self.assertEqual(p.take_errors(), [])

    def test_length_mismatch_counted_message_kept(self):
        p = FrameParser()
        self.assertEqual(p.feed(b"99\r\n{\"a\":1}\r\n"), [b'{"a":1}'])
        self.assertEqual([e.kind for e in p.take_errors()], ["length_mismatch"])

    def test_absurd_length_counted(self):
        p = FrameParser(max_message_bytes=1024)
        out = p.feed(b"99999999999999\r\n{\"a\":1}\r\n5000\r\n{\"b\":2}\r\n")
        self.assertEqual(out, [b'{"a":1}', b'{"b":2}'])
        self.assertEqual([e.kind for e in p.take_errors()], ["bad_length", "bad_length"])

    def test_too_long_message_dropped_then_resync(self):
        p = FrameParser(max_message_bytes=1024)
        out = []
        out += p.feed(b"{" + b"x" * 600)
        out += p.feed(b"x" * 600)  # over the limit: dropped, skipping to CRLF
        out += p.feed(b"x" * 600)
        out += p.feed(b"x}\r\n{\"ok\":1}\r\n")
        self.assertEqual(out, [b'{"ok":1}'])
        errors = p.take_errors()
        self.assertEqual([e.kind for e in errors], ["too_long"])
        self.assertTrue(errors[0].sample.startswith(b"{xxx"))
        self.assertEqual(p.buffered, 0)

    def test_too_long_in_one_chunk(self):
        p = FrameParser(max_message_bytes=1024)
        out = p.feed(b"{" + b"x" * 2000 + b"}\r\n{\"ok\":1}\r\n")
        self.assertEqual(out, [b'{"ok":1}'])
        self.assertEqual([e.kind for e in p.take_errors()], ["too_long"])

    def test_non_json_line_flagged(self):
        p = FrameParser()
        out = p.feed(b"Exceeded connection limit for user\r\n{\"a\":1}\r\n")
        self.assertEqual(out, [b'{"a":1}'])
        errors = p.take_errors()
        self.assertEqual(errors[0].kind, "non_json")
        self.assertEqual(errors[0].sample, b"Exceeded connection limit for user")

    def test_corrupt_gzip_marks_broken(self):
        d = StreamDecoder(gzip=True)
        self.assertEqual(d.feed(b"not gzip at all"), [])
        self.assertTrue(d.broken)
        self.assertEqual([e.kind for e in d.take_errors()], ["gzip"])

    def test_many_small_chunks_of_a_big_message_are_not_quadratic(self):
        p = FrameParser(max_message_bytes=4 * 1024 * 1024)
        big = b'{"t":"' + b"y" * (2 * 1024 * 1024) + b'"}'
        out = []
        for i in range(0, len(big), 512):
            out += p.feed(big[i:i + 512])
        out += p.feed(b"\r\n")
        self.assertEqual(out, [big])

"""FrameParser's fast paths (length-sliced messages, in-place scanning) equal plain CRLF splitting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.framing import FrameParser


def reference(stream: bytes, limit: int) -> tuple[list[bytes], tuple[int, int, int], list]:
    """Split the whole stream on CRLF and apply the line rules one by one: no fast path."""
    p = FrameParser(limit)
    out: list[bytes] = []
    lines = stream.split(b"\r\n")
    for line in lines[:-1]:
        p._line(line, out)
    p.messages = len(out)
    return out, (p.messages, p.keepalives, p.errors_total), p.take_errors()


def chunked(stream: bytes, cuts: list[int], limit: int):
    p = FrameParser(limit)
    out: list[bytes] = []
    bounds = sorted({c % (len(stream) + 1) for c in cuts})
    for a, b in zip([0] + bounds, bounds + [len(stream)]):
        out.extend(p.feed(stream[a:b]))
    return out, (p.messages, p.keepalives, p.errors_total), p.take_errors()


def big(n: int, fill: bytes = b"x") -> bytes:
    return b'{"text":"' + fill * n + b'"}'


_body = st.builds(lambda n, c: big(n, c), st.integers(0, 3000), st.sampled_from([b"x", b"\n", b"\r", b" ", b"7"]))
_piece = st.one_of(
    _body.map(lambda b: b"%d\r\n" % (len(b) + 2) + b + b"\r\n"),  # right prefix
    st.tuples(_body, st.integers(-5, 5)).map(lambda t: b"%d\r\n" % (len(t[0]) + 2 + t[1]) + t[0] + b"\r\n"),
    _body.map(lambda b: b + b"\r\n"),  # no prefix
    st.sampled_from([b"\r\n", b"  \r\n", b"99999999999\r\n", b"0\r\n", b"2\r\n", b"garbage\r\n", b"\r", b"\n"]),
    st.binary(max_size=30),
)


class SlicingTests(SynchronousTestCase):
    def test_large_prefixed_messages_are_sliced_and_equal_split(self):
        msgs = [big(n) for n in (3000, 4000, 800, 5000, 3000, 9000)]
        stream = b"".join(b"%d\r\n" % (len(m) + 2) + m + b"\r\n" for m in msgs)
        p = FrameParser()
        got = []
        for i in range(0, len(stream), 7000):
            got.extend(p.feed(stream[i:i + 7000]))
        self.assertTrue(p._slicing)
        self.assertEqual(got, msgs)
        self.assertEqual(p.errors_total, 0)

    def test_a_cr_inside_a_prefixed_message_falls_back_to_the_line_rules(self):
        m = big(2000).replace(b"xx", b"x\rx", 1)
        stream = b"".join(b"%d\r\n" % (len(x) + 2) + x + b"\r\n" for x in (big(2000), big(2000), m, big(2000)))
        self.assertEqual(chunked(stream, [1000, 9000], 1 << 20), reference(stream, 1 << 20))
        self.assertEqual(chunked(stream, [1000, 9000], 1 << 20)[0][2], m)

    def test_a_wrong_prefix_is_still_reported(self):
        good = [big(3000) for _ in range(4)]
        stream = b"".join(b"%d\r\n" % (len(m) + 2) for m in good[:1]) + good[0] + b"\r\n"
        stream += b"".join(b"%d\r\n" % (len(m) + 2) + m + b"\r\n" for m in good[1:3])
        stream += b"%d\r\n" % (len(good[3]) + 50) + good[3] + b"\r\n"
        stream += b"%d\r\n" % (len(good[0]) + 2) + good[0] + b"\r\n"
        out, counts, errors = chunked(stream, [len(stream) // 3], 1 << 20)
        self.assertEqual(out, good + [good[0]])
        self.assertEqual([e.kind for e in errors], ["length_mismatch"])

    @settings(max_examples=250, deadline=None)
    @given(st.lists(_piece, max_size=25), st.lists(st.integers(0, 1 << 20), max_size=25))
    def test_any_stream_any_split_equals_plain_splitting(self, pieces, cuts):
        # (lines stay far below the limit: the reference knows no discarding of a long partial line)
        stream = b"".join(pieces)
        self.assertEqual(chunked(stream, cuts, 1 << 20), reference(stream, 1 << 20))

"""Hostile bodies: gzip bombs, keep-alive floods, a second gzip member, trailing garbage.

Every bound is asserted on sizes and counts (bytes per step, steps, calls),
never on time.
"""

from __future__ import annotations

import gzip
import json
import zlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.framing import LINE_COST, MAX_ERROR_SAMPLES, SLICE_BYTES, FrameParser, StreamDecoder


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def drain(d: StreamDecoder) -> tuple[list[bytes], list[int]]:
    """Every message, and the decoded bytes of each step."""
    out: list[bytes] = []
    steps: list[int] = []
    while d.pending:
        out.extend(d.step())
        steps.append(d.last_step_bytes)
    return out, steps


class CountingParser(FrameParser):
    """Counts the per-line slow path: keep-alives must not go through it one by one."""

    def __init__(self, *a, **k) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **k)
        self.line_calls = 0

    def _line(self, line: bytes, out: list[bytes]) -> None:
        self.line_calls += 1
        super()._line(line, out)


class GzipBombTests(SynchronousTestCase):
    def test_bomb_is_decoded_in_bounded_steps(self):
        n = 2 * 1024 * 1024  # 4 MiB of keep-alives, a few KB compressed
        body = b"\r\n" * n + b'{"id":1}\r\n'
        bomb = gz(body)
        self.assertLess(len(bomb), 16 * 1024)
        d = StreamDecoder(gzip=True)
        d.push(bomb)
        self.assertEqual(d.parser.keepalives, 0)  # pushing does no work
        out, steps = drain(d)
        self.assertEqual(out, [b'{"id":1}'])
        self.assertEqual(d.parser.keepalives, n)
        self.assertEqual(sum(steps), len(body))
        self.assertLessEqual(max(steps), SLICE_BYTES)
        self.assertGreaterEqual(len(steps), len(body) // SLICE_BYTES)
        self.assertFalse(d.broken)

    def test_held_input_stays_bounded(self):
        bomb = gz(b"\r\n" * (1024 * 1024))
        d = StreamDecoder(gzip=True, slice_bytes=4096)
        for i in range(0, len(bomb), 512):
            d.push(bomb[i:i + 512])
        d.step()
        # never more than what was received is held, and the output of one step is one slice
        self.assertLessEqual(d.queued, len(bomb))
        self.assertLessEqual(d.last_step_bytes, 4096)

    def test_plain_bodies_are_sliced_too(self):
        body = b"\r\n" * 100_000 + b'{"id":2}\r\n'
        d = StreamDecoder(slice_bytes=10_000)
        d.push(body)
        out, steps = drain(d)
        self.assertEqual(out, [b'{"id":2}'])
        self.assertEqual(max(steps), 10_000)
        self.assertEqual(sum(steps), len(body))
        self.assertEqual(d.parser.keepalives, 100_000)


class GarbageTests(SynchronousTestCase):
    def test_a_flood_of_garbage_lines_keeps_few_samples_and_every_count(self):
        d = StreamDecoder(gzip=True)
        out = d.feed(gz(b"garbage\r\n" * 100_000 + b"12\r\n13\r\n" * 1000 + b'{"id":1}\r\n'))
        self.assertEqual(out, [b'{"id":1}'])
        self.assertEqual(d.take_error_counts(), {"non_json": 100_000, "length_mismatch": 2000})
        samples = d.take_errors()
        self.assertLessEqual(len(samples), MAX_ERROR_SAMPLES)
        self.assertEqual(samples[0].sample, b"garbage")
        self.assertEqual((d.take_error_counts(), d.take_errors()), ({}, []))  # taken

    def test_step_cost_counts_lines_handled_one_by_one(self):
        d = StreamDecoder(slice_bytes=3000)
        d.push(b"x\r\n" * 1000)
        d.step()
        self.assertEqual(d.last_step_cost, 3000 + 1000 * LINE_COST)
        d = StreamDecoder(slice_bytes=3000)
        d.push(b"\r\n" * 1500)  # keep-alives are counted in bulk: bytes only
        d.step()
        self.assertEqual(d.last_step_cost, 3000)


class BulkKeepaliveTests(SynchronousTestCase):
    def test_keepalive_runs_skip_the_per_line_path(self):
        p = CountingParser()
        out = p.feed(b"\r\n" * 50_000 + b'{"a":1}\r\n' + b"\r\n" * 50_000)
        self.assertEqual(out, [b'{"a":1}'])
        self.assertEqual(p.keepalives, 100_000)
        self.assertLess(p.line_calls, 10)

    def test_keepalive_runs_in_length_delimited_slicing_mode(self):
        p = CountingParser()
        big = b'{"t":"' + b"x" * 4000 + b'"}'
        framed = b"%d\r\n" % (len(big) + 2) + big + b"\r\n"
        self.assertEqual(p.feed(framed * 4), [big] * 4)  # switches to slicing
        out = p.feed(b"\r\n" * 50_000 + framed)
        self.assertEqual(out, [big])
        self.assertEqual(p.keepalives, 50_000)
        self.assertLess(p.line_calls, 10)


class GzipMemberTests(SynchronousTestCase):
    def test_second_member_breaks_the_stream(self):
        d = StreamDecoder(gzip=True)
        out = d.feed(gz(b'{"id":1}\r\n') + gz(b'{"id":2}\r\n'))
        self.assertEqual(out, [b'{"id":1}'])  # what came before is kept
        self.assertTrue(d.broken)
        self.assertEqual([e.kind for e in d.take_errors()], ["gzip"])

    def test_second_member_in_a_later_chunk_breaks_the_stream(self):
        d = StreamDecoder(gzip=True)
        self.assertEqual(d.feed(gz(b'{"id":1}\r\n')), [b'{"id":1}'])
        self.assertFalse(d.broken)
        self.assertEqual(d.feed(gz(b'{"id":2}\r\n')), [])
        self.assertTrue(d.broken)
        self.assertFalse(d.pending)

    def test_trailing_garbage_breaks_the_stream(self):
        d = StreamDecoder(gzip=True)
        out = d.feed(gz(b'{"id":1}\r\n') + b"garbage")
        self.assertEqual(out, [b'{"id":1}'])
        self.assertTrue(d.broken)
        self.assertIn(b"after the end", d.take_errors()[0].sample)

    def test_one_complete_member_is_not_broken(self):
        d = StreamDecoder(gzip=True)
        self.assertEqual(d.feed(gz(b'{"id":1}\r\n')), [b'{"id":1}'])
        self.assertFalse(d.broken)
        self.assertEqual(d.take_errors(), [])


_lines = st.lists(
    st.one_of(st.just(b""), st.integers(0, 10**6).map(lambda i: json.dumps({"id": i}).encode())),
    max_size=60)


class SplitPropertyTests(SynchronousTestCase):
    @given(_lines, st.integers(1, 64), st.data())
    def test_any_split_and_any_stepping_decode_like_the_whole(self, lines, slice_bytes, data):
        body = b"".join(line + b"\r\n" for line in lines)
        z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        stream = z.compress(body) + z.flush(zlib.Z_SYNC_FLUSH) + z.flush()
        whole = StreamDecoder(gzip=True)
        expected = whole.feed(stream)
        self.assertEqual(expected, [line for line in lines if line])

        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
        d = StreamDecoder(gzip=True, slice_bytes=slice_bytes)
        out: list[bytes] = []
        last = 0
        for cut in cuts + [len(stream)]:
            d.push(stream[last:cut])
            last = cut
            for _ in range(data.draw(st.integers(0, 3))):  # some steps now, the rest later
                if d.pending:
                    out.extend(d.step())
                    self.assertLessEqual(d.last_step_bytes, slice_bytes)
        rest, _ = drain(d)
        self.assertEqual(out + rest, expected)
        self.assertEqual(d.parser.keepalives, whole.parser.keepalives)
        self.assertFalse(d.broken)

"""The batch script and the checkpoint value: pure parts with properties, the script on a real Redis."""

from __future__ import annotations

import socket
import uuid

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from flamingo.dispatch.resp import _Incomplete, _parse, command
from flamingo.dispatch.transaction import (
    SCRIPT,
    QueueWrite,
    checkpoint_value,
    encode_batch,
    parse_checkpoint,
    resume_point,
)
from tests.support.redis import shared_redis


class CheckpointValueTests(unittest.SynchronousTestCase):
    def test_formats(self):
        self.assertEqual(parse_checkpoint(checkpoint_value(12, "ab12")), (12, "ab12"))
        self.assertEqual(parse_checkpoint(b"40"), (40, None))  # written by earlier versions
        self.assertEqual(parse_checkpoint(b"%020d:%s \n" % (7, b"ff")), (7, "ff"))  # the local copy
        self.assertIsNone(parse_checkpoint(None))
        for bad in (b"garbage", b"", b"-1", b"1:XYZ", b"1.5"):
            self.assertRaises(ValueError, parse_checkpoint, bad)


@st.composite
def facts(draw):
    """What a journal and a sink can know together: first_seq <= last_seq + 1, and
    neither the journal at start nor the sink's writes beyond the journal now."""
    last = draw(st.integers(0, 200))
    return {"epoch_recorded": draw(st.booleans()), "first_seq": draw(st.integers(1, last + 1)),
            "last_seq": last, "opened_last_seq": draw(st.integers(0, last)),
            "written_upto": draw(st.integers(0, last))}


class ResumePointTests(unittest.SynchronousTestCase):
    def test_cases(self):
        kw = dict(epoch="e1", epoch_recorded=True, first_seq=1, last_seq=110, opened_last_seq=60, written_upto=0)
        self.assertEqual(resume_point((50, "e1"), **kw), (50, "ok"))
        self.assertEqual(resume_point((50, None), **kw), (50, "ok"))
        self.assertEqual(resume_point((100, "e1"), **kw), (60, "rolled_back"))
        self.assertEqual(resume_point((100, "e1"), **{**kw, "written_upto": 100}), (100, "ok"))
        self.assertEqual(resume_point((100, "zz"), **kw), (0, "other_journal"))
        self.assertEqual(resume_point((50, "zz"), **{**kw, "epoch_recorded": False}), (50, "adopted"))

    @given(st.integers(0, 300), st.sampled_from(["e1", "e2", None]), facts())
    def test_never_beyond_what_the_journal_can_vouch_for(self, pos, theirs, f):
        got, verdict = resume_point((pos, theirs), epoch="e1", **f)
        self.assertLessEqual(got, f["last_seq"])
        self.assertLessEqual(got, max(f["opened_last_seq"], f["written_upto"], f["first_seq"] - 1))
        if verdict == "ok":
            self.assertEqual(got, min(pos, f["last_seq"]))


def call(server, payload):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(command("SCRIPT", "LOAD", SCRIPT) + payload)
        buf = b""
        replies, pos = [], 0
        while len(replies) < 2:
            buf += s.recv(65536)
            try:
                while len(replies) < 2:
                    r, pos = _parse(buf, pos)
                    replies.append(r)
            except _Incomplete:
                continue  # read more
        return replies[1]


class ScriptTests(unittest.SynchronousTestCase):
    def test_all_or_nothing(self):
        r = shared_redis()
        ns = "x" + uuid.uuid4().hex[:8]
        ck, q1, q2 = f"{ns}:cp".encode(), f"{ns}:q1".encode(), f"{ns}:q2".encode()
        writes = [QueueWrite(q1, [b"a", b"b", b"c"], max_length=2),
                  QueueWrite(q2, [b"a"], resque_name=b"n" + ns.encode())]
        self.addCleanup(r.command, "SREM", "resque:queues", "n" + ns)
        self.assertEqual(call(r, b"".join(encode_batch(ck, b"", b"3:e", writes))), [[2, 1], [1, 0]])
        self.assertEqual(r.command("LRANGE", q1, "0", "-1"), [b"b", b"c"])
        self.assertEqual(r.command("GET", ck), b"3:e")
        self.assertEqual(r.command("SISMEMBER", "resque:queues", "n" + ns), 1)
        moved = call(r, b"".join(encode_batch(ck, b"", b"6:e", writes)))  # a stale expectation
        self.assertIn("FLAMINGO-MOVED", str(moved))
        r.command("SET", q2, "x")
        wrong = call(r, b"".join(encode_batch(ck, b"3:e", b"6:e", writes)))
        self.assertIn(f"WRONGTYPE {ns}:q2", str(wrong))
        self.assertEqual(r.command("LRANGE", q1, "0", "-1"), [b"b", b"c"])  # nothing written
        self.assertEqual(r.command("GET", ck), b"3:e")
        big = [QueueWrite(q1, [b"v%d" % i for i in range(2500)])]  # more than one unpack chunk
        self.assertEqual(call(r, b"".join(encode_batch(ck, b"3:e", None, big))), [[2502, 0]])
        self.assertEqual(r.command("GET", ck), b"3:e")
        r.command("DEL", q1, q2, ck)

    def test_streams(self):
        """XADD per event with type and event fields; groups made with a new stream; the type check."""
        r = shared_redis()
        ns = "x" + uuid.uuid4().hex[:8]
        ck, sk, lk = f"{ns}:cp".encode(), f"{ns}:stream:s".encode(), f"{ns}:queue:l".encode()
        values = [b"tweet\n{\"id\":%d}" % i for i in range(5)]
        writes = [QueueWrite(sk, values, stream=True, groups=(b"g1", b"g2")), QueueWrite(lk, [b"x"])]
        self.assertEqual(call(r, b"".join(encode_batch(ck, b"", b"5:e", writes))), [[5, 0], [1, 0]])
        entries = r.command("XRANGE", sk, "-", "+")
        self.assertEqual([e[1] for e in entries][:2], [[b"type", b"tweet", b"event", b'{"id":0}'],
                                                      [b"type", b"tweet", b"event", b'{"id":1}']])
        groups = {g[1] for g in r.command("XINFO", "GROUPS", sk)}
        self.assertEqual(groups, {b"g1", b"g2"})  # made before the first entry: they see all 5
        got = r.command("XREADGROUP", "GROUP", "g1", "c", "STREAMS", sk, ">")
        self.assertEqual(len(got[0][1]), 5)
        # MAXLEN ~: trimmed counted as what left the stream
        many = [QueueWrite(sk, [b"t\n%d" % i for i in range(400)], max_length=10, stream=True)]
        (length, trimmed), = call(r, b"".join(encode_batch(ck, b"5:e", b"405:e", many)))
        self.assertEqual(length + trimmed, 405)
        self.assertGreater(trimmed, 0)
        self.assertEqual(r.command("XLEN", sk), length)
        # a list where a stream should be refuses the whole batch
        r.command("DEL", sk)
        r.command("RPUSH", sk, "x")
        wrong = call(r, b"".join(encode_batch(ck, b"405:e", b"410:e", writes)))
        self.assertIn(f"WRONGTYPE {ns}:stream:s holds a list, not a stream", str(wrong))
        self.assertEqual(r.command("LLEN", lk), 1)
        self.assertEqual(r.command("GET", ck), b"405:e")
        r.command("DEL", sk, lk, ck)

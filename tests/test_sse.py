"""The SSE framer: any split of a byte stream parses the same; heartbeats counted; bounds kept."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from flamingo.stream.sse import SseEvent, SseParser
from tests.support.waiting import until

STREAM = (b":)\nevent: update\ndata: {\"id\":\"1\"}\n\n:thump\n"
          b"event: delete\r\ndata: 12345\r\n\r\n"
          b"event: filters_changed\rdata: undefined\r\r"
          b"data: line1\ndata:line2\nid: 9\nretry: 10\n\n")
EVENTS = [SseEvent("update", b'{"id":"1"}'), SseEvent("delete", b"12345"),
          SseEvent("filters_changed", b"undefined"), SseEvent("message", b"line1\nline2")]


def parse_in(chunks: list[bytes], max_bytes: int = 1 << 20) -> tuple[list[SseEvent], int, int]:
    p = SseParser(max_bytes)
    out: list[SseEvent] = []
    for c in chunks:
        out += p.feed(c)
    return out, p.heartbeats, p.errors


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


class SseParserTests(SynchronousTestCase):
    def test_events_heartbeats_and_line_endings(self) -> None:
        self.assertEqual(parse_in([STREAM]), (EVENTS, 2, 0))

    @given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
    def test_any_split_parses_the_same(self, cuts: list[int]) -> None:
        self.assertEqual(parse_in(split(STREAM, cuts)), (EVENTS, 2, 0))

    @given(st.lists(st.tuples(st.sampled_from(["update", "delete", "status.update"]),
                              st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
                    max_size=12),
           st.sampled_from([b"\n", b"\r\n", b"\r"]),
           st.lists(st.integers(min_value=0, max_value=5_000), max_size=30))
    def test_generated_streams_any_split(self, events: list[tuple[str, bytes]], eol: bytes, cuts: list[int]) -> None:
        data = b"".join(b"event: " + n.encode() + eol + b"data: " + d + eol + b":thump" + eol + eol
                        for n, d in events)
        want = [SseEvent(n, d) for n, d in events]
        self.assertEqual(parse_in([data])[0], want)
        self.assertEqual(parse_in(split(data, cuts)), parse_in([data]))

    def test_crlf_split_then_a_blank_line(self) -> None:
        chunks = [b"data: 1\r", b"\n", b"\n", b"data: 2\r", b"\r"]
        self.assertEqual(parse_in(chunks)[0], [SseEvent("message", b"1"), SseEvent("message", b"2")])

    def test_over_long_line_skipped_and_counted(self) -> None:
        big = b"data: " + b"x" * 5000
        events, beats, errors = parse_in([b"event: update\n", big[:3000], big[3000:] + b"\n\n",
                                          b"event: delete\ndata: 1\n\n"], max_bytes=1024)
        self.assertEqual(events, [SseEvent("delete", b"1")])
        self.assertEqual(errors, 1)

    def test_over_long_event_of_many_lines(self) -> None:
        data = b"event: update\n" + b"data: 0123456789\n" * 200 + b"\nevent: delete\ndata: 2\n\n"
        events, _, errors = parse_in([data], max_bytes=1024)
        self.assertEqual(events[-1], SseEvent("delete", b"2"))
        self.assertGreaterEqual(errors, 1)


class SseLinkGate(TestCase):
    """A real SSE response over loopback: a closed delivery gate stops the reading."""

    timeout = 20

    @defer.inlineCallbacks
    def test_closed_delivery_gate_pauses_reading_until_it_opens(self) -> Any:
        from twisted.web.client import Agent
        from twisted.web.http_headers import Headers
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET, Site

        from flamingo.stream.endpoints import StreamRequest
        from flamingo.stream.flow import Flow
        from flamingo.stream.sse import SseLink

        requests: list[Any] = []

        class Stream(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> Any:
                request.setHeader(b"content-type", b"text/event-stream")
                request.write(b"event: update\ndata: 1\n\n")
                requests.append(request)
                return NOT_DONE_YET

        port = reactor.listenTCP(0, Site(Stream()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        frames: list[bytes] = []

        class Events:
            flow = Flow()

            def responded(self, link: Any) -> None: ...

            def refused(self, link: Any, verdict: Any) -> None: ...

            def alive(self, link: Any) -> None: ...

            def messages(self, link: Any, batch: list[bytes]) -> None:
                frames.extend(batch)

            def ended(self, link: Any, verdict: Any) -> None: ...

        class Stats:
            def keepalive(self, n: int) -> None: ...

            def parse_error(self, kind: str, sample: bytes, n: int) -> None: ...

        events = Events()
        events.flow.close()  # the event log's writer is behind
        url = f"http://127.0.0.1:{port.getHost().port}/api/v1/streaming/public"
        link = SseLink(StreamRequest("GET", url, None, (), "/api/v1/streaming/public"), Headers(),
                       lambda evs: [e.data for e in evs], events, agent=Agent(reactor),
                       clock=task.Clock(), stats=Stats(), connect_timeout=10, max_event_bytes=1 << 16)
        self.addCleanup(link.close)
        yield until(lambda: frames == [b"1"] and link.gate_wait is not None)
        # the body's transport is Twisted's proxy of the TCP connection (its _producer)
        tcp = link.body.transport._producer  # type: ignore[union-attr]
        self.assertNotIn(tcp, reactor.getReaders())  # not read: TCP's window pushes back
        requests[0].write(b"event: update\ndata: 2\n\n")
        events.flow.reopen()
        yield until(lambda: frames == [b"1", b"2"])
        self.assertIsNone(link.gate_wait)
        self.assertIn(tcp, reactor.getReaders())

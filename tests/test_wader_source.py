"""The wader over the ``Source`` seam, with a source whose links the test drives.

What the next sources (Jetstream, Mastodon, X) rely on: params applied on
the open connection without a reconnect, the stall timer working for any
transport, verdicts (retry / fatal with the server's words) deciding the
state, and stop closing whatever is open, in every state. Time is a Clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twisted.internet import defer, task
from twisted.trial.unittest import TestCase

from flamingo.config import from_mapping
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.source import Fatal, LinkEvents, Retry
from flamingo.stream.wader import Wader
from tests.support.fakes import MemoryStore

Params = Mapping[str, Sequence[str]]


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.lines: list[str] = []

    def connection_started(self, request_line: str) -> None:
        self.lines.append(request_line)

    def messages_received(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)


class ScriptedLink:
    """A connection the test opens, feeds and ends, as a transport would."""

    def __init__(self, request: StreamRequest, events: LinkEvents) -> None:
        self.request = request
        self.events = events
        self.closed = False
        self.aborted: Retry | None = None
        self.applied: list[dict[str, list[str]]] = []

    @property
    def request_line(self) -> str:
        return self.request.request_line

    def respond(self) -> None:
        self.events.responded(self)

    def send(self, *frames: bytes) -> None:
        self.events.alive(self)
        self.events.messages(self, list(frames))

    def abort(self, because: Retry) -> None:
        self.aborted = because
        self.events.ended(self, because)

    def close(self) -> defer.Deferred[None]:
        self.closed = True
        return defer.succeed(None)


class ScriptedSource:
    """A source that applies params in place (like Jetstream's options_update)."""

    stream = "subscribe"

    def __init__(self, in_place: bool = True) -> None:
        self.in_place = in_place
        self.links: list[ScriptedLink] = []
        self.refuse_at_once: Retry | None = None  # open() reports before it returns

    def request(self, params: Params) -> StreamRequest | None:
        if not params.get("wantedCollections"):
            return None
        line = "/subscribe?wantedCollections=" + ",".join(params["wantedCollections"])
        return StreamRequest("GET", "ws://127.0.0.1" + line, None, (), line)

    def open(self, request: StreamRequest, events: LinkEvents) -> ScriptedLink:
        link = ScriptedLink(request, events)
        self.links.append(link)
        if self.refuse_at_once is not None:  # like Agent.request for a scheme it lacks
            events.refused(link, self.refuse_at_once)
        return link

    def apply_params(self, link: ScriptedLink, params: Params) -> bool:  # type: ignore[override]
        if self.in_place:
            link.applied.append({k: list(v) for k, v in params.items()})
        return self.in_place

    def close_idle(self) -> None:
        pass


class SourceSeamTests(TestCase):
    def make(self, in_place: bool = True) -> tuple[Wader, ScriptedSource, MemoryStore]:
        config = from_mapping({"username": "u", "password": "p", "stream": "filter",
                               "wader": {"debounce": 1, "min_interval": 0}},
                              environ={})
        self.clock = task.Clock()
        store = MemoryStore({"subscribe": {"wantedCollections": ["app.bsky.feed.post"]}})
        self.sink = Sink()
        source = ScriptedSource(in_place)
        wader = Wader(config, self.clock, store, self.sink, clock=self.clock, now=lambda: 0.0,
                      source=source)
        wader.startService()
        self.addCleanup(lambda: wader.stopService() if wader.running else None)
        self.clock.advance(0)
        return wader, source, store

    def test_params_applied_on_the_open_connection(self) -> None:
        wader, source, store = self.make()
        source.links[0].respond()
        store.set_params("subscribe", {"wantedCollections": ["app.bsky.feed.like"]})
        self.clock.advance(1)  # the debounce
        self.assertEqual(len(source.links), 1)  # no reconnect
        self.assertEqual(source.links[0].applied, [{"wantedCollections": ["app.bsky.feed.like"]}])
        self.assertEqual(wader.state.name, "connected")

    def test_restart_reconnects_even_when_params_apply_in_place(self) -> None:
        wader, source, _ = self.make()
        source.links[0].respond()
        wader.restart()  # USR1, REST, console: a new connection, whatever the source
        self.assertEqual(len(source.links), 2)
        self.assertEqual(source.links[0].applied, [])

    def test_params_by_reconnecting_when_the_source_says_so(self) -> None:
        wader, source, store = self.make(in_place=False)
        source.links[0].respond()
        store.set_params("subscribe", {"wantedCollections": ["app.bsky.feed.like"]})
        self.clock.advance(1)
        self.assertEqual(len(source.links), 2)
        self.assertIs(wader.candidate, source.links[1])
        source.links[1].respond()
        self.assertTrue(source.links[0].closed)
        self.assertIs(wader.active, source.links[1])
        self.assertTrue(wader.links.deduping)

    def test_a_silent_link_is_aborted_as_a_stall(self) -> None:
        wader, source, _ = self.make()
        link = source.links[0]
        link.respond()
        link.send(b'{"id": 1}')
        self.clock.advance(wader.config.wader.stall_timeout)
        self.assertEqual(link.aborted, Retry("stall", f"no data for {wader.config.wader.stall_timeout}s"))
        self.assertEqual((wader.state.name, wader.state.cause), ("retrying", "stall"))
        self.assertEqual(self.sink.frames, [b'{"id": 1}'])

    def test_a_fatal_refusal_waits_for_a_restart(self) -> None:
        wader, source, _ = self.make()
        source.links[0].events.refused(source.links[0], Fatal("http 401", "HTTP 401: bad token"))
        self.assertEqual((wader.state.name, wader.state.message), ("fatal", "HTTP 401: bad token"))
        self.clock.advance(3600)
        self.assertEqual(len(source.links), 1)  # no retry on its own
        wader.restart()
        self.clock.advance(0)
        self.assertEqual(len(source.links), 2)
        self.assertEqual(wader.state.name, "connecting")

    def test_a_link_refused_before_open_returns_is_retried(self) -> None:
        wader, source, _ = self.make()
        source.links[0].events.refused(source.links[0], Retry("network", "refused"))
        source.refuse_at_once = Retry("network", "no such scheme")
        self.clock.advance(0.25)  # the first network retry: refused inside open()
        self.assertEqual(len(source.links), 2)
        self.assertEqual((wader.state.name, wader.state.message), ("retrying", "no such scheme"))
        source.refuse_at_once = None
        self.clock.advance(0.5)
        self.assertEqual(len(source.links), 3)
        self.assertEqual(wader.state.name, "connecting")

    def test_a_candidate_refused_before_open_returns_keeps_the_live_link(self) -> None:
        wader, source, _ = self.make(in_place=False)
        source.links[0].respond()
        source.refuse_at_once = Retry("http", "HTTP 503")
        wader.restart()
        self.assertEqual(len(source.links), 2)
        self.assertIsNone(wader.candidate)
        self.assertIs(wader.active, source.links[0])
        self.assertFalse(source.links[0].closed)
        source.refuse_at_once = None
        self.clock.advance(5)  # the http schedule's first wait: the switch again
        self.assertIs(wader.candidate, source.links[2])

    def test_a_retry_verdict_follows_its_cause_schedule(self) -> None:
        wader, source, _ = self.make()
        source.links[0].events.refused(source.links[0], Retry("rate_limit", "HTTP 429"))
        self.assertEqual((wader.state.name, wader.state.cause), ("retrying", "rate_limit"))
        self.clock.advance(59)
        self.assertEqual(len(source.links), 1)
        self.clock.advance(1)  # 60 s: the rate-limit schedule's first wait
        self.assertEqual(len(source.links), 2)

    @defer.inlineCallbacks
    def test_stop_during_a_switch_closes_both(self) -> object:
        wader, source, store = self.make(in_place=False)
        source.links[0].respond()
        wader.restart()
        self.assertEqual(len(source.links), 2)
        yield wader.stopService()
        self.assertEqual([link.closed for link in source.links], [True, True])
        self.assertEqual(wader.state.name, "stopped")
        self.assertIsNone(wader.active)

"""Bluesky Jetstream (v1 ``/subscribe``) as a ``Source``: one WebSocket, resumed by ``time_us``.

``GET /subscribe?wantedCollections=…&wantedDids=…&cursor=…&compress=true``
over ``WebSocketLink``. Params changes go on the open socket as an
``options_update`` message (no reconnect). With ``jetstream.compress`` (the
default) every message is a zstd frame made with Jetstream's published
dictionary (shipped in ``jetstream_data/`` with its licence).

Nothing lost, nothing twice: every (re)connect asks for
``cursor = last time_us − jetstream.rewind``, where ``last`` is the newest
event handed on, or at start the newest one in the journal's tail (so a
restart after ``kill -9`` resumes from what is on disk); what the replay
repeats is dropped here, before the journal, and counted as duplicates
(``jetstream_cursor.ResumeWindow`` says what a repeat is).

Ends: a refused handshake by its HTTP status (Jetstream answers 400 to bad
params: retried on the http schedule, as the params may change), close
codes by ``websocket.close_verdict`` (1008, Jetstream's answer to a bad
``options_update``, is fatal until the params change), ``ConsumerTooSlow``
(a v2-style error frame, or a close reason naming it) is transient.
"""

from __future__ import annotations

from importlib import resources
from typing import Protocol as TypingProtocol
from urllib.parse import urlencode

import attrs
import orjson
import zstandard
from twisted.internet.interfaces import IReactorTime

from flamingo import __version__
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.logs import logger
from flamingo.sources.jetstream_cursor import ResumeWindow
from flamingo.sources.jetstream_events import head, wanted
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.source import JournalTail, Link, LinkEvents, Params, Retry
from flamingo.stream.websocket import EndNotice, FrameError, FrameStats, WebSocketLink

__all__ = ["JetstreamSource", "JetstreamStats", "dictionary", "PING_INTERVAL", "DICTIONARY_ID"]

log = logger("flamingo.wader")

#: more DIDs than this go in an options_update sent on open (``requireHello=true``),
#: not in the URL: 10,000 DIDs would make a ~330 KB request line
HELLO_DIDS = 50
#: seconds between pings: a connection that stops answering stalls within
#: ``wader.stall_timeout`` (30 s for Jetstream)
PING_INTERVAL = 15.0
DICTIONARY_ID = 1612007021
_ERROR_PREFIX = b'{"$type":"error"'


class JetstreamStats(FrameStats, TypingProtocol):
    def duplicates(self, n: int) -> None: ...


def dictionary() -> bytes:
    """Jetstream's zstd dictionary, as published (112,640 bytes, id 1612007021)."""
    return (resources.files("flamingo.sources") / "jetstream_data" / "zstd_dictionary").read_bytes()


class JetstreamSource:
    """``/subscribe``; ``reactor`` connects, ``clock`` times; ``journal`` says where to resume."""

    def __init__(self, config: Config, reactor: IReactorTime, clock: IReactorTime,
                 stats: JetstreamStats, journal: JournalTail | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.stats = stats
        self.rewind_us = int(config.jetstream.rewind * 1_000_000)
        self.compress = config.jetstream.compress
        self.max_message_bytes = config.wader.max_message_bytes
        self.window = ResumeWindow(size=config.wader.dedupe_window)
        self.journaled: int | None = None  # the newest time_us in the journal at start
        self.requested: int | None = None  # the cursor the current connection asked for
        self.since: int | None = None  # when the first connection was asked for (µs, our clock)
        self.connections = 0
        self._journal = journal  # read at the first request: the journal opens when delivery starts
        self._hellos: dict[str, tuple[bytes, ...]] = {}
        self._zstd = (zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary()))
                      if self.compress else None)

    def _resume_from(self, journal: JournalTail) -> None:
        self._journal = None
        frames = journal.tail(self.window.size)
        n = self.window.seed(frames)
        if n:
            heads = [h for h in map(head, frames) if h is not None]
            self.window.floor = min(h.time_us for h in heads)  # what came before is journaled too
            self.journaled = self.window.last
            log.info("Jetstream: resuming after time_us {t} (the journal's newest of {n} read back)",
                     t=self.journaled, n=n)

    @property
    def stream(self) -> str:
        return "subscribe"

    # -- the request ----------------------------------------------------------------

    def request(self, params: Params) -> StreamRequest:
        """The request a connection would make now (the wader also asks it to check params:
        nothing changes here; ``open`` is the connection)."""
        if self._journal is not None:
            self._resume_from(self._journal)
        collections, dids = wanted(params)
        query, line = self._query(collections, dids, self.window.cursor(self.rewind_us, self.since))
        base = self.config.api.url.rstrip("/")
        path = "/subscribe" + (f"?{urlencode(query)}" if query else "")
        request = StreamRequest("GET", base + path, None, tuple(query), line)
        # the options a requireHello connection sends first (kept for open(), by URL)
        self._hellos = {request.url: (self._options_update(params),)} if len(dids) > HELLO_DIDS else {}
        return request

    def _query(self, collections: list[str], dids: list[str],
               cursor: int | None) -> tuple[list[tuple[str, str]], str]:
        """The query, and the request line status and logs show (no DID list of thousands)."""
        query: list[tuple[str, str]] = [("wantedCollections", c) for c in collections]
        if len(dids) > HELLO_DIDS:  # a long list goes in the first message, not the URL
            query.append(("requireHello", "true"))
        else:
            query += [("wantedDids", d) for d in dids]
        if cursor is not None:
            query.append(("cursor", str(cursor)))
        if self.compress:
            query.append(("compress", "true"))
        shown = [(k, v) for k, v in query if k != "wantedDids"]
        if dids:
            shown.insert(len(collections), ("wantedDids", f"({len(dids)} DIDs)" if len(dids) > 3
                                            else ",".join(dids)))
        return query, "/subscribe" + ("?" + "&".join(f"{k}={v}" for k, v in shown) if shown else "")

    def open(self, request: StreamRequest, events: LinkEvents) -> WebSocketLink:
        self.connections += 1
        self.window.opening()
        self.requested = next((int(v) for k, v in request.form if k == "cursor"), None)
        if self.since is None:
            self.since = int(self.clock.seconds() * 1_000_000)
        w = self.config.wader
        headers = {"Socket-Encoding": "zstd"} if self.compress else {}
        hello = self._hellos.get(request.url, ())
        return WebSocketLink(request, headers, self.decode, events, reactor=self.reactor,
                             clock=self.clock, turns=self.reactor, stats=self.stats,
                             connect_timeout=w.connect_timeout, ping_interval=PING_INTERVAL,
                             max_message_bytes=w.max_message_bytes,
                             user_agent=f"Flamingo/{__version__}", hello=hello)

    def apply_params(self, link: Link, params: Params) -> bool:
        """``options_update`` on the open socket; False (reconnect) when it is not open."""
        if not isinstance(link, WebSocketLink):
            return False
        if not link.send(self._options_update(params)):
            return False
        _, line = self._query(*wanted(params), self.requested)
        link.request = attrs.evolve(link.request, request_line=line)  # what status shows from now on
        return True

    @staticmethod
    def _options_update(params: Params) -> bytes:
        collections, dids = wanted(params)
        return orjson.dumps({"type": "options_update",
                             "payload": {"wantedCollections": collections, "wantedDids": dids,
                                         "maxMessageSizeBytes": 0}})

    def close_idle(self) -> None:
        pass  # nothing outlives a WebSocket connection

    # -- messages --------------------------------------------------------------------------

    def decode(self, payload: bytes, is_binary: bool) -> bytes | None:
        """One WebSocket message -> the event handed on, or None (a repeat, a notice)."""
        raw = payload
        if self._zstd is not None and (is_binary or not payload.startswith(b"{")):
            try:
                raw = self._zstd.decompress(payload, max_output_size=self.max_message_bytes)
            except zstandard.ZstdError as e:
                raise FrameError("zstd", payload[:64]) from e
        if raw.startswith(_ERROR_PREFIX):
            raise EndNotice(self._error_notice(raw))
        h = head(raw)
        if h is None:
            return raw  # not an event: journaled and counted as what it is, never lost
        window = self.window
        if window.is_repeat(h):
            self.stats.duplicates(1)
            return None
        window.handed_on(h)
        return raw

    @staticmethod
    def _error_notice(raw: bytes) -> Retry:
        try:
            obj = orjson.loads(raw)
            name, message = str(obj.get("error", "")), str(obj.get("message", ""))
        except (orjson.JSONDecodeError, AttributeError):
            name, message = "error", raw[:200].decode("utf-8", "replace")
        return Retry("dropped", f"{name}: {message}" if message else name)

    # -- status ------------------------------------------------------------------------------

    def cursor_status(self) -> JsonObject:
        """The cursor as /status.json, /meta.json, /metrics and the console show it."""
        last = self.window.last
        now = self.clock.seconds()
        return {"time_us": last,
                "lag_seconds": round(now - last / 1e6, 3) if last is not None else None,
                "requested": self.requested, "journaled_at_start": self.journaled,
                "rewind_seconds": self.config.jetstream.rewind, "compress": self.compress,
                "window": len(self.window)}

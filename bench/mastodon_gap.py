"""``python -m bench.mastodon_gap [N ...] [--live N] [--sse]``: how long a Mastodon gap of N
statuses takes to fill; with ``--live``, how many live statuses per second the source passes on.

The wader with the Mastodon source reads the bundled Mastodon emulator on
127.0.0.1 (the public stream); the emulator drops the socket and makes N
statuses (~3 KB each) before the wader is back: the time is from the drop (once
the statuses are made) to
the last status of the gap delivered, so it covers the reconnect (health,
WebSocket, subscribe) and the REST pages (40 statuses each). One process, one
reactor: it measures the source and the emulator, not Redis or the journal.

``--live N``: N statuses made while connected, 500 at a time; the time the
emulator spends making them is left out, what remains is sending, reading,
reshaping and deduping (emulator and source share the one process and core).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from twisted.internet import defer, task

__all__ = ["main", "measure", "measure_live"]


class _Sink:
    def __init__(self) -> None:
        self.n = 0
        self.bytes = 0

    def connection_started(self, request_line: str) -> None:
        pass

    def messages_received(self, frames: list[bytes]) -> None:
        self.n += len(frames)
        self.bytes += sum(map(len, frames))


class _Params:
    def params(self, stream: str) -> dict[str, list[str]]:
        return {}


class _Stats:
    def connection_attempt(self, cause: str) -> None: ...
    def duplicates(self, n: int) -> None: ...
    def keepalive(self, n: int) -> None: ...
    def parse_error(self, kind: str, sample: bytes, n: int) -> None: ...
    def disconnect_message(self, code: int, reason: str) -> None: ...


@defer.inlineCallbacks
def measure(reactor: Any, n: int) -> Any:
    """(seconds, pages, bytes per event) for a gap of ``n`` statuses."""
    from flamingo.config import from_mapping
    from flamingo.emulator.mastodon import MastodonEmulator, MastoOptions
    from flamingo.sources.mastodon import MastodonSource
    from flamingo.stream.wader import Wader

    def later(delay: float) -> Any:
        return task.deferLater(reactor, delay, lambda: None)

    emu = MastodonEmulator(MastoOptions(access_token="t", rate=0, mention_share=0, direct_share=0),
                           reactor=reactor).start()
    cfg = from_mapping({"source": "mastodon", "stream": "public", "api": {"url": emu.url}, "bearer_token": "t",
                        "wader": {"min_interval": 0}, "mastodon": {"gap_max": max(2000, n)}}, environ={})
    sink = _Sink()
    w = Wader(cfg, reactor, _Params(), sink, _Stats())  # type: ignore[arg-type]  # the stats the wader calls
    w.startService()
    try:
        while not (w.state.name == "connected" and any(s.keys for s in emu.sessions)):
            yield later(0.01)
        emu.timeline.make(3)
        while sink.n < 3:
            yield later(0.01)
        emu.drop()
        emu.timeline.make(n)  # synchronous: the wader hears of the drop once this is done
        t0 = time.perf_counter()
        while sink.n < n + 3:
            yield later(0.001)
        seconds = time.perf_counter() - t0
        source = w.source
        assert isinstance(source, MastodonSource)
        return seconds, source.gap.pages, sink.bytes / sink.n
    finally:
        yield w.stopService()
        w.source.close_idle()
        yield emu.stop()


@defer.inlineCallbacks
def measure_live(reactor: Any, n: int, transport: str = "websocket") -> Any:
    """Seconds (the emulator's making left out) for ``n`` live statuses."""
    from flamingo.config import from_mapping
    from flamingo.emulator.mastodon import MastodonEmulator, MastoOptions
    from flamingo.stream.wader import Wader

    emu = MastodonEmulator(MastoOptions(access_token="t", rate=0, mention_share=0, direct_share=0),
                           reactor=reactor).start()
    cfg = from_mapping({"source": "mastodon", "stream": "public", "api": {"url": emu.url}, "bearer_token": "t",
                        "wader": {"min_interval": 0}, "mastodon": {"transport": transport}}, environ={})
    sink = _Sink()
    w = Wader(cfg, reactor, _Params(), sink, _Stats())  # type: ignore[arg-type]  # the stats the wader calls
    w.startService()
    try:
        while not (w.state.name == "connected" and any(s.keys for s in emu.sessions)):
            yield task.deferLater(reactor, 0.01, lambda: None)
        t0, making, made = time.perf_counter(), 0.0, 0
        while made < n:
            m0 = time.perf_counter()
            emu.timeline.make(min(500, n - made))
            making += time.perf_counter() - m0
            made = min(n, made + 500)
            yield task.deferLater(reactor, 0, lambda: None)
        while sink.n < n:
            yield task.deferLater(reactor, 0.001, lambda: None)
        return time.perf_counter() - t0 - making, sink.bytes / sink.n
    finally:
        yield w.stopService()
        w.source.close_idle()
        yield emu.stop()


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    live = 0
    transport = "sse" if "--sse" in args else "websocket"
    args = [a for a in args if a != "--sse"]
    if "--live" in args:
        i = args.index("--live")
        live = int(args[i + 1])
        del args[i:i + 2]
    sizes = [int(a) for a in args] or ([] if live else [400, 2000])
    from twisted.internet import reactor

    out = {"code": 0}

    @defer.inlineCallbacks
    def run() -> Any:
        try:
            for n in sizes:
                seconds, pages, size = yield measure(reactor, n)
                print(f"gap of {n} statuses (~{size:.0f} B): filled in {seconds:.3f} s "
                      f"({n / seconds:.0f} statuses/s, {pages} REST pages)", flush=True)
            if live:
                seconds, size = yield measure_live(reactor, live, transport)
                print(f"live over {transport}: {live} statuses (~{size:.0f} B) in {seconds:.2f} s: "
                      f"{live / seconds:.0f} statuses/s, {live * size / seconds / 1e6:.1f} MB/s", flush=True)
        except Exception as e:  # report and exit non-zero
            print(f"bench.mastodon_gap: {e}", file=sys.stderr)
            out["code"] = 1
        finally:
            reactor.stop()  # type: ignore[attr-defined]  # the global reactor

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return out["code"]


if __name__ == "__main__":
    sys.exit(main())

"""The reactor's per-event hot spots alone: ``python -m bench.hotpath_micro [--events N]``.

Thread CPU µs per realistic event (the emulator's seeded corpus, ~3.8 KB), the
best of ``--repeat`` rounds, for: framing the plain stream (256 KiB reads, as the
HTTP link reads), framing a gzip stream compressed as the emulator does (level 1,
a sync flush per 64 KiB), matching scenario 2's terms on a parsed tweet with the
plain-word lookup and with the token set, and routing one batch to scenario 2's
four subscriptions (``Routes``: the term filter's parse included). On a shared
machine compare rounds taken together, not with numbers from another time.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable

__all__ = ["corpus", "measure", "main"]

TERMS = ("love", "python", "coffee")


def corpus(n: int) -> list[bytes]:
    from flamingo.emulator.corpus import Corpus, dumps

    out = []
    for m in Corpus(seed=20130803, size="realistic").messages():
        out.append(dumps(m))
        if len(out) >= n:
            break
    return out


def _best(fn: Callable[[], int], repeat: int) -> float:
    """Thread CPU µs per event of ``fn`` (which returns its event count), best of ``repeat``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.thread_time()
        n = fn()
        best = min(best, (time.thread_time() - t) / max(n, 1) * 1e6)
    return round(best, 2)


def measure(frames: list[bytes], repeat: int = 3) -> dict[str, float]:
    import orjson

    from flamingo.dispatch.routing import Routes
    from flamingo.domain import matching
    from flamingo.domain.subscription import Subscription
    from flamingo.stream.framing import StreamDecoder
    from flamingo.stream.http_lines import READ_BYTES
    from flamingo.stream.messages import message_type

    body = b"".join(f + b"\r\n" for f in frames)
    reads = [body[i:i + READ_BYTES] for i in range(0, len(body), READ_BYTES)]
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    gz = [z.compress(body[i:i + 65536]) + z.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(body), 65536)]

    def decode(chunks: list[bytes], gzip: bool) -> Callable[[], int]:
        def run() -> int:
            d = StreamDecoder(gzip=gzip)
            n = 0
            for c in chunks:
                d.push(c)
                while d.pending:
                    n += len(d.step())
            return n
        return run

    types = [message_type(f) for f in frames]
    tweets = [orjson.loads(f) for f, t in zip(frames, types) if t == "tweet"]
    matcher = matching.TermMatcher(TERMS)

    def best_match(plain: bool) -> float:
        """µs per tweet in ``matches_haystack`` (the haystacks built outside the timing)."""
        m = matching.TermMatcher(TERMS)
        m._words = tuple(tuple((w, plain and p) for w, p in words) for words in m._words)
        best = float("inf")
        for _ in range(repeat):
            hays = [h for h in map(matching.haystack, tweets) if h is not None]  # fresh: tokens are cached
            t0 = time.thread_time()
            for h in hays:
                m.matches_haystack(h)
            best = min(best, (time.thread_time() - t0) / max(len(hays), 1) * 1e6)
        return round(best, 2)

    subs = [Subscription.create("raw"), Subscription.create("env", format="envelope"),
            Subscription.create("jobs", format="resque"), Subscription.create("terms", filter=list(TERMS))]

    def route() -> int:
        for i in range(0, len(frames), 500):
            r = Routes(frames[i:i + 500], types[i:i + 500], lambda terms: matcher)
            for s in subs:
                r.values_for(s)
        return len(frames)

    return {"frame_plain_us": _best(decode(reads, False), repeat),
            "frame_gzip_us": _best(decode(gz, True), repeat),
            "match_plain_words_us": best_match(True),
            "match_token_set_us": best_match(False),
            "route_scenario2_us": _best(route, repeat)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath_micro", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    for k, v in measure(corpus(a.events), a.repeat).items():
        print(f"{k:24} {v:8.2f} µs per event")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The emulator for the benchmark: ``python -m bench.emuhost --port P ...``.

The same ``flamingo.emulator.Emulator`` that ``flamingo emulator`` runs,
hosted here so that the latency run can know *when* each message was
written: with ``--stamps FILE`` the emulator records what it sends
(``EmulatorOptions(record=True)``) and a 1 ms loop stamps every newly sent
message with the wall clock, appending ``(digest, time)`` records to FILE
(see ``bench.stamps``). The session writes a message to its transport in the
same call that records it, so a stamp is at most one loop tick (plus the
reactor turn) after the write.
"""

from __future__ import annotations

import argparse
import sys
import time

from twisted.internet import reactor, task

from bench.stamps import StampWriter, digest

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.emuhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--size", default="realistic", choices=("realistic", "small"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--keepalive", type=float, default=30.0)
    p.add_argument("--source", default="twitter", choices=("twitter", "x"), help="x: X API v2 (bench/xscenario.py)")
    p.add_argument("--bearer-token")
    p.add_argument("--stamps", help="record send times of every message to this file")
    p.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long, whatever happens")
    a = p.parse_args(argv)

    from flamingo.emulator import Emulator, EmulatorOptions

    options = EmulatorOptions(seed=a.seed, rate=a.rate, size=a.size, keepalive=a.keepalive,
                              user=a.user, password=a.password, record=bool(a.stamps),
                              source=a.source, bearer_token=a.bearer_token)
    emu = Emulator(options, reactor=reactor)
    port = emu.start(host=a.host, port=a.port)
    print(f"listening {port}", flush=True)

    if a.stamps:
        writer = StampWriter(a.stamps)

        def stamp() -> None:
            now = time.time()
            for capture in emu.sent_messages:
                if capture:
                    writer.add([digest(m) for m in capture], now)
                    del capture[:]  # the session only ever extends this list
            writer.flush_if_due(now)

        loop = task.LoopingCall(stamp)
        loop.start(0.001, now=False)
        reactor.addSystemEventTrigger("before", "shutdown", lambda: (stamp(), writer.close()))

    reactor.callLater(a.max_seconds, reactor.stop)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

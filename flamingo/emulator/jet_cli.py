"""``flamingo emulator --source jetstream``: the Jetstream emulator from a shell."""

from __future__ import annotations

import argparse
import sys

import yaml

from flamingo.emulator.jet_corpus import MIXES
from flamingo.emulator.jet_faults import KINDS, JetFault
from flamingo.emulator.running import foreground_reactor, run_until_signal

__all__ = ["run", "add_arguments", "EPILOG"]

EPILOG = (
    "jetstream (--source jetstream): GET ws://HOST:PORT/subscribe?wantedCollections=..."
    "&wantedDids=...&cursor=TIME_US&compress=true\n"
    "faults (--fault KIND[:key=value,...] or --script FILE):\n"
    + "\n".join(f"  {kind:<10} {text}" for kind, text in KINDS.items())
    + "\n  keys: after=N times=K code=C seconds=T\n"
    "example:\n"
    "  flamingo emulator --source jetstream --rate 200 --port 6008 &\n"
    "  websocat 'ws://127.0.0.1:6008/subscribe?wantedCollections=app.bsky.feed.post'"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options only the Jetstream emulator reads (--seed, --rate, --host, --port,
    --fault and --script are shared)."""
    p.add_argument("--mix", choices=tuple(MIXES), default="network",
                   help="jetstream: the network's mix of events (default) or mostly posts")
    p.add_argument("--retain", type=int, default=200_000, metavar="N",
                   help="jetstream: events kept for cursor replays (default 200000)")
    p.add_argument("--users", type=int, default=2000, metavar="N",
                   help="jetstream: accounts the events come from (default 2000)")


def _faults(args: argparse.Namespace) -> list[JetFault]:
    faults = [JetFault.parse(spec) for spec in args.fault]
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        items = data.get("faults", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError("a script is a list of faults (or {faults: [...]})")
        faults += [JetFault.from_dict(item) for item in items]
    return faults


def run(args: argparse.Namespace) -> int:
    """Serve until TERM or INT; 2 for bad arguments, 1 when the port cannot be had."""
    try:
        faults = _faults(args)
    except (ValueError, OSError, yaml.YAMLError) as e:
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 2
    rate = args.rate if args.rate > 0 else 50.0  # Jetstream never waits for its readers
    from flamingo.emulator.jet_server import JetOptions, JetstreamEmulator

    reactor = foreground_reactor()
    emu = JetstreamEmulator(JetOptions(seed=args.seed, rate=rate, mix=args.mix, users=args.users,
                                       retain=args.retain), reactor=reactor)
    emu.faults.add(*faults)
    try:
        emu.start(args.host, args.port)
    except Exception as e:  # CannotListenError and friends
        print(f"flamingo emulator: {e}", file=sys.stderr)
        return 1
    print(f"Jetstream emulator listening on {emu.url} ({rate:g} events/s)", flush=True)
    print(f"  {emu.url}/subscribe?wantedCollections=app.bsky.feed.post&compress=true", flush=True)

    def shutdown(*_: object) -> None:
        d = emu.stop()
        if d is not None:
            d.addBoth(lambda _: reactor.stop())
        else:
            reactor.stop()

    run_until_signal(reactor, shutdown)
    return 0

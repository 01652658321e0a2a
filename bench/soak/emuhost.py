"""The soak's emulator: ``python -m bench.soak.emuhost``, faults played at runtime.

``flamingo emulator`` reads its faults once, at start; the soak decides them
while the stream runs. So this host runs the same ``Emulator`` and reads one
command per line on stdin (the harness holds the other end of the pipe):

* ``close``                 close every open stream (TCP close, as the service did)
* ``close_mid_message``     send half of the next message on every open stream, close
* ``stall SECONDS``         every open stream goes silent (not even keep-alives)
* ``status CODE TIMES``     the next TIMES attempts get CODE; open streams are closed
                            so that the daemon has to make those attempts
* ``quiet``                 from now on no new events: the listening emulator is
                            replaced, on the same port, by one replaying nothing
                            (keep-alives only), so the journal stops growing

Stream faults are added to the live sessions' fault lists (``StreamSession.faults``,
ordered by ``after``, counted in ``source_sent``): the session plays them with
its own code, exactly as a scripted fault.
"""

from __future__ import annotations

import argparse
import os
import sys

from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver

from flamingo.emulator import Emulator, EmulatorOptions
from flamingo.emulator.faults import Fault

__all__ = ["main", "Control"]


class Control(LineReceiver):
    """One command per line from the harness; answers ``ok <command>`` or ``error ...``."""

    delimiter = b"\n"

    def __init__(self, emu: Emulator, options: EmulatorOptions) -> None:
        self.emu = emu
        self.options = options

    def lineReceived(self, line: bytes) -> None:
        words = line.decode("ascii", "replace").split()
        if not words:
            return
        try:
            self.play(words[0], words[1:])
        except (ValueError, IndexError) as e:
            self.sendLine(f"error {line.decode(errors='replace')}: {e}".encode())
            return
        self.sendLine(b"ok " + line)

    def play(self, command: str, args: list[str]) -> None:
        sessions = list(self.emu.sessions)
        if command == "close":
            for s in sessions:
                s.close("soak: stream closed")
        elif command == "close_mid_message":
            self._inject(Fault("close_mid_message"))
        elif command == "stall":
            self._inject(Fault("stall", seconds=float(args[0])))
        elif command == "status":
            self.emu.faults.respond_status(int(args[0]), times=int(args[1]) if args[1:] else 1)
            for s in sessions:
                s.close("soak: stream closed before scripted status")
        elif command == "quiet":
            self._quiet()
        else:
            raise ValueError(f"unknown command {command!r}")

    def _inject(self, fault: Fault) -> None:
        for s in self.emu.sessions:
            s.faults.append(Fault(fault.kind, after=s.source_sent + 1, seconds=fault.seconds))
            s.faults.sort(key=lambda f: f.after)

    def _quiet(self) -> None:
        host, port = self.emu.host, self.emu.port
        quiet = EmulatorOptions(replay=os.devnull, keepalive=self.options.keepalive,  # nothing to replay
                                user=self.options.user, password=self.options.password)
        old = self.emu

        def relisten(_: object) -> None:
            self.emu = Emulator(quiet, reactor=reactor)
            self.emu.start(host, port)

        old.stop().addCallback(relisten)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak.emuhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--size", default="small", choices=("realistic", "small"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--keepalive", type=float, default=2.0)
    p.add_argument("--stall-queue", type=int, default=20000)
    a = p.parse_args(argv)
    options = EmulatorOptions(seed=a.seed, rate=a.rate, size=a.size, keepalive=a.keepalive,
                              user=a.user, password=a.password, stall_queue=a.stall_queue)
    emu = Emulator(options, reactor=reactor)
    emu.start(host=a.host, port=a.port)
    control = Control(emu, options)
    stdio.StandardIO(control)
    # the harness closing the pipe (it ended, however it ended) ends us too
    control.connectionLost = lambda reason: reactor.callLater(0, reactor.stop)  # type: ignore[method-assign]
    print(f"listening {a.port}", file=sys.stderr, flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

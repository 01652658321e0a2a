"""Start the Jetstream emulator inside a trial test, stopped at cleanup.

    emu = start_jetstream(self, seed=3)
    emu.make(100)          # events now (or rate=... for a timer)
    url = emu.url          # ws://127.0.0.1:PORT
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorTime

from flamingo.emulator.jet_server import JetOptions, JetstreamEmulator

__all__ = ["start_jetstream"]


def start_jetstream(testcase: Any, *, clock: IReactorTime | None = None, **options: Any) -> JetstreamEmulator:
    """A listening Jetstream emulator on 127.0.0.1 (random port); ``options``: ``JetOptions`` fields."""
    emu = JetstreamEmulator(JetOptions(**options), reactor=_reactor, clock=clock)
    emu.start("127.0.0.1", 0)
    testcase.addCleanup(emu.stop)
    return emu

"""Start a Streaming API emulator inside a trial test, stopped at cleanup.

    emu = start_emulator(self, seed=1, rate=0, size="small")
    url = emu.url + "/1.1/statuses/filter.json"
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorTime

from flamingo.emulator import Emulator, EmulatorOptions

__all__ = ["start_emulator"]


def start_emulator(
    testcase: Any,
    options: EmulatorOptions | None = None,
    *,
    clock: IReactorTime | None = None,
    reactor: Any = None,
    now: Any = None,
    **option_values: Any,
) -> Emulator:
    """A listening emulator on 127.0.0.1 (random port); ``testcase.addCleanup`` stops it.

    ``clock`` (a ``twisted.internet.task.Clock``) drives its timers;
    ``option_values`` are ``EmulatorOptions`` fields (``size`` defaults to
    ``small`` here, to keep tests fast).
    """
    if options is None:
        option_values.setdefault("size", "small")
        options = EmulatorOptions(**option_values)
    kwargs: dict[str, Any] = {"reactor": reactor or _reactor, "clock": clock}
    if now is not None:
        kwargs["now"] = now
    emu = Emulator(options, **kwargs)
    emu.start("127.0.0.1", 0)
    testcase.addCleanup(emu.stop)
    return emu

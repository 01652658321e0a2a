"""A faithful local stand-in for the Twitter Streaming API (v1.1) and X API v2.

``Emulator(EmulatorOptions(...), reactor=reactor).start(port=0)`` in a
running reactor, or ``flamingo emulator --help`` from a shell;
``EmulatorOptions(source="x")`` / ``--source x`` for X API v2 (``flamingo.emulator.x``).
"""

from flamingo.emulator.faults import Fault, FaultPlan
from flamingo.emulator.journal import ConnectionRecord
from flamingo.emulator.options import EmulatorOptions
from flamingo.emulator.server import Emulator, Endpoint

__all__ = ["Emulator", "EmulatorOptions", "Fault", "FaultPlan", "ConnectionRecord", "Endpoint"]

"""``twistd -n flamingo`` as a child process with an event log, for delivery checks across Redis setups.

The event log (kept on disk) is what was received; a ``raw`` subscription's
queue holds each event's bytes, so the two compare line for line.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, protocol, reactor

from tests.support.emulator import start_emulator

__all__ = ["ChildDaemon", "Child", "TWISTD", "spawn_twistd", "event_lines"]

TWISTD = str(Path(sys.executable).with_name("twistd"))


class Child(protocol.ProcessProtocol):
    """A child's output, and ``ended``: its exit code (or minus the signal that ended it)."""

    def __init__(self) -> None:
        self.out = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        v = reason.value
        self.ended.callback(v.exitCode if v.signal is None else -v.signal)


def spawn_twistd(config: Path, cwd: Path) -> tuple[Any, Child]:
    """``twistd -n flamingo -c config`` as a child process (unbuffered output, no pidfile)."""
    child = Child()
    proc = reactor.spawnProcess(child, TWISTD, [TWISTD, "-n", "--pidfile=", "flamingo", "-c", str(config)],
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, path=str(cwd))
    return proc, child


def event_lines(events_dir: Path) -> list[bytes]:
    """Every line of the event log's files, in order."""
    data = b"".join(p.read_bytes() for p in sorted(events_dir.glob("event-*")))
    return [line for line in data.split(b"\n") if line]


class ChildDaemon:
    """One daemon: its directory, namespace, config; ``start()``/``stop()``; what it logged."""

    def __init__(self, owner: Any, redis: dict[str, Any], *, rate: float = 300, seed: int = 11,
                 prefix: str = "c", emulator: Any = None, namespace: str | None = None) -> None:
        self.owner = owner
        self.dir = Path(tempfile.mkdtemp(prefix=f"flamingo-{prefix}-"))
        owner.addCleanup(shutil.rmtree, self.dir, True)
        self.ns = namespace or prefix + uuid.uuid4().hex[:8]
        self.emu = emulator or start_emulator(owner, seed=seed, rate=rate, size="small", keepalive=1.0,
                                              user="flamingo", password="pw")
        cfg = {
            "username": "flamingo", "password": "pw", "stream": "filter",
            "api": {"url": self.emu.url}, "data_dir": str(self.dir / "data"),
            "logging": {"dest": str(self.dir / "flamingo.log"), "level": "INFO",
                        "event": {"dir": str(self.dir / "events"), "size": 1000}},
            "redis": {"namespace": self.ns, "timeout": 1, **redis},
            "web": {"enabled": False}, "console": {"enabled": False},
            "wader": {"min_interval": 0},
        }
        self.config = self.dir / "flamingo.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.proc: Any = None
        self.child: Child | None = None
        owner.addCleanup(self._kill)

    def start(self) -> None:
        self.proc, self.child = spawn_twistd(self.config, self.dir)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """TERM: the daemon flushes to Redis; fails the test on a non-zero exit or a traceback."""
        assert self.child is not None
        self.proc.signalProcess("TERM")
        code = yield self.child.ended
        out = self.child.out.decode(errors="replace")
        self.owner.assertEqual(code, 0, out[-3000:])
        self.owner.assertNotIn("Traceback (most recent call last)", out)
        self.owner.assertNotIn("Traceback (most recent call last)", self.log())

    def _kill(self) -> None:
        if self.proc is not None and self.proc.pid is not None:
            self.proc.signalProcess("KILL")

    def event_log(self) -> list[bytes]:
        return event_lines(self.dir / "events")

    def log(self) -> str:
        path = self.dir / "flamingo.log"
        return path.read_text(errors="replace") if path.exists() else ""

"""Flamingo's log output: level filter, destination file, reopen for logrotate.

twistd owns the global log beginner (stdout with ``-n``, ``twistd.log``
otherwise); a plugin cannot replace its observer. So Flamingo does two things:

* its own loggers (``flamingo.logs.logger(namespace)``) drop events below the
  configured level at the source, so the level applies to every destination;
* every observer already on the global publisher when the daemon starts
  (twistd's own: stdout or ``twistd.log``) is put behind a gate that applies
  the same level to everyone else's events, so the INFO lines of Twisted
  ("Starting factory ...") and txredisapi follow ``logging.level`` too;
* when ``logging.dest`` names a file, an extra observer writes there, in the
  original's format ``[2010-07-20 05:58:07, INFO] - message``, and can be
  reopened (SIGHUP) after logrotate moved the file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO

from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

from flamingo.config import LoggingConfig

__all__ = ["LEVELS", "level_for", "logger", "chatty_logger", "set_level", "current_level", "FlamingoLogs",
           "FileLogObserver", "LevelGate", "gate_observers", "ungate_observers"]

#: config name -> twisted LogLevel (DEBUG < INFO < WARN < ERROR < FATAL)
LEVELS: dict[str, LogLevel] = {
    "DEBUG": LogLevel.debug,
    "INFO": LogLevel.info,
    "WARN": LogLevel.warn,
    "ERROR": LogLevel.error,
    "FATAL": LogLevel.critical,
}
_NAMES = {v: k for k, v in LEVELS.items()}

_level: LogLevel = LogLevel.info


def level_for(name: str) -> LogLevel:
    """``"warn"``/``"WARNING"``/``"INFO"`` -> LogLevel; ValueError for anything else."""
    norm = name.upper()
    if norm == "WARNING":
        norm = "WARN"
    if norm not in LEVELS:
        raise ValueError(f"unknown log level {name!r} (one of {', '.join(LEVELS)})")
    return LEVELS[norm]


def set_level(name: str) -> None:
    """Change the level at runtime (config at start, or the console)."""
    global _level
    _level = level_for(name)


def current_level() -> str:
    return _NAMES[_level]


class _LevelLogger(Logger):
    """A twisted Logger that drops events below Flamingo's current level."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level < _level:
            return
        super().emit(level, format, **kwargs)


class _ChattyLogger(_LevelLogger):
    """For a library's routine INFO lines (ClientService's "Scheduling retry N ..."
    on every attempt): shown at DEBUG, so an outage is one ERROR line from
    Flamingo, not one line per retry; warnings and errors pass unchanged."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        super().emit(LogLevel.debug if level == LogLevel.info else level, format, **kwargs)


def chatty_logger(namespace: str) -> Logger:
    """A logger for a library's per-attempt lines: its INFO becomes DEBUG."""
    return _ChattyLogger(namespace=namespace)


def logger(namespace: str, source: object = None) -> Logger:
    """The logger every Flamingo module uses: ``log = logger(__name__)``."""
    return _LevelLogger(namespace=namespace, source=source)


@implementer(ILogObserver)
class LevelGate:
    """Passes on the events at or above Flamingo's current level.

    Compares equal to the observer it wraps, so whoever added that observer
    (twistd, a test runner) still removes it with ``removeObserver(observer)``.
    """

    def __init__(self, observer: ILogObserver) -> None:
        self.observer = observer

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level", LogLevel.info) >= _level:
            self.observer(event)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LevelGate):
            return bool(other.observer == self.observer)
        return bool(other == self.observer)

    def __hash__(self) -> int:
        try:
            return hash(self.observer)
        except TypeError:  # an unhashable callable
            return id(self.observer)


def _observers(publisher: LogPublisher) -> list[ILogObserver]:
    # Twisted has no public way to list a publisher's observers; its list is
    # the one place where twistd's own observer can be reached.
    return publisher._observers


def gate_observers(publisher: LogPublisher) -> list[LevelGate]:
    """Put every observer of ``publisher`` behind a LevelGate; returns the gates."""
    gates = []
    observers = _observers(publisher)
    for i, observer in enumerate(list(observers)):
        if not isinstance(observer, LevelGate):
            gate = LevelGate(observer)
            observers[i] = gate
            gates.append(gate)
    return gates


def ungate_observers(publisher: LogPublisher, gates: list[LevelGate]) -> None:
    """Undo ``gate_observers`` for the gates still there."""
    observers = _observers(publisher)
    for gate in gates:
        for i, observer in enumerate(observers):
            if observer is gate:
                observers[i] = gate.observer


def format_line(event: LogEvent) -> str:
    """``[YYYY-mm-dd HH:MM:SS, LEVEL] - message``, plus the traceback of a failure."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.get("log_time", time.time())))
    level = _NAMES.get(event.get("log_level", LogLevel.info), "INFO")
    text = formatEvent(event) or ""
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text = f"{text}\n{failure.getTraceback()}".rstrip("\n")
        except Exception as e:  # a broken failure must not break logging: the line says so
            text = f"{text}\n(traceback unavailable: {type(e).__name__})"
    return f"[{when}, {level}] - {text}\n"


@implementer(ILogObserver)
class FileLogObserver:
    """Writes formatted lines to a path; ``reopen()`` for logrotate."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path).expanduser() if path else None
        self._file: IO[str] | None = None
        self.reopen()

    def reopen(self) -> None:
        if self.path is None:
            self._file = sys.stdout
            return
        old = self._file
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")
        if old is not None:
            old.close()

    def __call__(self, event: LogEvent) -> None:
        if self._file is None:
            return
        try:
            self._file.write(format_line(event))
        except (OSError, ValueError):
            pass  # a full disk must not take the daemon down through its logger

    def close(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None


class FlamingoLogs:
    """Start/stop/reopen Flamingo's own log destination from ``logging`` config."""

    def __init__(self, config: LoggingConfig, publisher: LogPublisher | None = None) -> None:
        self.config = config
        self.publisher = publisher if publisher is not None else globalLogPublisher
        self.file: FileLogObserver | None = None
        self._observer: LevelGate | None = None
        self._gates: list[LevelGate] = []

    @property
    def dest(self) -> str | None:
        d = self.config.dest
        return None if d in (None, "", "stdout", "-") else d

    def start(self) -> None:
        set_level(self.config.level)
        if not self._gates:
            self._gates = gate_observers(self.publisher)
        if self.dest is None or self._observer is not None:
            return  # stdout: twistd's own observer writes it
        self.file = FileLogObserver(self.dest)
        self._observer = LevelGate(self.file)
        self.publisher.addObserver(self._observer)

    def reopen(self) -> None:
        if self.file is not None:
            self.file.reopen()

    def stop(self) -> None:
        ungate_observers(self.publisher, self._gates)
        self._gates = []
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self.file is not None:
            self.file.close()
            self.file = None

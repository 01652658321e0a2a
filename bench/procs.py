"""Child processes of a benchmark run: started in their own session, always reaped.

Every child goes through ``Children.spawn`` so that whatever ends the run
(an exception, Ctrl-C, SIGTERM, the global deadline) terminates and then
kills each one by its own process group id.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from flamingo._redis_server import RedisServer, RedisServerError

__all__ = ["Children", "children", "free_port", "wait_port", "RedisProc", "EmulatorProc",
           "venv_python", "BenchError"]

ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """Something the run needs did not work; the message says what."""


def venv_python() -> str:
    """The interpreter running the bench (the venv's, under ``make bench``)."""
    return sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None,
              what: str = "process") -> None:
    """Block until something accepts on 127.0.0.1:port (start-up poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} before listening")
        time.sleep(0.05)
    raise BenchError(f"{what} did not listen on port {port} within {timeout:.0f} s")


class Children:
    """The run's subprocesses; ``reap_all()`` at exit, on signals and on errors."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="flamingo-bench-logs-"))
        self._installed = False

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        atexit.register(self.reap_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def spawn(self, argv: Sequence[str], name: str, env: dict[str, str] | None = None,
              stdout: int | IO | None = None, cwd: str | Path | None = None,
              stdin: int | IO | None = None) -> subprocess.Popen:
        """Start ``argv`` in a new session; stderr (and stdout unless given) go to a log file."""
        self.install()
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            list(argv), stdout=stdout if stdout is not None else log, stderr=log,
            stdin=stdin if stdin is not None else subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,
            env=env, cwd=str(cwd) if cwd else None)
        proc.bench_name = name  # type: ignore[attr-defined]
        proc.bench_log = self.logdir / f"{name}.log"  # type: ignore[attr-defined]
        log.close()
        self.procs.append(proc)
        return proc

    def log_tail(self, proc: subprocess.Popen, lines: int = 15) -> str:
        try:
            text = Path(proc.bench_log).read_text(errors="replace")  # type: ignore[attr-defined]
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        """SIGCONT (it may be paused), SIGTERM, then SIGKILL its process group."""
        if proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                _killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        else:  # the leader is gone; its group may not be
            _killpg(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def reap_all_but(self, keep: subprocess.Popen | None) -> None:
        """Stop every child except ``keep`` (the run's Redis, between steps)."""
        for proc in list(reversed(self.procs)):
            if proc is not keep:
                self.stop(proc, timeout=5.0)

    def reap_all(self) -> None:
        for proc in list(reversed(self.procs)):
            try:
                self.stop(proc, timeout=5.0)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL me if the bench dies (even by SIGKILL). Linux only."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # our child's own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


children = Children()


class RedisProc:
    """A private redis-server (no persistence) on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.dir = tempfile.mkdtemp(prefix="flamingo-bench-redis-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisProc:
        # the package's command line, spawned here so it dies with the bench
        server = RedisServer(self.port, ("--protected-mode", "no"), directory=self.dir, host=self.host)
        try:
            argv = server.argv()
        except RedisServerError as e:
            raise BenchError(str(e)) from None
        self.proc = children.spawn(argv, name=f"redis-{self.port}")
        wait_port(self.port, 10, self.proc, "redis-server")
        return self

    def client(self, **kw):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host=self.host, port=self.port, **kw)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            children.stop(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class EmulatorProc:
    """The Streaming API emulator as a subprocess (``python -m flamingo.emulator``)."""

    user = "bench"
    password = "bench-password"

    def __init__(self, size: str, seed: int, rate: float = 0.0, extra: Sequence[str] = ()) -> None:
        self.size = size
        self.seed = seed
        self.rate = rate
        self.extra = list(extra)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [venv_python(), "-m", "flamingo.emulator", "--port", str(self.port),
                "--host", "127.0.0.1", "--rate", _num(self.rate), "--size", self.size,
                "--seed", str(self.seed), "--user", self.user, "--password", self.password,
                *self.extra]

    def start(self) -> EmulatorProc:
        self.proc = children.spawn(self.argv(), name=f"emulator-{self.port}", cwd=ROOT)
        try:
            wait_port(self.port, 30, self.proc, "emulator")
        except BenchError as e:
            raise BenchError(f"{e}\n{children.log_tail(self.proc)}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            children.stop(self.proc)
            self.proc = None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)

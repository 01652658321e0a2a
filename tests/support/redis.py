"""A real, private redis-server for the test session.

Started on first use on a free loopback port with persistence off, stopped
at interpreter exit. Tests isolate themselves by namespace (or FLUSHALL in
``fresh()``), never by assuming a server is already running.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["redis_server_binary", "RedisServer", "shared_redis"]


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    try:  # the PyPI package `redis-server` ships the binary
        import redis_server  # type: ignore[import-not-found]

        return redis_server.REDIS_SERVER_PATH
    except ImportError:
        raise RuntimeError(
            "redis-server not found: run `make install` (Debian package or PyPI redis-server)"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process; ``stop()``/``pause()``/``resume()`` for outage tests."""

    def __init__(self, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.args = args  # extra redis-server options (e.g. "--appendonly", "yes")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.dir = tempfile.mkdtemp(prefix="flamingo-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--loglevel", "warning", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.02)  # start-up poll, not a timing assertion
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(7).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str | bytes) -> bytes:
        """A blocking one-shot command (RESP), for test set-up and assertions."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            f = s.makefile("rb")
            return _read_reply(f)

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_reply(f) -> object:  # type: ignore[no-untyped-def]
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+",):
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


_shared: RedisServer | None = None


def shared_redis() -> RedisServer:
    """The session's redis-server, started on first use."""
    global _shared
    if _shared is None or not _shared.ping():
        _shared = RedisServer().start()
        atexit.register(_shared.cleanup)
    return _shared

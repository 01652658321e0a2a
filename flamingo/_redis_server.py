"""A private redis-server on a free loopback port, persistence off.

One starter for everything that needs a throwaway Redis: ``make run``
(flamingo.demo), the tests (tests/support/redis.py) and the bench. The
binary comes from PATH, else from the PyPI package ``redis-server`` (its
``REDIS_SERVER_PATH``). Blocking on purpose: it runs before (or outside) the
reactor.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from flamingo._types import RespReply

__all__ = ["RedisServer", "RedisServerError", "redis_server_binary", "free_port"]


class RedisServerError(RuntimeError):
    """redis-server missing, exited, or not answering PING."""


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else from the PyPI package that ships it."""
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redis_server  # type: ignore[import-not-found]

        return str(redis_server.REDIS_SERVER_PATH)
    except ImportError:
        raise RedisServerError("redis-server not found: run `make install` "
                               "(Debian package redis-server or PyPI package redis-server)") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``stop()``/``pause()``/``resume()`` for outage tests.

    ``args`` are extra redis-server options (e.g. ``("--appendonly", "yes")``),
    given last so they win. Without ``directory`` a temporary one is made and
    ``cleanup()`` removes it.
    """

    def __init__(self, port: int | None = None, args: tuple[str, ...] = (),
                 directory: Path | str | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.args = tuple(args)
        self._own_dir = directory is None
        self.dir = str(directory) if directory is not None else tempfile.mkdtemp(prefix="flamingo-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [redis_server_binary(), "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--loglevel", "warning", *self.args]

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start and wait until it answers PING (RedisServerError otherwise)."""
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise RedisServerError(f"redis-server exited with status {code}")
            time.sleep(0.02)  # start-up poll
        self.stop()
        raise RedisServerError(f"redis-server did not answer PING within {timeout:g} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(7).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str | bytes) -> RespReply:
        """A blocking one-shot command (RESP); the decoded reply, errors raised."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            with s.makefile("rb") as f:
                return _read_reply(f)

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
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
        """Stop, and remove the data directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _read_reply(f: BinaryIO) -> RespReply:
    line = f.readline()
    if not line:  # the server closed the connection (CLIENT KILL, shutdown)
        raise ConnectionResetError("Redis closed the connection before replying")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        return f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")

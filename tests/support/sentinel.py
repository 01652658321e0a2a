"""Local Redis replication for failover tests: a master, a replica and three sentinels.

All real ``redis-server`` processes on loopback (a sentinel is ``redis-server
<conf> --sentinel``), with ``down-after-milliseconds`` 1000 so a failover
takes seconds. ``ready()`` blocks until the sentinels know the replica and
each other (their quorum needs it); call it before killing the master.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from flamingo._redis_server import RedisServer, redis_server_binary

__all__ = ["Sentinel", "SentinelGroup"]

NAME = "flamingo-test"


class Sentinel(RedisServer):
    """One ``redis-server --sentinel`` watching ``master``."""

    def __init__(self, master: RedisServer, down_after_ms: int = 1000) -> None:
        super().__init__()
        self.conf = Path(self.dir) / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
            f"sentinel monitor {NAME} 127.0.0.1 {master.port} 2\n"
            f"sentinel down-after-milliseconds {NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {NAME} 10000\n"
            f"sentinel parallel-syncs {NAME} 1\n")

    def argv(self) -> list[str]:
        return [redis_server_binary(), str(self.conf), "--sentinel", "--loglevel", "warning"]

    def master(self) -> tuple[str, int] | None:
        reply = self.command("SENTINEL", "get-master-addr-by-name", NAME)
        return (reply[0].decode(), int(reply[1])) if reply else None


class SentinelGroup:
    """Master + replica + three sentinels; ``cleanup()`` stops them all."""

    name = NAME

    def __init__(self) -> None:
        self.master = RedisServer(args=("--appendonly", "no"))
        self.replica = RedisServer(args=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.sentinels: list[Sentinel] = []

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        self._poll(lambda: b"master_link_status:up" in self.replica.command("INFO", "replication"),
                   "the replica to sync")
        self.sentinels = [Sentinel(self.master).start() for _ in range(3)]  # type: ignore[misc]
        return self

    def ready(self) -> None:
        """Every sentinel knows the replica and the two other sentinels."""
        for s in self.sentinels:
            self._poll(lambda s=s: len(s.command("SENTINEL", "replicas", NAME) or []) >= 1
                       and len(s.command("SENTINEL", "sentinels", NAME) or []) >= 2,
                       "the sentinels to know each other and the replica")

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def current_master(self) -> tuple[str, int] | None:
        for s in self.sentinels:
            try:
                return s.master()
            except OSError:
                continue
        return None

    def kill_master(self) -> None:
        assert self.master.process is not None
        os.kill(self.master.process.pid, signal.SIGKILL)
        self.master.process.wait()
        self.master.process = None

    def cleanup(self) -> None:
        for s in self.sentinels:
            s.cleanup()
        self.replica.cleanup()
        self.master.cleanup()

    @staticmethod
    def _poll(cond: object, what: str, timeout: float = 30.0) -> None:
        """Set-up only (before the reactor test begins): a bounded poll of a real condition."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():  # type: ignore[operator]
                    return
            except OSError:
                pass
            time.sleep(0.05)  # set-up poll, not a timing assumption
        raise AssertionError(f"timed out waiting for {what}")

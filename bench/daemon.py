"""flamingod under test: a config in a temp dir, subscriptions in Redis, ``twistd -n flamingo``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench.procs import ROOT, BenchError, children, free_port, wait_port

__all__ = ["SubSpec", "Flamingod", "twistd_binary"]

NAMESPACE = "flamingo"


class SubSpec:
    """A subscription to create before the daemon starts."""

    def __init__(self, name: str, format: str = "raw", filter: Sequence[str] = (),
                 types: Sequence[str] = ()) -> None:
        self.name = name
        self.format = format
        self.filter = tuple(filter)
        self.types = tuple(types)

    def subscription(self):  # type: ignore[no-untyped-def]
        from flamingo.domain.subscription import Subscription

        return Subscription.create(self.name, format=self.format, filter=list(self.filter) or None,
                                   types=list(self.types) or None)

    def queue_key(self) -> str:
        return self.subscription().queue_key(NAMESPACE)


def twistd_binary() -> str:
    here = Path(sys.executable).parent / "twistd"
    if here.exists():
        return str(here)
    found = shutil.which("twistd")
    if not found:
        raise BenchError("twistd not found next to the interpreter or on PATH")
    return found


class Flamingod:
    """One daemon process with its own data dir, event log and web port."""

    def __init__(self, emulator_url: str, user: str, password: str, redis_port: int,
                 subs: Sequence[SubSpec], gzip: bool, stream: str = "sample",
                 overrides: dict[str, object] | None = None, base_dir: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-bench-daemon-", dir=base_dir))
        self.web_port = free_port()
        self.subs = list(subs)
        self.redis_port = redis_port
        self.config = {
            "username": user,
            "password": password,
            "auth": "basic",
            "stream": stream,
            "api": {"url": emulator_url},
            "data_dir": str(self.dir / "data"),
            "logging": {"dest": str(self.dir / "flamingod.log"), "level": "INFO",
                        "event": {"dir": str(self.dir / "events")}},
            "redis": {"host": f"127.0.0.1:{redis_port}", "namespace": NAMESPACE},
            "web": {"enabled": True, "host": f"127.0.0.1:{self.web_port}"},
            "console": {"enabled": False},
            "wader": {"gzip": gzip},
        }
        for dotted, value in (overrides or {}).items():
            node = self.config
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        self.proc: subprocess.Popen | None = None

    @property
    def event_dir(self) -> Path:
        return self.dir / "events"

    @property
    def log_path(self) -> Path:
        return self.dir / "flamingod.log"

    def queue_keys(self) -> list[str]:
        return [s.queue_key() for s in self.subs]

    def seed_redis(self, client) -> None:  # type: ignore[no-untyped-def]
        """Subscriptions straight into the store's keys (as the REST API would write them)."""
        pipe = client.pipeline(transaction=True)
        for spec in self.subs:
            sub = spec.subscription()
            key = f"{NAMESPACE}:subscription:{sub.name}"
            pipe.delete(key)
            pipe.hset(key, mapping=sub.to_hash())
            pipe.sadd(f"{NAMESPACE}:subscriptions", sub.name)
        pipe.execute()

    def start(self, client) -> Flamingod:  # type: ignore[no-untyped-def]
        self.seed_redis(client)
        return self.launch()

    def launch(self) -> Flamingod:
        """Start the process (again) with the same config, data and event log; no Redis needed."""
        path = self.dir / "flamingo.yml"
        path.write_text(yaml.safe_dump(self.config))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = children.spawn(
            [twistd_binary(), "-n", "--pidfile", str(self.dir / "twistd.pid"), "flamingo", "-c", str(path)],
            name=f"flamingod-{self.web_port}", env=env, cwd=ROOT)
        try:
            wait_port(self.web_port, 30, self.proc, "flamingod")
        except BenchError as e:
            raise BenchError(f"{e}\n{self.tail()}") from None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        out = children.log_tail(self.proc, lines) if self.proc else ""
        try:
            log = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            log = []
        return "\n".join([out, *log]).strip()

    def stop(self) -> None:
        if self.proc is not None:
            children.stop(self.proc, timeout=15)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

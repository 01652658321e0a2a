"""The soak's processes: Redis (AOF, killable, wipeable), the emulator, flamingod, a consumer.

Every child goes through ``bench.procs.children`` (own session, reaped
whatever ends the run); the daemon is ``bench.daemon.Flamingod`` and Redis
is started with ``flamingo._redis_server.RedisServer``'s command line.
The consumer is a thread that empties the queues as a real consumer would
(so Redis stays small over ten minutes) and remembers each value's digest.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.daemon import NAMESPACE, Flamingod, SubSpec
from bench.procs import BenchError, EmulatorProc, children, free_port, venv_python, wait_port
from bench.soak.eventlog import count_lines, digest, segment_files, unwrap
from flamingo._redis_server import RedisServer

__all__ = ["SoakRedis", "SoakEmulator", "SoakDaemon", "Consumer", "readiness", "journal_head",
           "find_gap_values"]


class SoakRedis:
    """redis-server with an append-only file in a directory that outlives restarts."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server = RedisServer(free_port(), ("--appendonly", "yes", "--appendfsync", "everysec",
                                                "--protected-mode", "no"), directory=self.dir)
        self.port = self.server.port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = children.spawn(self.server.argv(), name=f"redis-{self.port}")
        deadline = time.monotonic() + 30
        while not self.server.ping():  # start-up poll (loading the AOF may take a moment)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not come back on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9 (a crash: what the AOF has is what survives)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            children.stop(self.proc)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def wipe(self) -> None:
        """Remove the data files (call while it is down): it comes back empty."""
        for p in self.dir.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def command(self, *args: str) -> Any:
        return self.server.command(*args)

    def client(self) -> redis.Redis:
        """No timeouts on replies and no retries: a command is sent once, its reply always read
        (a SIGSTOPped Redis just makes it wait), so no popped value can be lost or read twice."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=None,
                           socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


class SoakEmulator(EmulatorProc):
    """``bench.soak.emuhost``: the emulator, taking fault commands on its stdin."""

    def argv(self) -> list[str]:
        return [venv_python(), "-m", "bench.soak.emuhost", "--port", str(self.port),
                "--rate", str(self.rate), "--size", self.size, "--seed", str(self.seed),
                "--user", self.user, "--password", self.password, *self.extra]

    def start(self) -> SoakEmulator:
        self.proc = children.spawn(self.argv(), name=f"emulator-{self.port}",
                                   stdin=subprocess.PIPE)
        wait_port(self.port, 30, self.proc, "emulator")
        return self

    def send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()


class SoakDaemon:
    """flamingod with the soak's config: small rotated event-log files, short timeouts."""

    def __init__(self, emulator: SoakEmulator, redis_port: int, subs: Sequence[SubSpec],
                 base_dir: Path, stall_timeout: float) -> None:
        self.flamingod = Flamingod(
            emulator.url, emulator.user, emulator.password, redis_port, subs, gzip=True,
            stream="sample", base_dir=str(base_dir),
            overrides={
                "logging.event.size": 2000,  # a new file every second or so
                "logging.event.gzip": True,
                "redis.timeout": 2.0,
                "redis.memory_max": 1 << 20,  # the backlog is read back from disk after ~1 s
                "wader.stall_timeout": stall_timeout,
                "wader.min_interval": 0.5,
                "wader.backoff.http": {"initial": 2.0, "factor": 2.0, "cap": 8.0},
                "wader.backoff.rate_limit": {"initial": 5.0, "factor": 2.0, "cap": 10.0},
            })
        self.runs = 0

    @property
    def pid(self) -> int | None:
        proc = self.flamingod.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def event_dir(self) -> Path:
        return self.flamingod.event_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.flamingod.web_port}"

    def seed(self, client: redis.Redis) -> None:
        self.flamingod.seed_redis(client)

    def start(self) -> None:
        self.runs += 1
        self.flamingod.launch()

    def kill(self) -> None:
        proc = self.flamingod.proc
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            children.stop(proc)
            self.flamingod.proc = None

    def term(self, timeout: float = 60.0) -> int | None:
        """TERM and wait; the exit status (None: it had to be killed)."""
        proc = self.flamingod.proc
        if proc is None:
            return None
        os.kill(proc.pid, signal.SIGTERM)
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        children.stop(proc)
        self.flamingod.proc = None
        return code

    def disk_full(self, on: bool) -> None:
        """RLIMIT_FSIZE 0 on the running daemon (writes fail with EFBIG), or back to unlimited."""
        pid = self.pid
        if pid is not None:
            soft = 0 if on else resource.RLIM_INFINITY
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))

    def rss(self) -> int:
        try:
            return psutil.Process(self.pid).memory_info().rss if self.pid else 0
        except psutil.Error:
            return 0

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """(status, body); status 0 when the daemon does not answer."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ValueError):
            return 0, b""

    def status(self) -> dict[str, Any] | None:
        code, body = self.get("/status.json")
        try:
            return json.loads(body) if code == 200 else None
        except ValueError:
            return None

    def sink_checkpoint_copy(self) -> int | None:
        """The sink's local copy of its checkpoint (``sink-<ns>.checkpoint``, wherever it lives)."""
        for d in (self.flamingod.dir / "data", self.event_dir):
            for p in d.glob("sink-*.checkpoint"):
                try:  # "<position>" or "<position>:<epoch>", zero-padded
                    m = re.match(r"\s*(\d+)", p.read_text())
                except OSError:
                    continue
                if m:
                    return int(m.group(1))
        return None

    def log_text(self) -> str:
        parts = []
        for p in (self.flamingod.log_path, *children.logdir.glob("flamingod-*.log")):
            try:
                parts.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)


def readiness(daemon: SoakDaemon) -> tuple[bool, str]:
    """Is the daemon ready (able to deliver)? ``/ready`` where it exists; else ``/health``
    plus the sink's state in ``/status.json`` (connected, no error, no backlog)."""
    code, body = daemon.get("/ready")
    if code != 404:
        return code == 200, f"/ready {code} {body[:300].decode(errors='replace')}"
    health, hbody = daemon.get("/health")
    status = daemon.status() or {}
    sink = (status.get("delivery") or {}).get("redis") or {}
    backlog = status.get("journal_backlog")
    ok = health == 200 and sink.get("connected") is True and not sink.get("error") and backlog == 0
    return ok, (f"/health {health} {hbody[:200].decode(errors='replace')}; sink connected="
                f"{sink.get('connected')} error={sink.get('error')!r} backlog={backlog}")


def journal_head(event_dir: Path) -> int:
    """The last position on disk (read from the files: the daemon may be down)."""
    files = segment_files(event_dir)
    for first, path in reversed(files):
        n = count_lines(path)
        if n:
            return first + n - 1
    return files[-1][0] - 1 if files else 0


def find_gap_values(doc: Any) -> list[int]:
    """Every ``gap_events`` number anywhere in a status document."""
    found: list[int] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "gap_events" and isinstance(v, int):
                found.append(v)
            else:
                found += find_gap_values(v)
    elif isinstance(doc, list):
        for v in doc:
            found += find_gap_values(v)
    return found


class Consumer(threading.Thread):
    """Empties the queues (``MULTI LRANGE LTRIM EXEC``) and samples the daemon's RSS and status.

    Fault code that kills Redis holds ``lock`` so no read is in flight at that moment.
    """

    def __init__(self, redis_: SoakRedis, queues: dict[str, tuple[str, str]], daemon: SoakDaemon,
                 interval: float = 0.3) -> None:
        super().__init__(name="soak-consumer", daemon=True)
        self.redis = redis_
        self.queues = queues  # name -> (redis key, format)
        self.daemon_ = daemon
        self.interval = interval
        self.lock = threading.Lock()
        self.got: dict[str, array] = {name: array("Q") for name in queues}  # type: ignore[type-arg]
        self.max_rss = 0
        self.gap_events_seen = 0  # the largest gap_events of the current daemon run
        self.gap_events_total = 0  # summed over daemon runs
        self.lost_events_seen = 0
        self._halt = threading.Event()
        self._last_sample = 0.0
        self._run_seen = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        while not self._halt.is_set():
            with self.lock:
                self.drain()
            self.sample()
            self._halt.wait(self.interval)

    def drain(self, batch: int = 10000) -> tuple[int, int | None]:
        """One pass over the queues (caller holds ``lock``); (values read, checkpoint value or None)."""
        n = 0
        checkpoint = None
        try:
            client = self.redis.client()
            try:
                while True:
                    pipe = client.pipeline(transaction=True)
                    for key, _ in self.queues.values():
                        pipe.lrange(key, 0, batch - 1)
                        pipe.ltrim(key, batch, -1)
                    pipe.get(f"{NAMESPACE}:sink:checkpoint")
                    replies = pipe.execute()
                    more = False
                    for i, (name, (_, fmt)) in enumerate(self.queues.items()):
                        values = replies[2 * i]
                        self.got[name].extend(digest(unwrap(fmt, v)) for v in values)
                        n += len(values)
                        more = more or len(values) == batch
                    checkpoint = _first_int(replies[-1])
                    if not more:
                        return n, checkpoint
            finally:
                client.close()
        except (redis.ConnectionError, redis.ResponseError):
            return n, checkpoint  # down, loading, or restarting: next time

    def sample(self) -> None:
        now = time.monotonic()
        self.max_rss = max(self.max_rss, self.daemon_.rss())
        if now - self._last_sample < 2.0:
            return
        self._last_sample = now
        status = self.daemon_.status()
        if status is None:
            return
        if self.daemon_.runs != self._run_seen:  # a new process counts from zero
            self._run_seen = self.daemon_.runs
            self.gap_events_total += self.gap_events_seen
            self.gap_events_seen = 0
        self.gap_events_seen = max([self.gap_events_seen, *find_gap_values(status)])
        journal = (status.get("delivery") or {}).get("journal") or {}
        if isinstance(journal.get("lost_events"), int):  # not journaled (disk full), this run
            self.lost_events_seen = max(self.lost_events_seen, journal["lost_events"])

    @property
    def gap_events(self) -> int:
        return self.gap_events_total + self.gap_events_seen


def _first_int(raw: Any) -> int | None:
    if raw is None:
        return None
    digits = "".join(c if c.isdigit() else " " for c in raw.decode(errors="replace")).split()
    return int(digits[0]) if digits else None

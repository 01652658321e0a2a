"""The limits of this machine, measured in the same run on the same data.

- Redis: ``redis-benchmark`` pipelined RPUSH with the corpus's mean payload
  size (what Redis itself can take);
- loopback HTTP: the emulator's stream read by ``curl -s`` for a bounded
  time (what the emulator and loopback can give). curl's output goes to a
  pipe where only bytes and newlines are counted, so events are counted
  exactly and the corpus's mean message size comes out of the same read;
- the page cache: what one thread can ``writev`` into a file in the event
  log's directory (the journal's own write pattern: 64 messages and their
  newlines per call, a new file, optionally an ``fdatasync`` every second as
  ``journal.fsync: everysec`` does). On some virtual machines this, not the
  disk, caps the event log.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.procs import BenchError, children

__all__ = ["redis_benchmark", "curl_stream", "StreamSample", "page_cache_write", "WriteSample"]


def redis_benchmark(port: int, payload: int, requests: int, clients: int = 4, pipeline: int = 64,
                    timeout: float = 120.0) -> float:
    """RPUSH requests/s of ``payload``-byte values (the key is emptied after)."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise BenchError("redis-benchmark not found (Debian: apt-get install redis-tools)")
    argv = [exe, "-h", "127.0.0.1", "-p", str(port), "-t", "rpush", "-P", str(pipeline),
            "-c", str(clients), "-d", str(max(1, payload)), "-n", str(requests), "-q", "--csv"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except subprocess.TimeoutExpired:
        raise BenchError(f"redis-benchmark took longer than {timeout:.0f} s") from None
    except subprocess.CalledProcessError as e:
        raise BenchError(f"redis-benchmark failed: {e.stderr.strip()[:200]}") from None
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "DEL", "mylist"], capture_output=True, timeout=30) \
            if shutil.which("redis-cli") else None
    for row in csv.reader(io.StringIO(out)):
        if row and row[0].upper().startswith("RPUSH"):
            return float(row[1])
    raise BenchError(f"cannot read redis-benchmark output: {out[:200]!r}")


class StreamSample:
    """What one bounded read of the stream gave."""

    def __init__(self, nbytes: int, messages: int, seconds: float) -> None:
        self.bytes = nbytes
        self.messages = messages
        self.seconds = seconds

    @property
    def events_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def mean_message_bytes(self) -> float:
        return self.bytes / self.messages if self.messages else 0.0


def curl_stream(url: str, user: str, password: str, seconds: float, gzip: bool = False,
                skip_seconds: float = 0.5) -> StreamSample:
    """Read ``url`` with curl for ``seconds``; count (decompressed) bytes and messages.

    The first ``skip_seconds`` (connection set-up, the emulator rendering its
    pool) are read but not counted.
    """
    exe = shutil.which("curl")
    if exe is None:
        raise BenchError("curl not found (Debian: apt-get install curl)")
    argv = [exe, "-s", "-N", "--max-time", str(seconds + skip_seconds + 1), "-u", f"{user}:{password}"]
    if gzip:
        argv.append("--compressed")
    argv.append(url)
    proc = children.spawn(argv, name="curl", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    nbytes = lines = 0
    t0 = time.monotonic()
    counting_from = None
    end = None
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            now = time.monotonic()
            if not chunk:
                break
            if counting_from is None:
                if now - t0 >= skip_seconds:
                    counting_from = now
                continue
            nbytes += len(chunk)
            lines += chunk.count(b"\n")
            if now - counting_from >= seconds:
                end = now
                break
    finally:
        children.stop(proc, timeout=5)
    if counting_from is None or not lines:
        raise BenchError(f"curl read nothing from {url}")
    elapsed = (end or time.monotonic()) - counting_from
    return StreamSample(nbytes, lines, elapsed)


class WriteSample:
    """What one bounded run of ``writev`` calls gave."""

    def __init__(self, nbytes: int, seconds: float, message_bytes: float) -> None:
        self.bytes = nbytes
        self.seconds = seconds
        self.message_bytes = message_bytes

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def events_per_s(self) -> float:
        """Messages (and their newline) per second at the corpus's mean size."""
        return self.bytes / self.seconds / (self.message_bytes + 1) if self.seconds else 0.0


def page_cache_write(directory: str | Path, seconds: float, message_bytes: float, sync_every: float = 0.0,
                     per_call: int = 64) -> WriteSample:
    """One thread ``writev``-ing ``per_call`` messages of ``message_bytes`` (and their
    newlines) at a time into a new file under ``directory`` for ``seconds``;
    ``sync_every`` > 0 adds an ``fdatasync`` that often. The file is removed after."""
    size = max(1, int(round(message_bytes)))
    msg = (b"x" * (size - 1)) + b"}"
    iov = [msg, b"\n"] * per_call
    Path(directory).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="pagecache-", suffix=".log", dir=str(directory))
    try:
        written = 0
        t0 = time.monotonic()
        synced = t0
        end = t0 + seconds
        now = t0
        while now < end:
            for _ in range(16):
                written += os.writev(fd, iov)
            now = time.monotonic()
            if sync_every and now - synced >= sync_every:
                os.fdatasync(fd)
                synced = now = time.monotonic()
        if sync_every:
            os.fdatasync(fd)
        elapsed = time.monotonic() - t0
    finally:
        os.close(fd)
        os.unlink(name)
    return WriteSample(written, elapsed, size)

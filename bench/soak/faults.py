"""The soak's faults: what each kind of ``schedule.KINDS`` does to the running processes.

Each function plays one fault to its end (Redis back, daemon started again,
limit lifted) and writes what it saw into the ``FaultRecord``. Faults that
take Redis away hold the consumer's lock, so the consumer never has a read
in flight when Redis dies (a popped value is then either read or still there).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.soak.eventlog import SEGMENT_NAME, count_lines, segment_files
from bench.soak.verdict import FaultRecord

if TYPE_CHECKING:  # pragma: no cover
    from bench.soak.run import Soak

__all__ = ["FAULTS"]


def redis_kill(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    with soak.consumer.lock:
        soak.redis.kill()
        time.sleep(params.get("down", 2.0))
        soak.redis.start()


def redis_stop(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    soak.redis.pause()
    try:
        time.sleep(params.get("seconds", 5.0))
    finally:
        soak.redis.resume()


def redis_wipe(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    """Read everything Redis has (and its checkpoint), kill it, remove its files, start it empty."""
    with soak.consumer.lock:
        _, read_upto = soak.consumer.drain()
        soak.redis.kill()
        soak.redis.wipe()
        time.sleep(params.get("down", 2.0))
        # read while Redis is down (nothing can commit), after any last reply reached the sink
        local = soak.daemon.sink_checkpoint_copy()
        if read_upto is not None and local is not None and read_upto != local:
            rec.wipe_window = (min(read_upto, local) + 1, max(read_upto, local))
        rec.notes.append(f"consumer read up to {read_upto}, sink's local copy {local}")
        soak.redis.start()


def daemon_kill(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    soak.daemon.kill()
    time.sleep(params.get("down", 1.0))
    soak.start_daemon(rec)


def daemon_term(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    soak.stop_daemon(rec)
    soak.start_daemon(rec)


def daemon_restart_redis_down(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    """A backlog in the journal, the daemon restarted before Redis returns."""
    with soak.consumer.lock:
        soak.redis.kill()
        time.sleep(params.get("before", 3.0))
        soak.stop_daemon(rec)
        soak.start_daemon(rec)
        time.sleep(params.get("after", 4.0))
        soak.redis.start()


def stream(command: str) -> Callable[[Soak, dict[str, float], FaultRecord], None]:
    def play(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
        soak.emulator.send(command.format(**{k: f"{v:g}" for k, v in params.items()}))
    return play


def stream_stall(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    seconds = soak.settings.stall_timeout + params.get("extra", 2.0)
    soak.emulator.send(f"stall {seconds:g}")
    time.sleep(seconds)


def disk_full(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    soak.daemon.disk_full(True)
    try:
        time.sleep(params.get("seconds", 5.0))
    finally:
        soak.daemon.disk_full(False)


def delete_segment(soak: Soak, params: dict[str, float], rec: FaultRecord) -> None:
    """Redis down, a backlog builds; one closed file the sink has not delivered yet is deleted
    (copied aside first: its positions are the gap the daemon must report)."""
    with soak.consumer.lock:
        soak.redis.kill()
        try:
            victim = None
            deadline = time.monotonic() + 30
            while victim is None and time.monotonic() < deadline:
                time.sleep(1.0)
                victim = _needed_closed_file(soak, params.get("pick", 0.5))
            if victim is None:
                rec.notes.append("no closed file beyond the checkpoint to delete")
                return
            copy = soak.deleted_dir / victim.name
            shutil.copy2(victim, copy)
            victim.unlink()
            first = int(SEGMENT_NAME.match(victim.name).group(2))  # type: ignore[union-attr]
            n = count_lines(copy)
            rec.deleted = (first, first + n - 1)
            rec.notes.append(f"deleted {victim.name} ({n} events)")
            time.sleep(1.0)
        finally:
            soak.redis.start()


def _needed_closed_file(soak: Soak, pick: float) -> Path | None:
    """A gzipped (so closed and finished) file wholly beyond the checkpoint, not among the newest."""
    status = soak.daemon.status() or {}
    cp = ((status.get("delivery") or {}).get("redis") or {}).get("checkpoint")
    if not isinstance(cp, int):
        cp = soak.daemon.sink_checkpoint_copy()
    if cp is None:
        return None
    files = segment_files(soak.daemon.event_dir)[:-3]  # not the current one, nor those just closed
    candidates = [p for first, p in files if first > cp + 1 and p.name.endswith(".gz")]
    if len(candidates) < 2:
        return None
    return candidates[min(len(candidates) - 1, int(pick * len(candidates)))]


FAULTS: dict[str, Callable[[Soak, dict[str, float], FaultRecord], None]] = {
    "redis-kill": redis_kill,
    "redis-stop": redis_stop,
    "redis-wipe": redis_wipe,
    "daemon-kill": daemon_kill,
    "daemon-term": daemon_term,
    "daemon-restart-redis-down": daemon_restart_redis_down,
    "stream-close": stream("close"),
    "stream-close-mid": stream("close_mid_message"),
    "stream-503": stream("status 503 {times}"),
    "stream-420": stream("status 420 1"),
    "stream-stall": stream_stall,
    "disk-full": disk_full,
    "delete-segment": delete_segment,
}

"""The Redis sink's checkpoint outside Redis: the local copy, and where to resume.

The local copy (``<data_dir>/sink-<ns>.checkpoint``, fixed width, rewritten in
place) is used when Redis lost the checkpoint (restarted without persistence).
A checkpoint of another journal (its epoch differs) or beyond what the journal
held at start (the journal lost its tail in a machine crash) is not trusted:
delivery restarts from what the journal holds (``transaction.resume_point``).
"""

from __future__ import annotations

import os
from pathlib import Path

from flamingo.dispatch.journal import Journal
from flamingo.dispatch.transaction import parse_checkpoint, resume_point
from flamingo.logs import logger

__all__ = ["BadCheckpoint", "CheckpointMirror", "CHECKPOINT_FILE", "resume_after"]

log = logger("flamingo.sink")

CHECKPOINT_FILE = "sink-{namespace}.checkpoint"


class BadCheckpoint(Exception):
    """The checkpoint key holds something that is not a checkpoint."""


class CheckpointMirror:
    """The local copy of the checkpoint (in the journal's state dir)."""

    def __init__(self, journal: Journal, namespace: str) -> None:
        self.journal = journal
        self.name = CHECKPOINT_FILE.format(namespace=namespace)
        self._fd: int | None = None

    def open(self) -> None:
        """Open (or create) the file; a failure is a WARN, the sink runs without a copy."""
        path = Path(self.journal.state_dir) / self.name
        try:
            old = Path(self.journal.dir) / self.name  # where earlier versions kept it
            if old != path and old.exists():
                if not path.exists():
                    os.replace(old, path)
                    log.info("moved {old} to {new} (state files live in data_dir)", old=str(old), new=str(path))
                else:
                    old.unlink()
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.fchmod(self._fd, 0o600)  # a copy moved from the event dir may be 0644
            if self.read() is None:
                # a first start: remember where this sink's history begins, so a crash
                # before Redis was ever reached still replays from here
                self.write(self.journal.last_seq)
        except OSError as e:
            log.warn("cannot keep a local copy of the checkpoint in {p}: {e}", p=str(path), e=e)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write(self, cp: int) -> None:
        if self._fd is not None:
            try:
                os.pwrite(self._fd, b"%020d:%s\n" % (cp, self.journal.epoch.encode().ljust(16)[:16]), 0)
            except OSError as e:
                log.debug("cannot update the local copy of the checkpoint: {e}", e=e)

    def read(self) -> tuple[int, str | None] | None:
        if self._fd is None:
            return None
        try:
            data = os.pread(self._fd, 64, 0)
            return parse_checkpoint(data.split(b"\n")[0].strip()) if data.strip() else None
        except (OSError, ValueError):
            return None

    def last_committed(self) -> int | None:
        """The last position the copy says this journal's sink committed (None: unknown)."""
        mirror = self.read()
        return mirror[0] if mirror is not None and mirror[1] in (None, self.journal.epoch) else None


def resume_after(raw: bytes | None, *, key: str, journal: Journal, mirror: CheckpointMirror,
                 written_upto: int, origin: int) -> tuple[int, str | None]:
    """Where to resume, from the checkpoint in Redis (``raw``) or the local copy, and the
    verdict of ``resume_point`` (None on a first run). ``origin``: where a first run starts."""
    j = journal
    try:
        parsed = parse_checkpoint(raw)
    except ValueError:
        raise BadCheckpoint(f"{key} holds {(raw or b'')[:40]!r}, not a checkpoint: "
                            "delete it, or set it to the last position delivered") from None
    source = "Redis"
    if parsed is None:
        parsed = mirror.read()
        if parsed is None:
            # first run: start with what comes next (events already in the journal
            # from an earlier run without any sink history are not replayed)
            return min(j.last_seq, origin), None
        source = "the local copy"
        log.warn("Redis has no checkpoint; resuming from the local copy ({cp})", cp=parsed[0])
    pos, verdict = resume_point(parsed, epoch=j.epoch, epoch_recorded=j.epoch_recorded,
                                first_seq=j.first_seq, last_seq=j.last_seq,
                                opened_last_seq=j.opened_last_seq, written_upto=written_upto)
    if verdict == "other_journal":
        log.error("JOURNAL CHANGED: the checkpoint in {src} ({cp}) belongs to another journal "
                  "(epoch {theirs}, this one is {ours}): it was re-created or wiped; delivering "
                  "everything it holds, from position {start}", src=source, cp=parsed[0],
                  theirs=parsed[1], ours=j.epoch, start=pos + 1)
    elif verdict == "adopted":
        log.warn("journal.state was missing (upgrade or lost): adopting the checkpoint's position "
                 "{cp} from {src}", cp=parsed[0], src=source)
    elif verdict == "rolled_back":
        log.error("JOURNAL ROLLED BACK: the checkpoint in {src} ({cp}) is beyond what the journal held "
                  "at start ({last}): the local disk lost events Redis had got (machine crash?); "
                  "positions {a}..{cp} are reused by new events, delivering from {a}",
                  src=source, cp=parsed[0], last=j.opened_last_seq, a=pos + 1)
    return pos, verdict

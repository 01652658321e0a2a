"""``journal.state``: the journal's next position and epoch, kept beside the sink's checkpoint.

The events' files name their first positions, so positions survive without
this file; it matters when every segment has been deleted (a spool after
release) and for the **epoch**, the journal's identity, which the sink writes
into its checkpoint so a checkpoint of another (wiped, re-created) journal is
recognised instead of trusted. It lives in the state directory (``data_dir``),
0600, replaced atomically.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs
import orjson

from flamingo.dispatch.segments import DIR_MODE, FILE_MODE
from flamingo.logs import logger

__all__ = ["STATE_FILE", "SavedState", "load_state", "write_state", "move_state"]

log = logger("flamingo.journal")

STATE_FILE = "journal.state"


@attrs.frozen
class SavedState:
    """What ``journal.state`` held: ``found`` False when missing or unreadable."""

    next_seq: int = 1
    epoch: str | None = None
    found: bool = False


def load_state(state_dir: Path) -> SavedState:
    """Read ``journal.state``; a missing or damaged file is an empty state, never an error."""
    try:
        loaded = orjson.loads((state_dir / STATE_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return SavedState()
    if not isinstance(loaded, dict):
        return SavedState()
    try:
        next_seq = int(loaded.get("next_seq", 1))
    except (TypeError, ValueError):
        next_seq = 1
    epoch = loaded.get("epoch")
    return SavedState(next_seq, epoch if isinstance(epoch, str) and epoch else None, found=bool(loaded))


def write_state(state_dir: Path, next_seq: int, epoch: str, durable: bool) -> None:
    """Replace ``journal.state`` atomically; ``durable`` syncs it (a new epoch must outlive a crash).
    A failure is a warning: the segment names still hold the positions."""
    tmp = state_dir / (STATE_FILE + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, orjson.dumps({"next_seq": next_seq, "epoch": epoch}))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, state_dir / STATE_FILE)
    except OSError as e:
        log.warn("cannot write {p}: {e}", p=str(state_dir / STATE_FILE), e=e)


def move_state(events_dir: Path, state_dir: Path) -> None:
    """Make the state directory (0700) and move an older ``journal.state`` out of the events."""
    if state_dir == events_dir:
        return
    state_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    old, new = events_dir / STATE_FILE, state_dir / STATE_FILE
    if old.exists() and not new.exists():
        shutil.move(str(old), str(new))
        log.info("moved {old} to {new} (state files live in data_dir)", old=str(old), new=str(new))
    elif old.exists():
        old.unlink()  # a stale copy: the one in data_dir is newer

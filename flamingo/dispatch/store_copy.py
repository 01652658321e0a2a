"""The store's local copy: params and subscriptions in ``<data_dir>/store-<ns>.json``.

Why: a daemon restarted while Redis is down must still know where events go
(the sink delivers nothing until it knows the subscription set) and what to
ask the streaming API for. The copy is the last state this daemon saw in
Redis; it is only read at start, and only used while Redis does not answer,
or to re-seed a Redis that came back empty. Redis, when it answers with its
marker, is the truth.

Written atomically (temporary file, fsync, rename, fsync of the directory),
mode 0600: subscription names and tracked terms are the operator's business.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import orjson

from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError
from flamingo.logs import logger

__all__ = ["LocalCopy", "CopyFile", "copy_path", "read_copy", "write_copy", "encode", "decode"]

FORMAT = 1

log = logger("flamingo.dispatch.store")


@attrs.frozen
class LocalCopy:
    """What the store knew: ``params[stream][param] = values``, subscriptions by name."""

    params: dict[str, dict[str, list[str]]]
    subscriptions: dict[str, Subscription]
    epoch: str | None = None

    @property
    def empty(self) -> bool:
        return not self.params and not self.subscriptions


def copy_path(data_dir: Path, namespace: str) -> Path:
    return Path(data_dir) / f"store-{namespace}.json"


def encode(copy: LocalCopy) -> bytes:
    """Deterministic bytes (sorted), so an unchanged copy is never rewritten."""
    doc = {"format": FORMAT, "epoch": copy.epoch,
           "params": {s: {p: sorted(v) for p, v in sorted(ps.items()) if v}
                      for s, ps in sorted(copy.params.items())},
           "subscriptions": {n: s.to_hash() for n, s in sorted(copy.subscriptions.items())}}
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def decode(data: bytes) -> LocalCopy:
    """The copy in ``data``; ValueError naming what is wrong."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a store copy of format 1")
    params: dict[str, dict[str, list[str]]] = {}
    for stream, ps in (doc.get("params") or {}).items():
        if not isinstance(ps, dict):
            raise ValueError(f"params of {stream!r} is not a mapping")
        params[str(stream)] = {str(p): sorted(str(v) for v in vals) for p, vals in ps.items() if vals}
    subs: dict[str, Subscription] = {}
    for name, fields in (doc.get("subscriptions") or {}).items():
        if not isinstance(fields, dict):
            raise ValueError(f"subscription {name!r} is not a mapping")
        try:
            subs[str(name)] = Subscription.from_hash(str(name), fields)
        except ValidationError as e:
            raise ValueError(f"subscription {name!r}: {e}") from None
    epoch = doc.get("epoch")
    return LocalCopy(params=params, subscriptions=subs, epoch=str(epoch) if epoch else None)


def read_copy(path: Path) -> LocalCopy | None:
    """The copy at ``path``, or None when there is none; ValueError/OSError when unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode(data)


def write_copy(path: Path, copy: LocalCopy) -> None:
    """Replace ``path`` atomically with ``copy`` (0600); OSError on failure."""
    write_private(path, encode(copy))


def write_private(path: Path, data: bytes) -> None:
    """Atomic write of a private file: temp file (0600), fsync, rename, fsync of the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an old temp file left with other bits
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@attrs.define
class CopyFile:
    """The copy on disk for one store: read once at start, rewritten when it differs.

    A failure to read or write is one WARN (per distinct reason), never an
    error for the store: Redis stays the source it was before.
    """

    path: Path
    last: LocalCopy | None = None  # what the file holds (as read, or as last written)
    _written: bytes | None = None
    _error: str | None = None

    def read(self) -> LocalCopy | None:
        try:
            self.last = read_copy(self.path)
        except (OSError, ValueError) as e:
            log.warn("store copy {path} unreadable ({e}); ignored (Redis will be the only source)",
                     path=str(self.path), e=getattr(e, "strerror", None) or str(e))
            return None
        self._written = encode(self.last) if self.last is not None else None
        return self.last

    def save(self, copy: LocalCopy) -> None:
        data = encode(copy)
        if data == self._written:
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(self.path, data)
        except OSError as e:
            why = e.strerror or str(e)
            if why != self._error:
                log.warn("cannot write the store copy {path}: {why} (a restart while Redis is down "
                         "would not know the subscriptions)", path=str(self.path), why=why)
            self._error = why
            return
        self._written, self._error, self.last = data, None, copy

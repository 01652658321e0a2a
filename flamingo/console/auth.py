"""Who may open the console: the SSH host key and the ``authorized_keys`` file.

Public keys only, read again at every login, so adding or removing a key
needs no restart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs
from twisted.conch.checkers import IAuthorizedKeysDB
from twisted.conch.ssh import keys
from zope.interface import implementer

from flamingo.logs import logger

__all__ = ["load_or_create_host_key", "AuthorizedKeysFile", "parse_authorized_keys"]

log = logger("flamingo.console")


def load_or_create_host_key(path: Path) -> keys.Key:
    """The console's SSH host key, generated (ed25519) on first start, mode 0600."""
    path = Path(path).expanduser()
    if path.exists():
        key: keys.Key = keys.Key.fromFile(str(path))
        return key
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.toString("openssh"))
    log.info("console: generated SSH host key {path}", path=str(path))
    return key


_KEY_TYPES = (b"ssh-", b"ecdsa-", b"sk-")


@implementer(IAuthorizedKeysDB)
@attrs.define
class AuthorizedKeysFile:
    """``authorized_keys``, read again at every login.

    Whatever the user name, the key decides.  Lines with options
    (``from=...``, ``command=...``, ``restrict``) are skipped: they ask for
    limits this console cannot enforce, so such keys get no access at all.
    """

    path: Path

    def getAuthorizedKeys(self, avatarId: bytes) -> Iterator[keys.Key]:
        path = Path(self.path).expanduser()
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warn("console: cannot read authorized keys {path}: {err}",
                     path=str(path), err=e.strerror)
            return iter(())
        return iter(list(parse_authorized_keys(data.splitlines())))


def parse_authorized_keys(lines: Iterable[bytes]) -> Iterator[keys.Key]:
    for line in lines:
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        if not line.startswith(_KEY_TYPES):
            log.warn("console: authorized key with options skipped (options are not supported)")
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            yield keys.Key.fromString(b" ".join(parts[:2]))
        except (keys.BadKeyError, ValueError) as e:
            log.warn("console: unreadable authorized key skipped: {err}", err=str(e))

"""The user's own programs as child processes of the test's reactor: ``flamingo`` and OpenSSH.

Output is collected whole; the result is ``(exit code, stdout, stderr)``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, protocol, reactor

__all__ = ["FLAMINGO", "SSH", "KEYGEN", "Collect", "clean", "keygen", "run", "run_ssh"]

FLAMINGO = str(Path(sys.executable).with_name("flamingo"))
SSH = shutil.which("ssh") or "/usr/bin/ssh"
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[A-Za-z=>]")


def clean(out: bytes) -> str:
    """Terminal output without escape sequences or carriage returns."""
    return ANSI.sub(b"", out).replace(b"\r", b"").decode("utf-8", "replace")


def keygen(directory: Path, name: str) -> Path:
    """A fresh ed25519 key pair ``name`` / ``name.pub`` in ``directory``."""
    path = directory / name
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return path


class Collect(protocol.ProcessProtocol):
    """Writes ``stdin`` and closes it; ``done`` fires with the exit code."""

    def __init__(self, stdin: bytes) -> None:
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.done: defer.Deferred[int] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if isinstance(reason.value, error.ProcessTerminated) else 0
        self.done.callback(code)


def run(args: list[str], env: dict[str, str], stdin: bytes = b"") -> defer.Deferred:
    """(exit code, stdout, stderr) of `flamingo ARGS`, while this reactor keeps serving."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": env.get("HOME", "/nonexistent"),
                **env}
    p = Collect(stdin)
    reactor.spawnProcess(p, FLAMINGO, [FLAMINGO, *args], env=full_env)
    return p.done.addCallback(lambda code: (code, p.out.decode(), p.err.decode()))


def run_ssh(port: int, key: Path | None, stdin: bytes, *extra: str,
            tty: bool = True) -> defer.Deferred[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of OpenSSH's client logging in to the console on ``port``."""
    args = [SSH, "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10", "-p", str(port)]
    args += ["-tt"] if tty else ["-T"]
    if key is not None:
        args += ["-o", "IdentitiesOnly=yes", "-i", str(key)]
    args += [*extra, "someone@127.0.0.1"]
    p = Collect(stdin)
    reactor.spawnProcess(p, SSH, args, env={"PATH": os.environ.get("PATH", "/usr/bin")})
    return p.done.addCallback(lambda code: (code, clean(p.out), clean(p.err)))

"""The console's SSH server: sessions, the factory, and the service that listens.

Sessions without a PTY, or asking to run a command, are told why there is no
console and closed with exit status 1, rather than crashing the channel.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from twisted.application import service
from twisted.conch import manhole_ssh
from twisted.conch.checkers import SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import keys
from twisted.conch.ssh.session import SSHSessionProcessProtocol
from twisted.cred.portal import Portal
from twisted.internet import defer, endpoints
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.python.failure import Failure

from flamingo.app import App
from flamingo.console.auth import AuthorizedKeysFile, load_or_create_host_key
from flamingo.console.manhole import FlamingoManhole
from flamingo.logs import logger

__all__ = ["FlamingoSession", "make_factory", "ConsoleService", "console_service"]

log = logger("flamingo.console")


class _Discard:
    """A transport for a refused session: what the client sends is dropped."""

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Iterable[bytes]) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def closeStdin(self) -> None:
        pass


def _refuse(proto: SSHSessionProcessProtocol, message: bytes, clock: IReactorTime) -> None:
    """Tell an SSH client why there is no console for it, then close with status 1."""
    session = proto.session
    # Input that arrives before the channel closes goes nowhere.
    proto.makeConnection(_Discard())

    def close() -> None:
        session.write(message)
        session.conn.sendRequest(session, b"exit-status", struct.pack(">L", 1))
        session.loseConnection()

    clock.callLater(0, close)


class FlamingoSession(manhole_ssh.TerminalSession):
    """A terminal session that explains, rather than crashes, without a PTY or for exec."""

    clock: IReactorTime  # set by make_factory's subclass
    _pty = False
    _terminal: insults.ServerProtocol | None = None

    def getPty(self, term: bytes, windowSize: tuple[int, int, int, int], attrs: list[tuple[int, int]]) -> None:
        super().getPty(term, windowSize, attrs)  # type: ignore[no-untyped-call]  # conch leaves it untyped
        self._pty = True

    def openShell(self, proto: SSHSessionProcessProtocol) -> None:
        if not self._pty:
            _refuse(proto, b"flamingo console: a terminal is needed; connect with `ssh -t`"
                           b" (or `flamingo console`)\r\n", self.clock)
            return
        transport = self.transportFactory(
            proto, self.chainedProtocolFactory(),  # type: ignore[no-untyped-call]  # conch's
            IConchUser(self.original), self.width, self.height)
        self._terminal = terminal = transport.chainedProtocol
        manhole_proto = terminal.terminalProtocol
        if isinstance(manhole_proto, FlamingoManhole):
            manhole_proto.on_quit = lambda: proto.processEnded(Failure(ProcessDone(0)))

    def execCommand(self, proto: SSHSessionProcessProtocol, cmd: bytes) -> None:
        _refuse(proto, b"flamingo console: commands are not run here; open the console"
                       b" with `ssh -t` and no command (or `flamingo console`)\r\n", self.clock)

    def windowChanged(self, newWindowSize: tuple[int, int, int, int]) -> None:
        if self._terminal is not None and self._terminal.terminalProtocol is not None:
            rows, cols = newWindowSize[:2]
            self._terminal.terminalProtocol.terminalSize(cols, rows)

    def eofReceived(self) -> None:
        proto = self._terminal.terminalProtocol if self._terminal is not None else None
        if isinstance(proto, FlamingoManhole):
            proto.eof_received()

    def closed(self) -> None:
        """Nothing to release: the terminal transport went with the channel."""


def make_factory(app: App, host_key: keys.Key, authorized_keys: Path) -> manhole_ssh.ConchFactory:
    """An SSH factory serving the console, public-key logins only."""
    realm = manhole_ssh.TerminalRealm()

    class Session(FlamingoSession):
        clock = app.reactor

    realm.sessionFactory = Session
    def terminal() -> insults.ServerProtocol:
        return insults.ServerProtocol(FlamingoManhole, app)

    # conch calls it with no arguments: any factory of a ServerProtocol does, not just the class
    realm.chainedProtocolFactory = terminal  # type: ignore[assignment]
    # TerminalRealm implements IRealm (requestAvatar) without declaring it
    checker = SSHPublicKeyChecker(AuthorizedKeysFile(Path(authorized_keys)))
    portal = Portal(realm, [checker])  # type: ignore[arg-type]
    factory = manhole_ssh.ConchFactory(portal)
    # Class-level dicts on ConchFactory: give this instance its own.
    # (conch annotates both as dict[bytes, bytes]; SSHFactory reads Key objects from them)
    factory.publicKeys = {host_key.sshType(): host_key.public()}
    factory.privateKeys = {host_key.sshType(): host_key}  # type: ignore[dict-item]
    return factory


class ConsoleService(service.Service):
    """Listens on ``console.listen`` while running; ``.port`` is the listening port."""

    name = "console"

    def __init__(self, app: App) -> None:
        self.app = app
        self.port: IListeningPort | None = None
        self.factory: manhole_ssh.ConchFactory | None = None

    @property
    def host_key_path(self) -> Path:
        c = self.app.config
        return Path(c.console.host_key or Path(c.data_dir) / "console_host_key").expanduser()

    def startService(self) -> defer.Deferred[None]:
        super().startService()  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        c = self.app.config.console
        key = load_or_create_host_key(self.host_key_path)
        self.factory = make_factory(self.app, key, Path(c.authorized_keys).expanduser())
        endpoint = endpoints.serverFromString(self.app.reactor, c.listen)
        d: defer.Deferred[IListeningPort] = endpoint.listen(self.factory)

        def listening(port: IListeningPort) -> None:
            self.port = port
            log.info("console: SSH on {listen} (public keys from {keys})",
                     listen=c.listen, keys=str(c.authorized_keys))

        def failed(f: Failure) -> None:
            # Like the web service: the daemon goes on without its console.
            log.error("console: cannot listen on {listen}: {err}; running without the console",
                      listen=c.listen, err=f.getErrorMessage())

        return d.addCallbacks(listening, failed)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted leaves it untyped
        port, self.port = self.port, None
        if port is None:
            return None
        stopped: defer.Deferred[None] | None = port.stopListening()
        return stopped


def console_service(app: App) -> ConsoleService | None:
    """The console's service for ``app``, or None when ``console.enabled`` is false."""
    if not app.config.console.enabled:
        return None
    return ConsoleService(app)

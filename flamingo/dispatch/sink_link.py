"""The Redis sink's connection: Twisted's ``ClientService`` with the sink's handshake.

``ClientService`` reconnects (the retry policy is the sink's backoff) and calls
the handshake as its ``prepareConnection``; a connection is the sink's only
once the handshake accepted it. The handshake, on each new connection:

* ``AUTH`` / ``SELECT`` if configured, ``INFO server`` (the ``run_id``),
  ``CLIENT ID``, ``SCRIPT LOAD`` of the delivery script;
* fencing: ``CLIENT KILL ID <previous id>`` when Redis is the same server
  (same ``run_id``), so a transaction of the previous connection still
  buffered in Redis cannot be applied after the checkpoint is read (after a
  restart the old id may belong to another client: no kill). A user without
  ``CLIENT`` rights (NOPERM) turns fencing off, once, with a WARN; the
  script's checkpoint compare-and-set still refuses a late batch;
* ``GET`` of the checkpoint, handed to the sink, which decides where to
  resume (and may refuse the connection: a checkpoint that is not one).

The endpoint (:class:`AttemptEndpoint`) is asked for a connection on every
attempt: with Sentinel or a cluster it is a ``ResolvingEndpoint``
(``redis_address.py``) that asks again where the master is; each attempt is
bounded by the sink's timeout.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import ClientService
from twisted.internet import defer, protocol
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from flamingo.dispatch.redis_address import abort
from flamingo.dispatch.resp import ResponseError, RespProtocol, command
from flamingo.dispatch.transaction import SCRIPT, SCRIPT_SHA
from flamingo.logs import chatty_logger, logger

__all__ = ["RedisLink", "AttemptEndpoint", "run_id_of"]

log = logger("flamingo.sink")

#: The sink's answer to a handshake: given the connection and the raw checkpoint, accept it
#: (the sink's state is updated) or raise to refuse it.
Ready = Callable[[RespProtocol, bytes | None], None]


class _Connections(protocol.Factory):
    """ClientService's factory: one RespProtocol per connection (the newest is remembered)."""

    def __init__(self) -> None:
        self.newest: RespProtocol | None = None

    def buildProtocol(self, addr: IAddress | None) -> RespProtocol:
        self.newest = RespProtocol()
        return self.newest


class _Guard(protocol.Protocol):
    """Between the transport and ClientService's protocol.

    ClientService has no transition for "disconnected" while it is connecting
    or waiting (a connection lost during the handshake, or closed after the
    handshake refused it would raise ``NoTransition`` in the reactor): until
    the handshake accepted it, a lost connection is told to the Redis protocol
    only (which fails the handshake's requests)."""

    def __init__(self, wrapped: IProtocol, conn: RespProtocol, accepted: Callable[[RespProtocol], bool]) -> None:
        self.wrapped = wrapped
        self.conn = conn
        self.accepted = accepted

    def makeConnection(self, transport: ITransport) -> None:
        self.transport = transport
        self.wrapped.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.accepted(self.conn):
            self.wrapped.connectionLost(reason)
        else:
            self.conn.connectionLost(reason)


class _GuardFactory(protocol.Factory):
    noisy = False  # no "Starting factory" line per attempt

    def __init__(self, factory: IProtocolFactory, connections: _Connections,
                 accepted: Callable[[RespProtocol], bool]) -> None:
        self.factory = factory
        self.connections = connections
        self.accepted = accepted

    def buildProtocol(self, addr: IAddress | None) -> protocol.Protocol | None:
        wrapped = self.factory.buildProtocol(addr) if addr is not None else None  # endpoints give one
        conn = self.connections.newest
        if wrapped is None or conn is None:
            return None
        return _Guard(wrapped, conn, self.accepted)


@implementer(IStreamClientEndpoint)
class AttemptEndpoint:
    """One connection attempt: through the endpoint ``target()`` gives for it (one that may
    resolve the address again), bounded by ``timeout``, behind a :class:`_Guard`; ``failed``
    hears of a failed attempt."""

    def __init__(self, target: Callable[[], IStreamClientEndpoint], clock: IReactorTime, timeout: float,
                 connections: _Connections, accepted: Callable[[RespProtocol], bool],
                 failed: Callable[[Failure], None], where: str = "") -> None:
        self.failed = failed
        self.where = where
        self.target = target
        self.clock = clock
        self.timeout = timeout
        self.connections = connections
        self.accepted = accepted

    def __repr__(self) -> str:
        return f"Redis ({self.where})"

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        d = self.target().connect(_GuardFactory(protocolFactory, self.connections, self.accepted))
        d.addTimeout(self.timeout, self.clock)

        def unwrap(guard: IProtocol) -> IProtocol:
            assert isinstance(guard, _Guard)
            return guard.wrapped

        def report(failure: Failure) -> Failure:
            self.failed(failure)
            return failure
        return d.addCallbacks(unwrap, report)


class _Service(ClientService):
    # ClientService's own line per retry ("Scheduling retry N to connect <endpoint> in D
    # seconds", INFO) is shown at DEBUG: the sink logs one ERROR when Redis goes away
    _log = chatty_logger("flamingo.sink.reconnect")


class RedisLink:
    """Keeps one handshaken connection to Redis; see the module doc."""

    def __init__(self, target: Callable[[], IStreamClientEndpoint], *, clock: IReactorTime, timeout: float,
                 password: str | None, db: int, checkpoint_key: bytes, retry: Callable[[int], float],
                 ready: Ready, failed: Callable[[Failure], None], where: str = "") -> None:
        self.clock = clock
        self.timeout = timeout
        self.password, self.db = password, db
        self.checkpoint_key = checkpoint_key
        self._ready = ready
        self._failed = failed
        self.proto: RespProtocol | None = None  # the accepted connection
        self.client_id: int | None = None  # CLIENT ID of the accepted connection (None: no fencing)
        self.run_id: bytes | None = None  # Redis' run_id when client_id was given
        self.fencing = True  # off when the Redis user may not use CLIENT (NOPERM)
        self._connections = _Connections()
        endpoint = AttemptEndpoint(target, clock, timeout, self._connections, self._is_accepted, failed, where)
        self._service = _Service(endpoint, self._connections, retryPolicy=retry, clock=clock,
                                 prepareConnection=self._prepare)

    def start(self) -> None:
        self._service.startService()

    def stop(self) -> defer.Deferred[None]:
        """Stop reconnecting, close the connection; fires once it is closed."""
        return self._service.stopService()

    def lost(self) -> None:
        """The accepted connection is gone (ClientService reconnects)."""
        self.proto = None

    def _is_accepted(self, conn: RespProtocol) -> bool:
        return conn is self.proto

    def _ask(self, proto: RespProtocol, commands: list[bytes]) -> defer.Deferred[list[object]]:
        d = proto.send(b"".join(commands), len(commands))
        d.addTimeout(self.timeout, self.clock)
        return d

    def _prepare(self, wrapped: IProtocol) -> defer.Deferred[None]:
        # ``wrapped`` is ClientService's proxy of the protocol its factory built for this
        # attempt (one attempt at a time): the newest
        conn = self._connections.newest
        assert conn is not None
        d = defer.ensureDeferred(self._handshake(conn))

        def refused(failure: Failure) -> Failure:
            abort(conn)
            self._failed(failure)
            return failure
        return d.addErrback(refused)

    async def _handshake(self, proto: RespProtocol) -> None:
        setup: list[bytes] = []
        if self.password:
            setup.append(command("AUTH", self.password))
        if self.db:
            setup.append(command("SELECT", self.db))
        n = len(setup)
        setup += [command("INFO", "server"), command("CLIENT", "ID"), command("SCRIPT", "LOAD", SCRIPT)]
        replies = await self._ask(proto, setup)
        for r in replies[:n]:
            if isinstance(r, ResponseError):
                raise r
        info, client_id, sha = replies[n:]
        if isinstance(sha, ResponseError):
            raise ResponseError(f"cannot load the delivery script: {sha}")
        if sha != SCRIPT_SHA:
            raise ResponseError(f"SCRIPT LOAD returned {sha!r}, expected {SCRIPT_SHA!r}")
        run_id = run_id_of(info)
        if isinstance(client_id, ResponseError):
            self._fencing_off(client_id)
            client_id = None
        second: list[bytes] = []
        if self.fencing and self.client_id is not None and run_id is not None and run_id == self.run_id:
            # fence: a batch of the previous connection still buffered in Redis must
            # not be applied after we read the checkpoint. Only on the same server:
            # after a restart the old id may belong to another client
            second.append(command("CLIENT", "KILL", "ID", self.client_id))
        second.append(command(b"GET", self.checkpoint_key))
        replies = await self._ask(proto, second)
        if len(second) == 2 and isinstance(replies[0], ResponseError):
            if "NOPERM" in str(replies[0]):
                self._fencing_off(replies[0])
            elif "No such client" not in str(replies[0]):
                raise replies[0]
        raw = replies[-1]
        if isinstance(raw, ResponseError):
            raise raw
        if raw is not None and not isinstance(raw, bytes):
            raise ResponseError(f"GET {self.checkpoint_key.decode()} returned {raw!r}")
        self._ready(proto, raw)  # may refuse (raise): nothing below is changed then
        self.client_id = client_id if self.fencing and isinstance(client_id, int) else None
        self.run_id = run_id
        self.proto = proto

    def _fencing_off(self, err: ResponseError) -> None:
        if self.fencing:
            log.warn("the Redis user may not use CLIENT ({e}): fencing of earlier connections is off; "
                     "the delivery script's checkpoint check still refuses a late batch", e=err)
        self.fencing = False
        self.client_id = None


def run_id_of(info: object) -> bytes | None:
    """``run_id`` from ``INFO server`` (None if the user may not run INFO)."""
    if not isinstance(info, bytes):
        return None
    for line in info.split(b"\r\n"):
        if line.startswith(b"run_id:"):
            return line[7:].strip()
    return None


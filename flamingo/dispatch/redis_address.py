"""Where the Redis to write to is: one address, the master Sentinel names, or a cluster slot's owner.

The store and the sink connect through an endpoint from :func:`endpoint_for`.
Like Twisted's ``ClientService``, they keep reconnecting with their own
backoff; what changes here is that *every* attempt asks again where to go:

* plain: ``redis.host``;
* Sentinel: ``SENTINEL get-master-addr-by-name <master_name>``, each sentinel
  in turn (the one that answered is asked first next time, as the Sentinel
  client guidelines advise), and the answer is believed only when the named
  server says ``ROLE`` = master. During a failover the sentinels name the dead
  master until they agree on a new one: the attempt fails and the next one,
  a moment later, finds the new master;
* Cluster: ``CLUSTER KEYSLOT {<ns>}`` and ``CLUSTER SLOTS`` on any known node
  (the configured one, then every master seen last time): the master owning
  the namespace's slot. A ``MOVED``/``ASK`` reply makes the caller reconnect,
  which resolves the slot again.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, endpoints, protocol
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from flamingo.config import RedisConfig
from flamingo.dispatch.resp import ResponseError, RespProtocol, command
from flamingo.logs import logger

__all__ = ["MasterNotFound", "SentinelResolver", "SlotResolver", "ResolvingEndpoint", "endpoint_for",
           "Address", "FAILOVER_ERRORS", "abort"]

log = logger("flamingo.redis")

Address = tuple[str, int]

#: Error replies that mean "not the master (any more)": reconnect, which resolves again.
FAILOVER_ERRORS = ("READONLY", "MASTERDOWN", "LOADING", "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN",
                   "-FAILOVER", "FAILOVER")


def abort(proto: protocol.Protocol) -> None:
    """Close ``proto``'s connection now, without flushing what is buffered."""
    transport = proto.transport
    if transport is None:
        return
    tcp = ITCPTransport(transport, None)
    if tcp is not None:
        tcp.abortConnection()
    else:
        transport.loseConnection()


class MasterNotFound(ConnectionError):
    """No sentinel (or cluster node) named a reachable master."""


def _text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _int(v: object) -> int:
    if isinstance(v, (int, bytes, str)):
        return int(v)
    raise ValueError(f"not a number: {v!r}")


async def ask(reactor: IReactorTime, addr: Address, commands: list[bytes], timeout: float) -> list[object]:
    """Send ``commands`` on a short connection of its own; the replies (errors as values)."""
    ep = endpoints.HostnameEndpoint(reactor, addr[0], addr[1], timeout=max(1, int(timeout)))
    d: defer.Deferred[RespProtocol] = endpoints.connectProtocol(ep, RespProtocol())
    d.addTimeout(timeout, reactor)
    proto = await d
    try:
        sent = proto.send(b"".join(commands), len(commands))
        sent.addTimeout(timeout, reactor)
        replies: list[object] = await sent
    finally:
        abort(proto)
    return replies


def _auth(password: str | None) -> list[bytes]:
    return [command("AUTH", password)] if password else []


class SentinelResolver:
    """The current master of ``master_name``, as the sentinels say and the master confirms."""

    def __init__(self, reactor: IReactorTime, sentinels: tuple[Address, ...], master_name: str,
                 timeout: float, password: str | None = None) -> None:
        self.reactor = reactor
        self.sentinels = list(sentinels)
        self.master_name = master_name
        self.timeout = timeout
        self.password = password
        self.master: Address | None = None  # the last one confirmed
        self.changes = 0  # times the confirmed master changed (failovers seen)

    def resolve(self) -> defer.Deferred[Address]:
        return defer.ensureDeferred(self._resolve())

    async def _resolve(self) -> Address:
        problems = []
        for i, sentinel in enumerate(list(self.sentinels)):
            where = f"sentinel {sentinel[0]}:{sentinel[1]}"
            try:
                reply, = await ask(self.reactor, sentinel, [
                    command("SENTINEL", "get-master-addr-by-name", self.master_name)], self.timeout)
            except defer.CancelledError:
                raise  # stopped: no other node is asked
            except Exception as e:
                problems.append(f"{where}: {_text(e) or type(e).__name__}")
                continue
            if not isinstance(reply, list) or len(reply) != 2:
                problems.append(f"{where}: knows no master {self.master_name!r} ({_text(reply)})")
                continue
            addr = (_text(reply[0]), _int(reply[1]))
            try:
                replies = await ask(self.reactor, addr, _auth(self.password) + [command("ROLE")], self.timeout)
            except defer.CancelledError:
                raise  # stopped: no other node is asked
            except Exception as e:
                problems.append(f"{where} names {addr[0]}:{addr[1]}, which does not answer "
                                f"({_text(e) or type(e).__name__})")
                continue
            role = replies[-1]
            if isinstance(role, ResponseError) or not isinstance(role, list) or role[:1] != [b"master"]:
                problems.append(f"{where} names {addr[0]}:{addr[1]}, which says ROLE "
                                f"{_text(role[0] if isinstance(role, list) and role else role)}")
                continue
            if i:
                self.sentinels.insert(0, self.sentinels.pop(i))
            if self.master is not None and self.master != addr:
                self.changes += 1
                log.warn("Redis master of {name} moved from {old} to {new} (failover)", name=self.master_name,
                         old=f"{self.master[0]}:{self.master[1]}", new=f"{addr[0]}:{addr[1]}")
            self.master = addr
            return addr
        raise MasterNotFound(f"no master for {self.master_name!r}: " + "; ".join(problems))


class SlotResolver:
    """The cluster master that owns the hash slot of ``{<namespace>}``."""

    def __init__(self, reactor: IReactorTime, seed: Address, tag: str, timeout: float,
                 password: str | None = None) -> None:
        self.reactor = reactor
        self.nodes = [seed]
        self.tag = tag
        self.timeout = timeout
        self.password = password
        self.master: Address | None = None
        self.slot: int | None = None

    def resolve(self) -> defer.Deferred[Address]:
        return defer.ensureDeferred(self._resolve())

    async def _resolve(self) -> Address:
        problems = []
        for node in list(self.nodes):
            try:
                replies = await ask(self.reactor, node, _auth(self.password) + [
                    command("CLUSTER", "KEYSLOT", self.tag), command("CLUSTER", "SLOTS")], self.timeout)
            except defer.CancelledError:
                raise  # stopped: no other node is asked
            except Exception as e:
                problems.append(f"{node[0]}:{node[1]}: {_text(e) or type(e).__name__}")
                continue
            slot, slots = replies[-2], replies[-1]
            if not isinstance(slot, int) or isinstance(slots, ResponseError):
                problems.append(f"{node[0]}:{node[1]}: {_text(slots if isinstance(slots, ResponseError) else slot)}")
                continue
            owner, masters = owner_of(slot, slots, node[0])
            for m in masters:
                if m not in self.nodes:
                    self.nodes.append(m)  # other nodes to ask if this one goes away
            if owner is None:
                problems.append(f"{node[0]}:{node[1]}: no node serves slot {slot}")
                continue
            self.slot, self.master = slot, owner
            return owner
        raise MasterNotFound(f"no cluster node owns the slot of {self.tag}: " + "; ".join(problems))


def owner_of(slot: int, slots: object, asked_host: str) -> tuple[Address | None, list[Address]]:
    """From a ``CLUSTER SLOTS`` reply: the master serving ``slot``, and every master listed.

    An empty host means "the node you asked" (Redis 7 may answer so)."""
    owner: Address | None = None
    masters: list[Address] = []
    for entry in slots if isinstance(slots, list) else ():
        if not isinstance(entry, list) or len(entry) < 3 or not isinstance(entry[2], list):
            continue
        host = _text(entry[2][0]) or asked_host
        addr = (host, _int(entry[2][1]))
        if addr not in masters:
            masters.append(addr)
        if _int(entry[0]) <= slot <= _int(entry[1]):
            owner = addr
    return owner, masters


@implementer(IStreamClientEndpoint)
class ResolvingEndpoint:
    """Resolves the address on every ``connect`` (so each reconnect follows a failover)."""

    def __init__(self, reactor: IReactorTime, resolve: Callable[[], defer.Deferred[Address]], timeout: float) -> None:
        self.reactor = reactor
        self.resolve = resolve
        self.timeout = timeout
        self.address: Address | None = None

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        # Cancelled (a ClientService being stopped), the attempt fails at once and never connects:
        # the resolvers take a cancelled question for an unreachable node and go on to the next.
        resolving = self.resolve()
        d: defer.Deferred[IProtocol] = defer.Deferred(lambda _: resolving.cancel())

        def go(addr: Address) -> defer.Deferred[IProtocol]:
            if d.called:
                raise defer.CancelledError()
            self.address = addr
            ep = endpoints.HostnameEndpoint(self.reactor, addr[0], addr[1], timeout=max(1, int(self.timeout)))
            return ep.connect(protocolFactory)
        def settle(result: IProtocol | Failure) -> None:
            if not d.called:  # else cancelled already: a late result goes nowhere
                d.callback(result)
        resolving.addCallback(go).addBoth(settle)
        return d


def endpoint_for(config: RedisConfig, reactor: IReactorTime) -> tuple[IStreamClientEndpoint, str]:
    """The endpoint to (re)connect through, and a description for logs and status."""
    if config.sentinels:
        sentinel = SentinelResolver(reactor, config.sentinels, config.master_name or "", config.timeout,
                                    config.password)
        where = f"sentinel master {config.master_name}"
        return ResolvingEndpoint(reactor, sentinel.resolve, config.timeout), where
    if config.cluster:
        slots = SlotResolver(reactor, (config.host, config.port), config.prefix, config.timeout, config.password)
        return ResolvingEndpoint(reactor, slots.resolve, config.timeout), f"cluster slot of {config.prefix}"
    ep = endpoints.HostnameEndpoint(reactor, config.host, config.port, timeout=max(1, int(config.timeout)))
    return ep, f"{config.host}:{config.port}"

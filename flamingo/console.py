"""The live console: a Python prompt inside the running daemon, over SSH.

The original had an irb console (``flamingo path/to/flamingo.yml``) to poke
stream params and subscriptions into Redis.  Here the same lines work, with
Python spellings, inside the daemon's own reactor (a ``twisted.conch``
manhole), so they act on the live store, wader and stats::

    >>> s = Stream.get('filter')
    >>> s.params['track'] = ['@cheaptweet', 'austin', '#etsy']
    >>> Subscription('example', format='resque', types=['tweet']).save()

Why build it by hand rather than ``manhole_tap``: that one only knows
password files, and the console takes public keys only (``authorized_keys``
re-read at every login, so adding or removing a key needs no restart).

Writes go through the same ``Store`` as REST.  They are asynchronous; the
console waits for each result (holding typed input meanwhile) and prints
the value, or one line for an error, then shows the next prompt.
"""

from __future__ import annotations

import os
import pprint
import socket
import struct
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import attrs
from twisted.application import service
from twisted.conch import manhole, manhole_ssh
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.ssh import keys
from twisted.cred.portal import Portal
from twisted.internet import defer, endpoints
from twisted.internet.error import ProcessDone
from flamingo.logs import logger
from twisted.python.failure import Failure
from zope.interface import implementer

import flamingo
from flamingo.config import SECRET_KEYS, STREAMS, Config
from flamingo.errors import FlamingoError, NotFound

__all__ = [
    "console_service",
    "make_service",
    "ConsoleService",
    "AuthorizedKeysFile",
    "load_or_create_host_key",
    "build_namespace",
    "ConfigView",
    "Redacted",
    "FlamingoManhole",
    "BANNER",
]

log = logger("flamingo.console")

#: Seconds the prompt waits for a write's result before giving the prompt
#: back (the result is then printed when it arrives).
WAIT_LIMIT = 10.0

BANNER = """\
Flamingo console (Python, inside the running daemon). What is here:
  s = Stream.get('filter')        a stream; Stream.all() lists them
  s.params                        its params, live: s.params['track'] = ['a', 'b']
  s.params.add('track', 'x')      also .remove('track', 'x'), .delete('track'), .all()
  Subscription('example').save()  also format='raw'|'envelope'|'resque', types=[...],
                                  filter=[...], max_length=N; Subscription.all(),
                                  Subscription.find('example').delete()
  meta()                          what /meta.json shows
  status()                        what /status.json shows
  wader.state                     the stream connection; wader.restart()
  config                          the configuration (secrets shown as '***';
                                  config.secret('password') when you mean it)
  app                             everything (store, stats, wader, delivery)
  help()                          this text.  Ctrl-D leaves.
"""


# --- keys -----------------------------------------------------------------


def load_or_create_host_key(path: Path) -> keys.Key:
    """The console's SSH host key, generated (ed25519) on first start, mode 0600."""
    path = Path(path).expanduser()
    if path.exists():
        return keys.Key.fromFile(str(path))
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

    Any user name is accepted; the key decides.  Lines with options
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


# --- namespace --------------------------------------------------------------

Watch = Callable[[defer.Deferred, str], None]


class ParamsView:
    """A stream's params, read from the store's in-memory copy, written through the store."""

    def __init__(self, app: Any, stream: str, watch: Watch) -> None:
        self._app, self._stream, self._watch = app, stream, watch

    def _store(self) -> Any:
        if self._app.store is None:
            raise FlamingoError("no store in this process")
        return self._app.store

    def all(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._store().params(self._stream).items()}

    def __getitem__(self, key: str) -> list[str]:
        return list(self._store().params(self._stream).get(key, []))

    def __setitem__(self, key: str, values: Any) -> None:
        d = self._store().set_param(self._stream, key, _values(values))
        self._watch(d, f"{self._stream}.{key}")

    def __delitem__(self, key: str) -> None:
        self._watch(self._store().delete_param(self._stream, key), f"{self._stream}.{key}")

    def add(self, key: str, *values: Any) -> defer.Deferred:
        return self._store().add_values(self._stream, key, _flat(values))

    def remove(self, key: str, *values: Any) -> defer.Deferred:
        return self._store().remove_values(self._stream, key, _flat(values))

    def delete(self, key: str) -> defer.Deferred:
        return self._store().delete_param(self._stream, key)

    def keys(self) -> list[str]:
        return list(self.all())

    def __iter__(self) -> Iterator[str]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self.all())

    def __contains__(self, key: object) -> bool:
        return key in self.all()

    def __repr__(self) -> str:
        return repr(self.all())


def _values(values: Any) -> list[str]:
    if isinstance(values, (str, bytes, int)):
        values = [values]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _flat(values: tuple[Any, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(_values(v))
    return out


def build_namespace(app: Any, watch: Watch) -> dict[str, Any]:
    """The console's names, bound to ``app``; ``watch(d, label)`` shows a write's result."""

    class Stream:
        """A stream (filter, sample, firehose) and its live params."""

        def __init__(self, name: str) -> None:
            self.name = str(name)
            self.params = ParamsView(app, self.name, watch)

        @classmethod
        def get(cls, name: str) -> "Stream":
            """The stream ``name``; NotFound for a name no stream has (REST answers 404)."""
            name = str(name)
            if name not in STREAMS and (app.store is None or name not in app.store.stream_names()):
                raise NotFound("stream", name)
            return cls(name)

        @classmethod
        def all(cls) -> list["Stream"]:
            return [cls(n) for n in app.store.stream_names()]

        def __repr__(self) -> str:
            return f"Stream({self.name!r}, params={self.params!r})"

    class Subscription:
        """A subscription to build and ``.save()``; ``all()``/``find()`` read the store."""

        def __init__(self, name: str, **options: Any) -> None:
            self.name = str(name)
            self.options = options

        def save(self) -> defer.Deferred:
            from flamingo.subscription import Subscription as Sub

            sub = Sub.create(self.name, **self.options)
            return app.store.save_subscription(sub)

        def delete(self, drop_queue: bool = False) -> defer.Deferred:
            return app.store.delete_subscription(self.name, drop_queue=drop_queue)

        @staticmethod
        def all() -> list[Any]:
            subs = app.store.subscriptions()
            return [subs[k] for k in sorted(subs)]

        @classmethod
        def find(cls, name: str) -> "Subscription | None":
            sub = app.store.subscriptions().get(name)
            if sub is None:
                return None
            return cls(sub.name, **{k: v for k, v in sub.to_dict().items() if k != "name"})

        def __repr__(self) -> str:
            opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
            return f"Subscription({self.name!r}{opts})"

    def meta() -> Pretty:
        """What /meta.json shows: stats and process info."""
        return Pretty(meta_document(app))

    def status() -> Pretty:
        """What /status.json shows: the wader's state, backlog, Redis."""
        return Pretty(status_document(app))

    def help(obj: Any = None) -> Any:  # noqa: A001 - the console's help
        if obj is None:
            return Text(BANNER)
        return Text(getattr(obj, "__doc__", None) or repr(obj))

    return {
        "Stream": Stream,
        "Subscription": Subscription,
        "meta": meta,
        "status": status,
        "wader": Redacted(app.wader) if app.wader is not None else NoWader(),
        "config": ConfigView(app.config),
        "app": Redacted(app),
        "store": Redacted(app.store) if app.store is not None else None,
        "stats": app.stats,
        "help": help,
        "__name__": "__console__",
        "__doc__": BANNER,
    }


class Text(str):
    """A string the console prints as-is (no quotes)."""

    def __repr__(self) -> str:
        return str(self).rstrip("\n")


class Pretty(dict):  # type: ignore[type-arg]
    """A dict the console prints over several lines."""

    def __repr__(self) -> str:
        return pprint.pformat(dict(self), sort_dicts=True, width=100)


class NoWader:
    state = None

    def restart(self) -> None:
        raise FlamingoError("no wader in this process")

    def __repr__(self) -> str:
        return "<no wader in this process>"


@attrs.define
class ConfigView:
    """The config with secrets as '***': ``config``, ``config['redis']``, ``config.redis``."""

    _config: Any

    def _data(self) -> dict[str, Any]:
        return self._config.redacted()

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def secret(self, dotted: str) -> str | None:
        """One secret, asked for by its key: ``config.secret('redis.password')``."""
        return self._config.secret(dotted)  # type: ignore[no-any-return]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._data()[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        return pprint.pformat(self._data(), sort_dicts=False, width=100)


#: Attribute names whose values the console shows as '***' on any daemon part.
_SECRET_NAMES = frozenset(k.rpartition(".")[2] for k in SECRET_KEYS)


class Redacted:
    """A daemon part as the console hands it out: everything reads through, secrets as '***'.

    ``app.config`` is a ConfigView, ``store.password`` and ``wader.auth.password``
    are '***', and parts reached from a part are redacted the same way. It keeps
    secrets off the screen, it is not a sandbox: the console runs Python inside
    the daemon, so whoever may log in can reach anything the process holds.
    """

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(object.__getattribute__(self, "_target"), name)
        if name.lstrip("_") in _SECRET_NAMES and value:
            return "***"
        if isinstance(value, Config):
            return ConfigView(value)
        if type(value).__module__.startswith("flamingo.") and not callable(value):
            return Redacted(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)

    def __dir__(self) -> list[str]:
        return dir(object.__getattribute__(self, "_target"))

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_target"))


def meta_document(app: Any) -> dict[str, Any]:
    """What /meta.json shows: the stats snapshot, process info, the stream, the wader.

    Same shape as flamingo.web's /meta.json handler builds.
    """
    snapshot = app.stats.snapshot() if app.stats is not None else {}
    started = app.started_at or None
    now = app.reactor.seconds() if hasattr(app.reactor, "seconds") else time.time()
    running = bool(started) and (app.wader is None or app.wader.state.name != "stopped")
    return {
        **snapshot,
        "process": {"pid": os.getpid(), "version": flamingo.__version__,
                    "host": socket.gethostname(), "running": running, "started_at": started,
                    "uptime": (now - started) if started else None},
        "stream": app.config.stream,
        "wader": app.wader.state.to_dict() if app.wader is not None else None,
    }


def status_document(app: Any) -> dict[str, Any]:
    """What /status.json shows (same keys as flamingo.web's handler builds)."""
    wader = app.wader.state.to_dict() if app.wader is not None else None
    state = wader or {}
    delivery = app.delivery.status() if app.delivery is not None else {}
    store = app.store
    return {
        "wader": wader,
        "state": state.get("name"),
        "request_line": state.get("request_line"),
        "connected_since": state.get("connected_since"),
        "stream": {"name": app.config.stream,
                   "params": store.params(app.config.stream) if store is not None else {}},
        "journal_backlog": delivery.get("backlog", delivery.get("journal_backlog")),
        "redis": {"available": bool(store.available) if store is not None else False},
        "delivery": delivery,
        "process": meta_document(app)["process"],
    }


def describe_error(failure_or_exc: Failure | BaseException) -> str:
    """One line for an error: ``ValidationError: track: at most 400 phrases``."""
    exc = failure_or_exc.value if isinstance(failure_or_exc, Failure) else failure_or_exc
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- the manhole --------------------------------------------------------------


class FlamingoInterpreter(manhole.ManholeInterpreter):
    """Deferreds at top level are waited for and their result printed."""

    handler: "FlamingoManhole"

    def displayhook(self, obj: Any) -> None:
        if isinstance(obj, defer.Deferred):
            self.handler.watch(obj, "")
            return
        self.locals["_"] = obj
        if obj is not None:
            self.write(repr(obj))

    def excepthook(self, excType: Any, excValue: BaseException, excTraceback: Any) -> None:
        if isinstance(excValue, FlamingoError):
            self.write(describe_error(excValue) + "\n")
        else:
            super().excepthook(excType, excValue, excTraceback)


class FlamingoManhole(manhole.ColoredManhole):
    """A manhole whose prompt waits for the writes a line started."""

    def __init__(self, app: Any, clock: Any = None) -> None:
        super().__init__(None)
        self.app = app
        self.clock = clock if clock is not None else app.reactor
        self._waiting: list[defer.Deferred] = []
        self._held: list[tuple[Any, Any]] | None = None
        self._timer: Any = None
        self._eof = False

    def connectionMade(self) -> None:
        self.namespace = build_namespace(self.app, self.watch)
        super().connectionMade()
        self.interpreter = FlamingoInterpreter(self, self.namespace)
        self.terminal.write(BANNER.encode())
        self.terminal.write(self.ps[self.pn])

    def initializeScreen(self) -> None:
        # No screen reset and no prompt here: the banner comes first.
        self.setInsertMode()

    def terminalSize(self, width: int, height: int) -> None:
        # Record only: the stock redraw would erase the banner.
        self.width, self.height = width, height

    #: Set by the SSH session: ends the session with exit status 0.
    on_quit: Callable[[], None] | None = None

    def handle_QUIT(self) -> None:
        if self.on_quit is not None:
            self.on_quit()
        else:
            self.terminal.loseConnection()

    # Results of asynchronous writes ------------------------------------------------

    def watch(self, d: defer.Deferred, label: str) -> None:
        """Print ``d``'s result (or one error line) when it fires."""
        prefix = f"{label} = " if label else ""

        def shown(result: Any) -> None:
            if isinstance(result, Failure):
                text = describe_error(result)
            else:
                if self.interpreter is not None and not label:
                    self.interpreter.locals["_"] = result
                if label and isinstance(result, dict):  # a stream's params: show this one
                    result = result.get(label.rsplit(".", 1)[-1], [])
                text = prefix + repr(result) if result is not None or label else "ok"
            self._show(text)
            if d in self._waiting:
                self._waiting.remove(d)
            if not self._waiting:
                self._release()

        self._waiting.append(d)
        d.addBoth(shown)

    def _show(self, text: str) -> None:
        data = text.rstrip("\n") + "\n"
        if self._held is not None:
            self.terminal.write(data.encode())
        else:
            self.addOutput(data.encode(), True)

    def lineReceived(self, line: bytes) -> None:
        more = self.interpreter.push(line)
        self.pn = bool(more)
        if self._needsNewline():
            self.terminal.nextLine()
        if self._waiting:
            self._held = []
            self._timer = self.clock.callLater(WAIT_LIMIT, self._give_up_waiting)
        else:
            self.terminal.write(self.ps[self.pn])

    def _give_up_waiting(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # Ctrl-C came first
        self._timer = None
        self.terminal.write(b"(still waiting; the result will be printed when it arrives)\n")
        self._release()

    def _release(self) -> None:
        if self._held is None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        held, self._held = self._held, None
        if self.terminal is None:
            return
        self.terminal.write(self.ps[self.pn])
        for key, modifier in held:
            if self._held is not None:  # a replayed line started a new wait
                self._held.append((key, modifier))
            else:
                super().keystrokeReceived(key, modifier)
        if self._held is None and self._eof:
            self.handle_QUIT()

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        if self._held is not None:
            if keyID == manhole.CTRL_C:
                self._give_up_waiting()
                return
            self._held.append((keyID, modifier))
            return
        super().keystrokeReceived(keyID, modifier)

    def eof_received(self) -> None:
        """The client closed its input: leave once pending results are shown."""
        self._eof = True
        if self._held is None:
            self.handle_QUIT()

    def connectionLost(self, reason: Any) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        super().connectionLost(reason)


# --- SSH plumbing ---------------------------------------------------------------


class _Discard:
    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def closeStdin(self) -> None:
        pass


def _refuse(proto: Any, message: bytes, clock: Any) -> None:
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

    clock: Any = None
    _pty = False
    _terminal: Any = None

    def getPty(self, term: bytes, windowSize: Any, attrs: Any) -> None:
        super().getPty(term, windowSize, attrs)
        self._pty = True

    def openShell(self, proto: Any) -> None:
        if not self._pty:
            _refuse(proto, b"flamingo console: a terminal is needed; connect with `ssh -t`"
                           b" (or `flamingo console`)\r\n", self.clock)
            return
        transport = self.transportFactory(
            proto, self.chainedProtocolFactory(),
            manhole_ssh.iconch.IConchUser(self.original), self.width, self.height)
        self._terminal = transport.chainedProtocol
        manhole_proto = self._terminal.terminalProtocol
        if isinstance(manhole_proto, FlamingoManhole):
            manhole_proto.on_quit = lambda: proto.processEnded(Failure(ProcessDone(0)))

    def execCommand(self, proto: Any, cmd: bytes) -> None:
        _refuse(proto, b"flamingo console: commands are not run here; open the console"
                       b" with `ssh -t` and no command (or `flamingo console`)\r\n", self.clock)

    def windowChanged(self, newWindowSize: Any) -> None:
        if self._terminal is not None and self._terminal.terminalProtocol is not None:
            rows, cols = newWindowSize[:2]
            self._terminal.terminalProtocol.terminalSize(cols, rows)

    def eofReceived(self) -> None:
        proto = self._terminal.terminalProtocol if self._terminal is not None else None
        if isinstance(proto, FlamingoManhole):
            proto.eof_received()

    def closed(self) -> None:
        pass


def make_factory(app: Any, host_key: keys.Key, authorized_keys: Path) -> manhole_ssh.ConchFactory:
    """An SSH factory serving the console, public-key logins only."""
    realm = manhole_ssh.TerminalRealm()

    class Session(FlamingoSession):
        clock = app.reactor

    realm.sessionFactory = Session
    realm.chainedProtocolFactory = lambda: insults.ServerProtocol(FlamingoManhole, app)
    portal = Portal(realm, [SSHPublicKeyChecker(AuthorizedKeysFile(Path(authorized_keys)))])
    factory = manhole_ssh.ConchFactory(portal)
    # Class-level dicts on ConchFactory: give this instance its own.
    factory.publicKeys = {host_key.sshType(): host_key.public()}
    factory.privateKeys = {host_key.sshType(): host_key}
    return factory


class ConsoleService(service.Service):
    """Listens on ``console.listen`` while running; ``.port`` is the listening port."""

    name = "console"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port: Any = None
        self.factory: manhole_ssh.ConchFactory | None = None

    @property
    def host_key_path(self) -> Path:
        c = self.app.config
        return Path(c.console.host_key or Path(c.data_dir) / "console_host_key").expanduser()

    def startService(self) -> defer.Deferred:
        super().startService()
        c = self.app.config.console
        key = load_or_create_host_key(self.host_key_path)
        self.factory = make_factory(self.app, key, Path(c.authorized_keys).expanduser())
        endpoint = endpoints.serverFromString(self.app.reactor, c.listen)
        d = endpoint.listen(self.factory)

        def listening(port: Any) -> None:
            self.port = port
            log.info("console: SSH on {listen} (public keys from {keys})",
                     listen=c.listen, keys=str(c.authorized_keys))

        def failed(f: Failure) -> None:
            # Like the web service: the daemon goes on without its console.
            log.error("console: cannot listen on {listen}: {err}; running without the console",
                      listen=c.listen, err=f.getErrorMessage())

        return d.addCallbacks(listening, failed)

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


def console_service(app: Any) -> ConsoleService | None:
    """The console's service for ``app``, or None when ``console.enabled`` is false."""
    if not app.config.console.enabled:
        return None
    return ConsoleService(app)


#: The name flamingo.service looks for.
make_service = console_service

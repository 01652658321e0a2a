"""The console's names: ``Stream``, ``Subscription``, ``meta()``, ``status()``, ``wader``, ``config``.

Reads come from the store's in-memory copy; writes go through the same
``Store`` as REST and return Deferreds, which the manhole waits for.  Daemon
parts are handed out wrapped in :class:`Redacted`, so secrets show as '***'.
"""

from __future__ import annotations

import pprint
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

import attrs
from twisted.internet import defer
from twisted.python.failure import Failure

from flamingo._types import JsonObject
from flamingo.app import App
from flamingo.config import SECRET_KEYS, Config
from flamingo.domain import catalog
from flamingo.errors import FlamingoError, NotFound
from flamingo.web import documents

if TYPE_CHECKING:  # the console is built after the store; only the types are needed here
    from flamingo.app import StoreWriter
    from flamingo.domain.subscription import Subscription as Sub
    from flamingo.sources.xrules.model import Rule
    from flamingo.sources.xrules.service import RulesService

__all__ = ["BANNER", "Watch", "ParamsView", "build_namespace", "ConfigView", "Redacted",
           "Text", "Pretty", "NoWader", "describe_error"]

BANNER = """\
Flamingo console (Python, inside the running daemon). What is here:
  s = Stream.get('filter')        a stream; Stream.all() lists them
  s.params                        its params, live: s.params['track'] = ['a', 'b']
  s.params.add('track', 'x')      also .remove('track', 'x'), .delete('track'), .all()
  s.rules                         X filter rules (source: x); s.add_rule('cats', tag='pets'),
                                  s.remove_rule(value='cats') or s.remove_rule(tag='pets')
  Subscription('example').save()  also format='raw'|'envelope'|'resque'|'stream', types=[...],
                                  filter=[...], max_length=N, groups=[...] (stream);
                                  Subscription.all(),
                                  Subscription.find('example').delete()
  meta()                          what /meta.json shows
  status()                        what /status.json shows
  wader.state                     the stream connection; wader.restart()
  config                          the configuration (secrets shown as '***';
                                  config.secret('password') when you mean it)
  app                             everything (store, stats, wader, delivery)
  help()                          this text.  Ctrl-D leaves.
"""


_T = TypeVar("_T")

#: What a store write gives back: the stream's params once written.
Params = dict[str, list[str]]


class Watch(Protocol):
    """Shows a write's result (or one error line) when ``d`` fires: the manhole's ``watch``."""

    def __call__(self, d: defer.Deferred[_T], label: str) -> None: ...


class ParamsView:
    """A stream's params, read from the store's in-memory copy, written through the store."""

    def __init__(self, app: App, stream: str, watch: Watch) -> None:
        self._app, self._stream, self._watch = app, stream, watch

    def _store(self) -> StoreWriter:
        return _store(self._app)

    def all(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._store().params(self._stream).items()}

    def __getitem__(self, key: str) -> list[str]:
        return list(self._store().params(self._stream).get(key, []))

    def __setitem__(self, key: str, values: object) -> None:
        d = self._store().set_param(self._stream, key, _values(values))
        self._watch(d, f"{self._stream}.{key}")

    def __delitem__(self, key: str) -> None:
        self._watch(self._store().delete_param(self._stream, key), f"{self._stream}.{key}")

    def add(self, key: str, *values: object) -> defer.Deferred[Params]:
        return self._store().add_values(self._stream, key, _flat(values))

    def remove(self, key: str, *values: object) -> defer.Deferred[Params]:
        return self._store().remove_values(self._stream, key, _flat(values))

    def delete(self, key: str) -> defer.Deferred[Params]:
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


def _values(values: object) -> list[str]:
    if isinstance(values, (str, bytes, int)):
        values = [values]
    if not isinstance(values, Iterable):
        raise TypeError(f"'{type(values).__name__}' object is not iterable")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _flat(values: tuple[object, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(_values(v))
    return out


def _store(app: App) -> StoreWriter:
    if app.store is None:
        raise FlamingoError("no store in this process")
    return app.store


def _rules(app: App) -> RulesService:
    if app.rules is None:
        raise FlamingoError(f"no filter rules here: they are for source: x, stream: filter "
                            f"(this daemon: source: {app.config.source}, stream: {app.config.stream})")
    return app.rules


def build_namespace(app: App, watch: Watch) -> dict[str, object]:
    """The console's names, bound to ``app``; ``watch(d, label)`` shows a write's result."""

    class Stream:
        """A stream of the config's source (filter, subscribe, hashtag, ...) and its live params."""

        def __init__(self, name: str) -> None:
            self.name = str(name)
            self.params = ParamsView(app, self.name, watch)

        @classmethod
        def get(cls, name: str) -> Stream:
            """The stream ``name``; NotFound for a name no stream has (REST answers 404)."""
            name = str(name)
            known = catalog.spec_for(app.config.source).streams
            if name not in known and (app.store is None or name not in app.store.stream_names()):
                raise NotFound("stream", name)
            return cls(name)

        @classmethod
        def all(cls) -> list[Stream]:
            return [cls(n) for n in _store(app).stream_names()]

        @property
        def rules(self) -> list[JsonObject]:
            """X filter rules (source: x): value, tag, X's id, status, error."""
            return [r.to_dict() for r in _rules(app).rules()]

        def add_rule(self, value: str, tag: str | None = None) -> defer.Deferred[JsonObject]:
            """Add an X rule; X follows without a reconnect (a value already there: unchanged)."""
            def added(done: tuple[Rule, bool]) -> JsonObject:
                return done[0].to_dict()

            return _rules(app).add(value, tag).addCallback(added)

        def remove_rule(self, value: str | None = None, tag: str | None = None) -> defer.Deferred[list[JsonObject]]:
            """Remove an X rule by value, or every rule with a tag; the rules left."""
            def left(rules: list[Rule]) -> list[JsonObject]:
                return [r.to_dict() for r in rules]

            return _rules(app).remove(value, tag).addCallback(left)

        def __repr__(self) -> str:
            return f"Stream({self.name!r}, params={self.params!r})"

    class Subscription:
        """A subscription to build and ``.save()``; ``all()``/``find()`` read the store."""

        def __init__(self, name: str, **options: object) -> None:
            self.name = str(name)
            self.options = options

        def save(self) -> defer.Deferred[Sub]:
            from flamingo.domain.subscription import Subscription as Sub

            sub = Sub.create(self.name, **self.options)
            return _store(app).save_subscription(sub)

        def delete(self, drop_queue: bool = False) -> defer.Deferred[None]:
            return _store(app).delete_subscription(self.name, drop_queue=drop_queue)

        @staticmethod
        def all() -> list[Sub]:
            subs = _store(app).subscriptions()
            return [subs[k] for k in sorted(subs)]

        @classmethod
        def find(cls, name: str) -> Subscription | None:
            sub = _store(app).subscriptions().get(name)
            if sub is None:
                return None
            return cls(sub.name, **{k: v for k, v in sub.to_dict().items() if k != "name"})

        def __repr__(self) -> str:
            opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
            return f"Subscription({self.name!r}{opts})"

    def meta() -> Pretty:
        """What /meta.json shows: stats and process info."""
        return Pretty(documents.meta_document(app, app.reactor.seconds()))

    def status() -> Pretty:
        """What /status.json shows: the wader's state, backlog, Redis."""
        return Pretty(documents.status_document(app, app.reactor.seconds()))

    def help(obj: object = None) -> Text:  # noqa: A001 - the console's help
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


class Pretty(dict[str, object]):
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

    _config: Config

    def _data(self) -> JsonObject:
        return self._config.redacted()

    def __getitem__(self, key: str) -> object:
        return self._data()[key]

    def secret(self, dotted: str) -> str | None:
        """One secret, asked for by its key: ``config.secret('redis.password')``."""
        return self._config.secret(dotted)

    def __getattr__(self, key: str) -> object:
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

    def __init__(self, target: object) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> object:
        value: object = getattr(object.__getattribute__(self, "_target"), name)
        if name.lstrip("_") in _SECRET_NAMES and value:
            return "***"
        if isinstance(value, Config):
            return ConfigView(value)
        if type(value).__module__.startswith("flamingo.") and not callable(value):
            return Redacted(value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)

    def __dir__(self) -> list[str]:
        return dir(object.__getattribute__(self, "_target"))

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_target"))


def describe_error(failure_or_exc: Failure | BaseException) -> str:
    """One line for an error: ``ValidationError: track: at most 400 phrases``."""
    exc = failure_or_exc.value if isinstance(failure_or_exc, Failure) else failure_or_exc
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

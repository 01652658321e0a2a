"""The instance's timeline: statuses made continuously, kept for the REST API.

Every status (and notification, conversation, edit, delete) is an ``Event``
with the stream keys it belongs to (``("public",)``, ``("hashtag", "python")``,
``("list", "1")``, ...); streaming sessions pick events by key, the REST
timelines answer from the same retained statuses. ``made`` is the record of
everything made, for tests to compare a consumer's queue against (missing 0,
duplicates 0).

Statuses are made by ``make(n)`` (tests) or by the clock at ``rate`` per
second (``start``); the timeline keeps making them while streaming is
refused or dropped, as a real instance does.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

import attrs
import orjson
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from flamingo._types import JsonObject
from flamingo.emulator.mastodon.corpus import Corpus

__all__ = ["Event", "Made", "Timeline", "StreamKey", "keys_for", "LISTS", "TimelineOptions"]

StreamKey = tuple[str, ...]

#: list id -> every n-th account is a member (accounts 1.., the user is account 0)
LISTS = {"1": 3, "2": 5, "42": 7}
_FOLLOW_EVERY = 4  # the user follows every 4th account (the home timeline)


@attrs.frozen
class TimelineOptions:
    seed: int = 1
    rate: float = 5.0  # statuses per second when started; 0 = only make() makes them
    retain: int = 10_000  # statuses kept for the REST timelines
    mention_share: float = 0.03  # statuses mentioning the user: notifications
    direct_share: float = 0.01  # direct statuses to the user: conversations
    edit_share: float = 0.0  # status.update events (edits of recent statuses)
    delete_share: float = 0.0  # delete events (recent statuses removed)


@attrs.frozen
class Event:
    """One thing the streaming server sends: its name, payload, and the streams it is on."""

    seq: int
    name: str  # update | delete | status.update | notification | conversation
    payload: str  # the payload as Mastodon sends it: a JSON string, or a bare id for delete
    keys: frozenset[StreamKey]
    status_id: str | None  # for update/status.update/delete


@attrs.frozen
class Made:
    """The record of one event, for tests."""

    seq: int
    name: str
    id: str  # status id (update, status.update, delete), notification or conversation id
    keys: frozenset[StreamKey]
    at: float


def _idkey(i: str) -> tuple[int, str]:
    return (len(i), i)  # Mastodon ids: longer is newer, then lexical


def keys_for(status: JsonObject, home: bool, lists: Iterable[str]) -> frozenset[StreamKey]:
    """Stream keys a public status belongs to (and home/list ones)."""
    local = "@" not in str(status["account"]["acct"])
    keys: set[StreamKey] = {("public",), ("public:local",) if local else ("public:remote",)}
    for tag in status.get("tags", []):
        name = str(tag["name"]).lower()
        keys.add(("hashtag", name))
        if local:
            keys.add(("hashtag:local", name))
    for list_id in lists:
        keys.add(("list", list_id))
    if home:
        keys.add(("user",))
    return frozenset(keys)


@attrs.define(eq=False)
class _Kept:
    id: str
    body: bytes  # the status as JSON
    keys: frozenset[StreamKey]
    deleted: bool = False


class Timeline:
    """The statuses an instance makes; ``listeners`` get every event as it is made."""

    def __init__(self, options: TimelineOptions, clock: IReactorTime) -> None:
        self.options = options
        self.clock = clock
        self.corpus = Corpus(options.seed)
        self.rng = self.corpus.rng
        self.listeners: list[Callable[[Event], None]] = []
        self.made: list[Made] = []
        self.kept: list[_Kept] = []  # increasing id order
        self.by_key: dict[StreamKey, list[_Kept]] = {}
        self.key_ids: dict[StreamKey, list[tuple[int, str]]] = {}  # by_key's ids, for bisect
        self.by_id: dict[str, _Kept] = {}
        self.seq = 0
        self.notification_ids = 9_000_000
        self.conversation_ids = 700_000
        self.hooks: list[Callable[[int], None]] = []  # called with the count made (fault scripts)
        self._call: IDelayedCall | None = None
        self._owed = 0.0
        me = self.corpus.me
        accounts = self.corpus.accounts
        self.follows = {a.id for i, a in enumerate(accounts) if i and i % _FOLLOW_EVERY == 0}
        self.list_members = {lid: {a.id for i, a in enumerate(accounts) if i and i % every == 0}
                             for lid, every in LISTS.items()}
        self.me = me

    # -- making -----------------------------------------------------------------

    def start(self) -> None:
        if self.options.rate > 0 and self._call is None:
            self._tick_at = self.clock.seconds()
            self._call = self.clock.callLater(self._interval, self._tick)

    @property
    def _interval(self) -> float:
        return max(0.02, 1.0 / self.options.rate)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        now = self.clock.seconds()
        self._owed += (now - self._tick_at) * self.options.rate
        self._tick_at = now
        n = int(self._owed)
        self._owed -= n
        self._call = self.clock.callLater(self._interval, self._tick)
        if n:
            self.make(min(n, 10_000))

    def make(self, n: int = 1) -> list[Made]:
        """Make ``n`` more events (mostly statuses) now."""
        out: list[Made] = []
        for _ in range(n):
            out.append(self._one())
        for hook in list(self.hooks):
            hook(len(self.made))
        return out

    def _one(self) -> Made:
        o, rng = self.options, self.rng
        roll = rng.random()
        if roll < o.delete_share and self._live():
            return self._delete()
        roll -= o.delete_share
        if roll < o.edit_share and self._live():
            return self._edit()
        roll -= o.edit_share
        if roll < o.direct_share:
            return self._conversation()
        roll -= o.direct_share
        return self._status(mention=roll < o.mention_share)

    def _live(self) -> list[_Kept]:
        return [k for k in self.kept[-50:] if not k.deleted]

    def _emit(self, name: str, payload: str, keys: frozenset[StreamKey], ident: str,
              status_id: str | None) -> Made:
        self.seq += 1
        made = Made(self.seq, name, ident, keys, self.clock.seconds())
        self.made.append(made)
        event = Event(self.seq, name, payload, keys, status_id)
        for listener in list(self.listeners):
            listener(event)
        return made

    def _status(self, mention: bool) -> Made:
        status = self.corpus.status(self.clock.seconds(), mention_me=mention)
        account_id = str(status["account"]["id"])
        lists = [lid for lid, members in self.list_members.items() if account_id in members]
        keys = keys_for(status, home=account_id in self.follows or mention, lists=lists)
        body = orjson.dumps(status)
        self._keep(_Kept(str(status["id"]), body, keys))
        made = self._emit("update", body.decode(), keys, str(status["id"]), str(status["id"]))
        if mention:
            self._notification(status)
        return made

    def _notification(self, status: JsonObject) -> None:
        self.notification_ids += self.rng.randrange(1, 9)
        nid = str(self.notification_ids)
        note = {"id": nid, "type": "mention", "created_at": status["created_at"], "group_key": f"ungrouped-{nid}",
                "account": status["account"], "status": status}
        self._emit("notification", orjson.dumps(note).decode(),
                   frozenset({("user",), ("user:notification",)}), nid, None)

    def _conversation(self) -> Made:
        status = self.corpus.status(self.clock.seconds(), mention_me=True, tags=(), visibility="direct")
        self.conversation_ids += 1
        cid = str(self.conversation_ids)
        conv = {"id": cid, "unread": True, "accounts": [status["account"]], "last_status": status}
        return self._emit("conversation", orjson.dumps(conv).decode(), frozenset({("direct",)}), cid, None)

    def _edit(self) -> Made:
        kept = self.rng.choice(self._live())
        status: JsonObject = orjson.loads(kept.body)
        edited = self.corpus.edited(status, self.clock.seconds())
        kept.body = orjson.dumps(edited)
        return self._emit("status.update", kept.body.decode(), kept.keys, kept.id, kept.id)

    def _delete(self) -> Made:
        kept = self.rng.choice(self._live())
        kept.deleted = True
        return self._emit("delete", kept.id, kept.keys, kept.id, kept.id)

    def _keep(self, kept: _Kept) -> None:
        self.kept.append(kept)
        self.by_id[kept.id] = kept
        for key in kept.keys:
            self.by_key.setdefault(key, []).append(kept)
            self.key_ids.setdefault(key, []).append(_idkey(kept.id))
        excess = len(self.kept) - self.options.retain
        if excess > 0:
            old, self.kept = self.kept[:excess], self.kept[excess:]
            for k in old:
                del self.by_id[k.id]
                for key in k.keys:
                    lst = self.by_key[key]
                    if lst and lst[0] is k:
                        lst.pop(0)
                        self.key_ids[key].pop(0)

    # -- reading ------------------------------------------------------------------

    def page(self, key: StreamKey, since_id: str | None = None, max_id: str | None = None,
             min_id: str | None = None, limit: int = 20) -> list[bytes]:
        """Statuses of one timeline, newest first, as Mastodon pages them."""
        kept = self.by_key.get(key, [])
        keys = self.key_ids.get(key, [])
        hi = bisect.bisect_left(keys, _idkey(max_id)) if max_id else len(kept)
        lo = bisect.bisect_right(keys, _idkey(since_id)) if since_id else 0
        if min_id:
            lo = max(lo, bisect.bisect_right(keys, _idkey(min_id)))
            window = [k for k in kept[lo:hi] if not k.deleted][:limit]  # just after min_id
        else:
            window = [k for k in kept[lo:hi] if not k.deleted][-limit:] if limit else []
        return [k.body for k in reversed(window)]

    def expected(self, key: StreamKey, names: Iterable[str] = ("update",)) -> list[str]:
        """Ids of the events made on ``key`` (tests: what a consumer should hold)."""
        wanted = set(names)
        return [m.id for m in self.made if key in m.keys and m.name in wanted]

"""Statuses shaped like Mastodon's: accounts, HTML content, tags, mentions, media.

A seeded generator, so the same seed makes the same timeline. A status
serialises to 2-4 KB of JSON, as real ones do (the account alone is ~1 KB:
note HTML, avatar and header URLs, profile fields). Ids are snowflake-like
strings: milliseconds since the epoch shifted 16 bits, plus a sequence,
always increasing (``SnowflakeIds``), so ``since_id``/``max_id`` compare them
as Mastodon clients do (longer is newer, then lexical).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from flamingo._types import JsonObject

__all__ = ["Account", "Corpus", "SnowflakeIds", "TAGS", "LOCAL_DOMAIN"]

LOCAL_DOMAIN = "mastodon.example"
REMOTE_DOMAINS = ("fosstodon.org", "hachyderm.io", "mas.to", "chaos.social", "social.coop",
                  "infosec.exchange", "mstdn.social", "tech.lgbt")
#: tags by popularity (the first are the busiest, roughly Zipf)
TAGS = ("fediverse", "python", "photography", "caturday", "news", "music", "art", "opensource",
        "linux", "rust", "books", "science", "gardening", "climate", "introduction", "mastodon")
_WORDS = ("the", "a", "new", "release", "today", "just", "finally", "working", "on", "with", "and",
          "our", "community", "thanks", "everyone", "who", "helped", "this", "week", "small",
          "server", "update", "read", "about", "how", "we", "built", "it", "morning", "coffee",
          "walk", "garden", "light", "photo", "song", "book", "code", "bug", "fixed", "after",
          "three", "days", "of", "debugging", "patch", "merged", "upstream", "conference", "talk")
_LANGS = ("en", "en", "en", "de", "fr", "es", "ja", "nl")
_APPS = ({"name": "Web", "website": None}, {"name": "Ivory for iOS", "website": "https://tapbots.com/ivory"},
         {"name": "Tusky", "website": "https://tusky.app"}, {"name": "Elk", "website": "https://elk.zone"})
_EPOCH_2022 = 1_640_995_200.0
_BLURHASH = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


@attrs.define
class SnowflakeIds:
    """Increasing ids from a clock: ``(ms << 16) | sequence``, as strings.

    A clock that starts at 0 (a test's ``Clock``) is moved to 2022 so ids
    have a realistic length; a clock that goes back never makes ids go back.
    """

    last: int = 0

    def next(self, seconds: float) -> str:
        if seconds < _EPOCH_2022:
            seconds += _EPOCH_2022
        candidate = int(seconds * 1000) << 16
        self.last = max(candidate, self.last + 1)
        return str(self.last)


@attrs.frozen
class Account:
    id: str
    username: str
    domain: str  # LOCAL_DOMAIN for local accounts
    display_name: str
    note: str
    fields: tuple[tuple[str, str], ...]
    followers: int
    statuses: int
    bot: bool

    @property
    def local(self) -> bool:
        return self.domain == LOCAL_DOMAIN

    @property
    def acct(self) -> str:
        return self.username if self.local else f"{self.username}@{self.domain}"

    @property
    def url(self) -> str:
        return f"https://{self.domain}/@{self.username}"

    def to_json(self, created_at: str) -> JsonObject:
        media = f"https://files.{LOCAL_DOMAIN}/{'accounts' if self.local else 'cache/accounts'}"
        digits = self.id.zfill(18)
        path = "/".join(digits[i:i + 3] for i in range(0, 18, 3))
        return {
            "id": self.id, "username": self.username, "acct": self.acct,
            "display_name": self.display_name, "locked": False, "bot": self.bot,
            "discoverable": True, "indexable": True, "group": False,
            "created_at": created_at[:10] + "T00:00:00.000Z", "note": self.note, "url": self.url,
            "uri": f"https://{self.domain}/users/{self.username}",
            "avatar": f"{media}/avatars/{path}/original/{digits[-16:]}.png",
            "avatar_static": f"{media}/avatars/{path}/original/{digits[-16:]}.png",
            "header": f"{media}/headers/{path}/original/{digits[-16:]}.jpeg",
            "header_static": f"{media}/headers/{path}/original/{digits[-16:]}.jpeg",
            "followers_count": self.followers, "following_count": self.followers // 3 + 7,
            "statuses_count": self.statuses, "last_status_at": created_at[:10],
            "hide_collections": False, "noindex": False, "emojis": [], "roles": [],
            "fields": [{"name": n, "value": v, "verified_at": None} for n, v in self.fields],
        }


def _iso(seconds: float) -> str:
    import datetime as _dt

    if seconds < _EPOCH_2022:
        seconds += _EPOCH_2022
    t = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class Corpus:
    """Accounts and statuses from one seed; ``status()`` makes the next one."""

    def __init__(self, seed: int = 1, accounts: int = 200, local_share: float = 0.4) -> None:
        self.rng = random.Random(seed)
        self.ids = SnowflakeIds()
        self.media_ids = 110_000_000
        self.accounts = [self._account(i, local_share) for i in range(accounts)]
        self.me = self.accounts[0]  # the token's owner (home, notifications, direct)

    def _account(self, i: int, local_share: float) -> Account:
        rng = self.rng
        local = i == 0 or rng.random() < local_share
        domain = LOCAL_DOMAIN if local else rng.choice(REMOTE_DOMAINS)
        name = f"{rng.choice(('ada', 'bo', 'cy', 'dee', 'eli', 'fox', 'gus', 'hal', 'ivy', 'jo'))}{i}"
        tags = rng.sample(TAGS, 2)
        note = (f"<p>{' '.join(rng.choices(_WORDS, k=14)).capitalize()}.</p><p>Posts about "
                f'<a href="https://{domain}/tags/{tags[0]}" class="mention hashtag" rel="tag">#<span>'
                f'{tags[0]}</span></a> and <a href="https://{domain}/tags/{tags[1]}" class="mention '
                f'hashtag" rel="tag">#<span>{tags[1]}</span></a>. Opinions my own.</p>')
        fields = (("Website", f'<a href="https://{name}.example.net" target="_blank" rel="nofollow '
                              f'noopener me" translate="no"><span class="invisible">https://</span>'
                              f'<span class="">{name}.example.net</span></a>'),
                  ("Pronouns", rng.choice(("she/her", "he/him", "they/them"))))
        return Account(id=str(100_000_000_000_000_000 + i * 7919), username=name, domain=domain,
                       display_name=name.capitalize() + rng.choice((" 🌿", " ✨", "", " (they/them)")),
                       note=note, fields=fields, followers=rng.randrange(3, 40_000),
                       statuses=rng.randrange(10, 90_000), bot=rng.random() < 0.03)

    def pick_tags(self) -> list[str]:
        rng = self.rng
        n = rng.choices((0, 1, 2, 3), weights=(3, 4, 2, 1))[0]
        weights = [1.0 / (k + 1) for k in range(len(TAGS))]
        return sorted(set(rng.choices(TAGS, weights=weights, k=n)))

    def status(self, seconds: float, account: Account | None = None, tags: Sequence[str] | None = None,
               mention_me: bool = False, visibility: str = "public") -> JsonObject:
        """A new status made at ``seconds`` (the clock's time)."""
        rng = self.rng
        account = account if account is not None else rng.choice(self.accounts[1:])
        tags = list(tags) if tags is not None else self.pick_tags()
        sid = self.ids.next(seconds)
        created = _iso(seconds)
        words = " ".join(rng.choices(_WORDS, k=rng.randrange(12, 45))).capitalize()
        mentions = []
        html = ""
        if mention_me:
            me = self.me
            mentions.append({"id": me.id, "username": me.username, "url": me.url, "acct": me.acct})
            html += (f'<span class="h-card" translate="no"><a href="{me.url}" class="u-url mention">'
                     f'@<span>{me.username}</span></a></span> ')
        html = f"<p>{html}{words}.</p>"
        if tags:
            html += "<p>" + " ".join(
                f'<a href="https://{LOCAL_DOMAIN}/tags/{t}" class="mention hashtag" rel="tag">#<span>{t}'
                f"</span></a>" for t in tags) + "</p>"
        media = [self._media(account) for _ in range(rng.choices((0, 1, 2), weights=(6, 3, 1))[0])]
        domain = account.domain
        return {
            "id": sid, "created_at": created, "in_reply_to_id": None, "in_reply_to_account_id": None,
            "sensitive": False, "spoiler_text": "", "visibility": visibility,
            "language": rng.choice(_LANGS),
            "uri": f"https://{domain}/users/{account.username}/statuses/{sid}",
            "url": f"https://{domain}/@{account.username}/{sid}",
            "replies_count": rng.randrange(0, 12), "reblogs_count": rng.randrange(0, 30),
            "favourites_count": rng.randrange(0, 90), "quotes_count": 0, "edited_at": None,
            "favourited": False, "reblogged": False, "muted": False, "bookmarked": False,
            "pinned": False, "content": html, "filtered": [], "reblog": None,
            "application": rng.choice(_APPS) if account.local else None,
            "account": account.to_json(created), "media_attachments": media, "mentions": mentions,
            "tags": [{"name": t, "url": f"https://{LOCAL_DOMAIN}/tags/{t}"} for t in tags],
            "emojis": [], "card": None, "poll": None,
        }

    def _media(self, account: Account) -> JsonObject:
        rng = self.rng
        self.media_ids += rng.randrange(1, 50)
        mid = str(self.media_ids)
        w, h = rng.choice(((1200, 800), (1080, 1350), (1920, 1080), (800, 800)))
        sw, sh = (640, round(640 * h / w))
        path = "/".join(mid.zfill(9)[i:i + 3] for i in range(0, 9, 3))
        base = f"https://files.{LOCAL_DOMAIN}/media_attachments/files/{path}"
        name = f"{rng.getrandbits(64):016x}"
        return {
            "id": mid, "type": "image", "url": f"{base}/original/{name}.jpeg",
            "preview_url": f"{base}/small/{name}.jpeg",
            "remote_url": None if account.local else f"https://{account.domain}/media/{name}.jpeg",
            "preview_remote_url": None, "text_url": None,
            "meta": {"original": {"width": w, "height": h, "size": f"{w}x{h}", "aspect": w / h},
                     "small": {"width": sw, "height": sh, "size": f"{sw}x{sh}", "aspect": sw / sh},
                     "focus": {"x": round(rng.uniform(-1, 1), 2), "y": round(rng.uniform(-1, 1), 2)}},
            "description": " ".join(rng.choices(_WORDS, k=rng.randrange(6, 20))).capitalize() + ".",
            "blurhash": "".join(rng.choices(_BLURHASH, k=36)),
        }

    def edited(self, status: JsonObject, seconds: float) -> JsonObject:
        """The same status after an edit (``status.update``)."""
        out = dict(status)
        out["edited_at"] = _iso(seconds)
        out["content"] = str(status["content"]).replace("</p>", " (edited)</p>", 1)
        return out

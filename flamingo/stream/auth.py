"""Request authentication for streaming APIs: HTTP Basic, OAuth 1.0a, Bearer.

Pure functions: nothing here does I/O, so the signature code is tested
against Twitter's worked example and reused by the emulator to *verify*
signatures the same way the service did.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import attrs

__all__ = [
    "BasicAuth",
    "BearerAuth",
    "OAuth1",
    "parse_oauth_header",
    "oauth1_signature",
    "percent_encode",
    "signature_base_string",
]


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding, as OAuth 1.0a requires (only unreserved kept)."""
    return quote(value, safe="-._~")


def _normalized_url(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, no query or fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


def signature_base_string(
    method: str, url: str, params: Iterable[tuple[str, str]]
) -> str:
    """The OAuth 1.0a signature base string (RFC 5849 section 3.4.1)."""
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    param_string = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join(
        [method.upper(), percent_encode(_normalized_url(url)), percent_encode(param_string)]
    )


def oauth1_signature(
    method: str,
    url: str,
    params: Iterable[tuple[str, str]],
    consumer_secret: str,
    token_secret: str = "",
) -> str:
    """HMAC-SHA1 signature over ``params`` (oauth_* + query + form body)."""
    base = signature_base_string(method, url, params)
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_oauth_header(value: str) -> dict[str, str]:
    """Parse ``OAuth k="v", ...`` into a dict of decoded values; ValueError if malformed."""
    if not value[:6].lower() == "oauth ":
        raise ValueError("not an OAuth authorization header")
    result: dict[str, str] = {}
    for item in value[6:].split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep or len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
            raise ValueError(f"malformed OAuth parameter {key!r}")
        result[unquote(key)] = unquote(raw[1:-1])
    return result


@attrs.frozen
class BasicAuth:
    """HTTP Basic, as the original Flamingo (and Twitter until 2010) used."""

    username: str
    password: str = attrs.field(repr=False)

    def header(self, method: str, url: str, params: Sequence[tuple[str, str]]) -> bytes:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}".encode("ascii")

    @property
    def identity(self) -> str:
        return self.username


@attrs.frozen
class BearerAuth:
    """OAuth 2 app-only bearer token (X API v2)."""

    token: str = attrs.field(repr=False)

    def header(self, method: str, url: str, params: Sequence[tuple[str, str]]) -> bytes:
        return f"Bearer {self.token}".encode("ascii")

    @property
    def identity(self) -> str:
        return "bearer"


@attrs.frozen
class OAuth1:
    """OAuth 1.0a user-context signing with HMAC-SHA1.

    ``clock`` and ``nonce`` are injectable so signing is deterministic in tests.
    """

    consumer_key: str
    consumer_secret: str = attrs.field(repr=False)
    token: str
    token_secret: str = attrs.field(repr=False)
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False, eq=False)
    nonce: Callable[[], str] = attrs.field(
        default=lambda: secrets.token_hex(16), repr=False, eq=False
    )

    def oauth_params(self) -> dict[str, str]:
        return {
            "oauth_consumer_key": self.consumer_key,
            "oauth_nonce": self.nonce(),
            "oauth_signature_method": "HMAC-SHA1",
            "oauth_timestamp": str(int(self.clock())),
            "oauth_token": self.token,
            "oauth_version": "1.0",
        }

    def header(self, method: str, url: str, params: Sequence[tuple[str, str]]) -> bytes:
        """The Authorization header for a request with these query/body params."""
        oauth = self.oauth_params()
        oauth["oauth_signature"] = oauth1_signature(
            method,
            url,
            list(params) + list(oauth.items()) + _query_params(url),
            self.consumer_secret,
            self.token_secret,
        )
        fields = ", ".join(
            f'{percent_encode(k)}="{percent_encode(v)}"' for k, v in sorted(oauth.items())
        )
        return f"OAuth {fields}".encode("ascii")

    @property
    def identity(self) -> str:
        return self.token


def _query_params(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


Auth = BasicAuth | BearerAuth | OAuth1


def redact(mapping: Mapping[str, object]) -> dict[str, object]:
    """Never let a secret reach a log line: mask values of secret-looking keys."""
    secretish = ("password", "secret", "token", "authorization")
    return {
        k: ("***" if any(s in k.lower() for s in secretish) and v else v)
        for k, v in mapping.items()
    }

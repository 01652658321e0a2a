"""Checking a request's credentials the way the service did.

HTTP Basic, Bearer and OAuth 1.0a (HMAC-SHA1 verified with the same
``flamingo.stream.auth`` functions the client signs with; a stale timestamp
or a reused nonce is refused). Returns the identity that owns the
connection (for the one-connection-per-account rule) or a reason.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

import attrs

from flamingo.emulator.options import EmulatorOptions
from flamingo.stream.auth import oauth1_signature, parse_oauth_header

__all__ = ["AuthChecker", "AuthResult"]


@attrs.frozen
class AuthResult:
    ok: bool
    identity: str | None
    reason: str = ""


def _eq(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


class AuthChecker:
    """Verifies Authorization headers against the configured credentials."""

    def __init__(self, options: EmulatorOptions, now: Callable[[], float]):
        self.options = options
        self.now = now
        self._nonces: dict[tuple[str, str], float] = {}

    def check(
        self, method: str, url: str, header: str | None, params: list[tuple[str, str]]
    ) -> AuthResult:
        """``url`` is scheme://host/path; ``params`` the query and form-body pairs."""
        opts = self.options
        scheme = (header or "").split(" ", 1)[0].lower()
        if not opts.auth_required:
            return AuthResult(True, self._loose_identity(scheme, header))
        if not header:
            return AuthResult(False, None, "no credentials")
        if scheme == "basic" and opts.user is not None:
            try:
                user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return AuthResult(False, None, "malformed basic credentials")
            if _eq(user, opts.user) and _eq(password, opts.password or ""):
                return AuthResult(True, user)
            return AuthResult(False, user, "bad user or password")
        if scheme == "bearer" and opts.bearer_token is not None:
            if _eq(header[7:].strip(), opts.bearer_token):
                return AuthResult(True, "bearer")
            return AuthResult(False, None, "bad bearer token")
        if scheme == "oauth" and opts.oauth_consumer_key is not None:
            return self._oauth(method, url, header, params)
        return AuthResult(False, None, f"{scheme or 'no'} authentication not accepted")

    def _loose_identity(self, scheme: str, header: str | None) -> str:
        try:
            if scheme == "basic" and header is not None:
                return base64.b64decode(header[6:].strip()).decode().partition(":")[0]
            if scheme == "oauth" and header is not None:
                return parse_oauth_header(header).get("oauth_token", "oauth")
        except (ValueError, UnicodeDecodeError):
            pass
        return "bearer" if scheme == "bearer" else "anonymous"

    def _oauth(self, method: str, url: str, header: str, params: list[tuple[str, str]]) -> AuthResult:
        opts = self.options
        try:
            oauth = parse_oauth_header(header)
        except ValueError as e:
            return AuthResult(False, None, str(e))
        token = oauth.get("oauth_token")
        if not _eq(oauth.get("oauth_consumer_key"), opts.oauth_consumer_key) or not _eq(token, opts.oauth_token):
            return AuthResult(False, token, "unknown consumer key or token")
        if oauth.get("oauth_signature_method") != "HMAC-SHA1":
            return AuthResult(False, token, "signature method must be HMAC-SHA1")
        try:
            timestamp = int(oauth.get("oauth_timestamp", ""))
        except ValueError:
            return AuthResult(False, token, "bad timestamp")
        now = self.now()
        if abs(now - timestamp) > opts.oauth_max_skew:
            return AuthResult(False, token, "timestamp out of bounds")
        nonce = oauth.get("oauth_nonce", "")
        if not nonce:
            return AuthResult(False, token, "no nonce")
        signature = oauth.pop("oauth_signature", "")
        expected = oauth1_signature(
            method,
            url,
            params + [(k, v) for k, v in oauth.items() if k != "realm"],
            opts.oauth_consumer_secret or "",
            opts.oauth_token_secret or "",
        )
        if not _eq(signature, expected):
            return AuthResult(False, token, "bad signature")
        # forget nonces older than the skew window, then refuse replays
        horizon = now - 2 * opts.oauth_max_skew
        self._nonces = {k: t for k, t in self._nonces.items() if t >= horizon}
        key = (str(timestamp), nonce)
        if key in self._nonces:
            return AuthResult(False, token, "nonce already used")
        self._nonces[key] = now
        return AuthResult(True, token)

"""The X API v2 scenario: ``source: x`` end to end, beside the v1.1 scenario of the same size.

The emulator speaks X's sample stream (default fields: id, text,
edit_history_tweet_ids, ~270 B a post) with a bearer token; flamingod reads
it as ``source: x`` (typing v2 lines, dropping repeated post ids before the
journal) into one raw subscription. Scenario 3 (v1.1 statuses of ~300 B) is
the number to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.daemon import Flamingod, SubSpec

__all__ = ["X_TOKEN", "EMULATOR_ARGS", "XFlamingod"]

X_TOKEN = "bench-x-bearer-token"
#: what bench.emuhost needs to speak X API v2
EMULATOR_ARGS = ("--source", "x", "--bearer-token", X_TOKEN)


class XFlamingod(Flamingod):
    """flamingod with ``source: x`` on X's sample stream (no username/password: a bearer token)."""

    def __init__(self, emulator_url: str, user: str, password: str, redis_port: int,
                 subs: Sequence[SubSpec], gzip: bool, stream: str = "sample",
                 overrides: dict[str, object] | None = None, base_dir: str | None = None) -> None:
        super().__init__(emulator_url, user, password, redis_port, subs, gzip, stream, overrides, base_dir)
        config: dict[str, Any] = self.config
        for key in ("username", "password", "auth"):
            config.pop(key, None)
        config.update({"source": "x", "bearer_token": X_TOKEN})

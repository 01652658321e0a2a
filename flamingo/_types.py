"""Type names shared across Flamingo's modules (as treq's ``_types``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = ["JsonMapping", "JsonObject", "RespReply"]

#: A JSON object as orjson/json (and YAML config files) give and take it: status
#: documents, snapshots, tweets, schemas. Its values are any JSON value, left
#: untyped here, once, rather than a recursive union every reader would have to narrow.
JsonObject = dict[str, Any]

#: The same, read-only.
JsonMapping = Mapping[str, Any]

#: A RESP (Redis protocol) reply as the blocking clients decode it: a bulk or
#: simple string, an integer, nil, or an array of replies.
RespReply: TypeAlias = "bytes | int | None | list[RespReply]"

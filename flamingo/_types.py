"""Type names shared across Flamingo's modules (as treq's ``_types``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JsonMapping", "JsonObject"]

#: A JSON object as orjson/json (and YAML config files) give and take it: status
#: documents, snapshots, tweets, schemas. Its values are any JSON value; ``Any``
#: here, once, rather than a recursive union every reader would have to narrow.
JsonObject = dict[str, Any]

#: The same, read-only.
JsonMapping = Mapping[str, Any]

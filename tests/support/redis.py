"""A real, private redis-server for the test session.

Started on first use on a free loopback port with persistence off, stopped
at interpreter exit. Tests isolate themselves by namespace (or FLUSHALL in
``fresh()``), never by assuming a server is already running. The starter
itself is the package's (flamingo/_redis_server.py, also used by
``make run``).
"""

from __future__ import annotations

import atexit

from flamingo._redis_server import RedisServer, free_port, redis_server_binary

__all__ = ["redis_server_binary", "free_port", "RedisServer", "shared_redis"]

_shared: RedisServer | None = None


def shared_redis() -> RedisServer:
    """The session's redis-server, started on first use."""
    global _shared
    if _shared is None or not _shared.ping():
        _shared = RedisServer().start()
        atexit.register(_shared.cleanup)
    return _shared

"""The whole daemon (FlamingoService) in the test's reactor, against the Streaming
API emulator and the test redis-server: the one set-up the daemon-level tests share."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import attrs
import yaml
from twisted.internet import defer, reactor

from flamingo.app import App
from flamingo.config import from_mapping
from tests.support.redis import free_port, shared_redis
from tests.support.waiting import until

__all__ = ["RunningDaemon", "start_daemon"]


@attrs.frozen
class RunningDaemon:
    """A started daemon: its service, the emulator it reads, and where it keeps things."""

    service: Any  # flamingo.service.FlamingoService
    emulator: Any
    dir: Path
    config_file: Path  # the same settings as YAML, for `flamingo -c`
    namespace: str
    url: str

    @property
    def app(self) -> App:
        return self.service.app  # type: ignore[no-any-return]


@defer.inlineCallbacks
def start_daemon(owner: Any, *, password: str = "pw", token: str | None = None,
                 rate: float = 20.0, size: str | None = None, track: tuple[str, ...] = (),
                 console: dict[str, Any] | None = None, debounce: float = 0.05,
                 prefix: str = "d", redis: Any = None) -> Any:
    """Start the daemon and its emulator (user ``u``); ``owner.addCleanup`` stops both.

    Fires with a :class:`RunningDaemon` once the store has loaded and the web
    port is listening.  ``track`` is written to Redis before the start;
    ``console`` is the console section (disabled when None); ``redis`` a
    RedisServer of the caller's (default: the shared test server).
    """
    from flamingo.service import FlamingoService
    from tests.support.emulator import start_emulator

    d = Path(tempfile.mkdtemp(prefix=f"flamingo-{prefix}-"))
    owner.addCleanup(shutil.rmtree, d, True)
    emu = start_emulator(owner, rate=rate, user="u", password=password,
                         **({"size": size} if size else {}))
    redis = redis if redis is not None else shared_redis()
    ns = prefix + uuid.uuid4().hex[:8]
    if track:
        redis.command("SADD", f"{ns}:streams:filter:track", *track)
    port = free_port()
    web: dict[str, Any] = {"host": f"127.0.0.1:{port}"}
    if token:
        web["token"] = token
    (d / "data").mkdir()
    raw = {
        "username": "u", "password": password, "stream": "filter",
        "api": {"url": emu.url}, "data_dir": str(d / "data"),
        "logging": {"dest": str(d / "flamingo.log")},
        "redis": {"host": redis.address, "namespace": ns},
        "web": web,
        "wader": {"debounce": debounce, "min_interval": 0, "gzip": False},
        "console": console if console is not None else {"enabled": False},
    }
    config_file = d / "flamingo.yml"
    config_file.write_text(yaml.safe_dump(raw))
    service = FlamingoService(from_mapping(raw, environ={}), reactor, install_signals=False)
    service.startService()
    owner.addCleanup(service.stopService)
    yield service.ready  # the store's first load; then the other parts start
    listening = service.getServiceNamed("web")
    yield until(lambda: getattr(listening, "_waitingForPort", None) is not None
                and listening._waitingForPort.called, 30)
    return RunningDaemon(service, emu, d, config_file, ns, f"http://127.0.0.1:{port}")

"""A ``source: x`` daemon (FlamingoService in the test's reactor) against the X emulator.

    d = yield start_x_daemon(self, rate=50)
    answer = yield d.rest("POST", "/streams/filter/rules.json", {"value": "love", "tag": "l"})
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import attrs
import treq
import yaml
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool

from flamingo.app import App
from flamingo.config import from_mapping
from tests.support.redis import free_port, shared_redis
from tests.support.waiting import until
from tests.support.xemu import start_x_emulator

__all__ = ["XDaemon", "start_x_daemon", "TOKEN"]

TOKEN = "x-app-bearer-token"


@attrs.frozen
class XDaemon:
    service: Any  # flamingo.service.FlamingoService
    emulator: Any
    dir: Path
    config_file: Path
    namespace: str
    url: str
    redis: Any

    @property
    def app(self) -> App:
        return self.service.app  # type: ignore[no-any-return]

    @defer.inlineCallbacks
    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """-> (status, JSON) of one REST call (a form body)."""
        kw: dict[str, Any] = {"data": body} if body is not None else {}
        pool = HTTPConnectionPool(reactor, persistent=False)  # nothing left open at the test's end
        response = yield treq.request(method, self.url + path, pool=pool, **kw)
        doc = yield response.json()
        return response.code, doc

    def queue(self, name: str) -> list[bytes]:
        return list(self.redis.command("LRANGE", f"{self.namespace}:queue:{name}", "0", "-1"))

    def subscribe(self, name: str, **fields: str) -> None:
        """A subscription written as the REST API writes it (hash + notice)."""
        r, ns = self.redis, self.namespace
        r.command("SADD", f"{ns}:subscriptions", name)
        r.command("HSET", f"{ns}:subscription:{name}", "format", fields.get("format", "raw"),
                  "types", fields.get("types", ""), "filter", "", "max_length", "",
                  "rules", fields.get("rules", ""))
        r.command("PUBLISH", f"{ns}:changes", f"subscriptions:{name}")


@defer.inlineCallbacks
def start_x_daemon(owner: Any, *, rate: float = 50.0, stream: str = "filter",
                   x: dict[str, Any] | None = None, emulator: Any = None,
                   data_dir: Path | None = None, namespace: str | None = None,
                   wader: dict[str, Any] | None = None, redis: Any = None,
                   **emulator_options: Any) -> Any:
    """The daemon (web on, console off) and, unless given, an X emulator; stopped at cleanup."""
    from flamingo.service import FlamingoService

    d = Path(tempfile.mkdtemp(prefix="flamingo-x-"))
    owner.addCleanup(shutil.rmtree, d, True)
    emu = emulator if emulator is not None else start_x_emulator(
        owner, rate=rate, bearer_token=TOKEN, **emulator_options)
    redis = redis if redis is not None else shared_redis()
    ns = namespace or "x" + uuid.uuid4().hex[:8]
    port = free_port()
    data = data_dir or d / "data"
    data.mkdir(exist_ok=True)
    raw = {
        "source": "x", "stream": stream, "bearer_token": TOKEN, "api": {"url": emu.url},
        "x": x or {}, "data_dir": str(data),
        "logging": {"dest": str(d / "flamingo.log")},
        "redis": {"host": redis.address, "namespace": ns},
        "web": {"host": f"127.0.0.1:{port}"},
        "wader": {"min_interval": 0, "gzip": False, **(wader or {})},
        "console": {"enabled": False},
    }
    config_file = d / "flamingo.yml"
    config_file.write_text(yaml.safe_dump(raw))
    service = FlamingoService(from_mapping(raw, environ={}), reactor, install_signals=False)
    service.startService()
    owner.addCleanup(service.stopService)
    yield service.ready
    listening = service.getServiceNamed("web")
    yield until(lambda: getattr(listening, "_waitingForPort", None) is not None
                and listening._waitingForPort.called, 30)
    return XDaemon(service, emu, d, config_file, ns, f"http://127.0.0.1:{port}", redis)

"""The README's console lines, end to end: ssh -> console -> Store (Redis) -> Wader -> emulator."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from flamingo.app import App
from flamingo.config import from_mapping
from flamingo.console import console_service
from tests.support.parts import make_stats
from tests.support.processes import keygen, run_ssh
from tests.support.redis import shared_redis
from tests.support.waiting import until


class Sink:
    def __init__(self) -> None:
        self.frames = 0

    def connection_started(self, request_line: str) -> None:
        pass

    def messages_received(self, frames: list[bytes]) -> None:
        self.frames += len(frames)


class ConsoleDrivesTheWader(unittest.TestCase):
    timeout = 40

    @defer.inlineCallbacks
    def test_track_terms_reach_the_stream(self) -> Any:
        from flamingo.dispatch.store import Store
        from flamingo.stream.wader import Wader
        from tests.support.emulator import start_emulator

        d = Path(tempfile.mkdtemp(prefix="flamingo-console-wader-"))
        self.addCleanup(shutil.rmtree, d, True)
        key = keygen(d, "id")
        (d / "authorized_keys").write_bytes((d / "id.pub").read_bytes())
        emu = start_emulator(self, rate=5, user="u", password="pw")
        redis = shared_redis()
        config = from_mapping({
            "username": "u", "password": "pw", "stream": "filter",
            "api": {"url": emu.url}, "data_dir": str(d / "data"),
            "redis": {"host": redis.address, "namespace": "cw" + uuid.uuid4().hex[:8]},
            "wader": {"debounce": 0, "min_interval": 0, "gzip": False},
            "console": {"listen": "tcp:0:interface=127.0.0.1",
                        "authorized_keys": str(d / "authorized_keys")},
        })
        store = Store.from_config(config, reactor=reactor)
        yield store.start()
        self.addCleanup(store.stop)
        yield store.set_param("filter", "track", ["first"])
        stats = make_stats()
        wader = Wader(config, reactor, store, Sink(), None)
        wader.startService()
        self.addCleanup(wader.stopService)
        yield until(lambda: wader.state.name == "connected")
        self.assertEqual(emu.journal[-1].params.get("track"), ["first"])

        app = App(config, reactor, store=store, stats=stats, wader=wader)
        console = console_service(app)
        yield console.startService()
        self.addCleanup(console.stopService)
        code, out, err = yield run_ssh(
            console.port.getHost().port, key,
            b"s = Stream.get('filter')\r"
            b"s.params['track'] = ['@cheaptweet', 'austin', '#etsy']\r"
            b"wader.state.name\r")
        self.assertEqual(code, 0, err)
        self.assertIn("'connected'", out)

        def reconnected() -> bool:
            streaming = [r for r in emu.journal if r.outcome == "streaming"]
            return bool(streaming) and streaming[-1].params.get("track", [""])[0] != "first"

        yield until(reconnected)
        terms = [r for r in emu.journal if r.outcome == "streaming"][-1].params["track"]
        self.assertEqual(sorted(",".join(terms).split(",")), ["#etsy", "@cheaptweet", "austin"])
        yield until(lambda: wader.state.name == "connected")

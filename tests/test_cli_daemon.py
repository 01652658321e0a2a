"""The CLI and the console against the real FlamingoService (the daemon twistd runs)."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.trial import unittest

from flamingo.config import load
from tests.support.redis import free_port, shared_redis
from tests.test_cli import run
from tests.test_console import clean, keygen, run_ssh
from tests.test_console_wader import until


class RealDaemon(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_cli_and_console_on_the_daemon(self) -> Any:
        from flamingo.service import FlamingoService
        from tests.support.emulator import start_emulator

        d = Path(tempfile.mkdtemp(prefix="flamingo-daemon-"))
        self.addCleanup(shutil.rmtree, d, True)
        key = keygen(d, "id")
        (d / "authorized_keys").write_bytes((d / "id.pub").read_bytes())
        emu = start_emulator(self, rate=5, user="u", password="pw")
        web_port, console_port = free_port(), free_port()
        raw = {
            "username": "u", "password": "pw", "stream": "filter",
            "api": {"url": emu.url}, "data_dir": str(d / "data"),
            "logging": {"dest": str(d / "flamingo.log")},
            "redis": {"host": shared_redis().address, "namespace": "d" + uuid.uuid4().hex[:8]},
            "web": {"host": f"127.0.0.1:{web_port}", "token": "tok"},
            "wader": {"debounce": 0, "min_interval": 0, "gzip": False},
            "console": {"listen": f"tcp:{console_port}:interface=127.0.0.1",
                        "authorized_keys": str(d / "authorized_keys")},
        }
        (d / "data").mkdir()
        cfg_file = d / "flamingo.yml"
        cfg_file.write_text(yaml.safe_dump(raw))
        daemon = FlamingoService(load(cfg_file), reactor, install_signals=False)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        env = {"HOME": str(d)}

        code, out, err = yield run(["-c", str(cfg_file), "stream", "filter", "set", "track",
                                    "austin", "#etsy"], env)
        self.assertEqual(code, 0, err)
        yield until(lambda: any(r.params.get("track") and "austin" in ",".join(r.params["track"])
                                for r in emu.journal if r.outcome == "streaming"))
        code, out, err = yield run(["-c", str(cfg_file), "status", "--json"], env)
        self.assertEqual(code, 0, err)
        self.assertIn(json.loads(out)["wader"]["name"], ("connected", "connecting"))

        code, out, err = yield run_ssh(console_port, key, b"sorted(Stream.get('filter').params['track'])\r")
        self.assertEqual(code, 0, err)
        self.assertIn("['#etsy', 'austin']", clean(out.encode()) if isinstance(out, bytes) else out)

        # The original's quick start, last steps: events reach `flamingo tail example`.
        code, out, err = yield run(["-c", str(cfg_file), "subscribe", "example"], env)
        self.assertEqual(code, 0, err)
        code, out, err = yield run(["-c", str(cfg_file), "tail", "example", "-n", "2",
                                    "--idle", "20"], env)
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        for line in lines:
            json.loads(line)

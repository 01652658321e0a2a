"""The CLI and the console against the real FlamingoService (the daemon twistd runs)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.daemon import start_daemon
from tests.support.processes import clean, keygen, run, run_ssh
from tests.support.redis import free_port
from tests.support.waiting import until


class RealDaemon(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_cli_and_console_on_the_daemon(self) -> Any:
        d = Path(tempfile.mkdtemp(prefix="flamingo-keys-"))
        self.addCleanup(shutil.rmtree, d, True)
        key = keygen(d, "id")
        (d / "authorized_keys").write_bytes((d / "id.pub").read_bytes())
        console_port = free_port()
        live = yield start_daemon(self, rate=5, token="tok", debounce=0, console={
            "listen": f"tcp:{console_port}:interface=127.0.0.1",
            "authorized_keys": str(d / "authorized_keys")})
        emu, cfg_file = live.emulator, live.config_file
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

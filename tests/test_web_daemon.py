"""The REST API of the whole daemon (FlamingoService in-process) against the
Streaming API emulator and the test redis-server: a params change over REST
reconnects the wader with the new predicates (the emulator's connection
journal shows them), status/health/metrics reflect the live parts."""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests.support.daemon import start_daemon
from tests.support.parts import SECRET_PASSWORD, SECRET_TOKEN
from tests.support.waiting import until

TOKEN_HEADER = {"Authorization": f"Bearer {SECRET_TOKEN}"}


class DaemonApiTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_params_change_over_rest_reconnects_with_new_predicates(self) -> Any:
        live = yield start_daemon(self, password=SECRET_PASSWORD, token=SECRET_TOKEN, prefix="wd")
        daemon, emu = live.service, live.emulator

        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        http = HTTPClient(Agent(reactor, pool=pool))
        base = live.url

        @defer.inlineCallbacks
        def call(method: str, path: str, status: int = 200, **kw: Any) -> Any:
            kw.setdefault("headers", TOKEN_HEADER)
            response = yield http.request(method, base + path, **kw)
            body = yield response.content()
            self.assertEqual(response.code, status, body)
            for secret in (SECRET_PASSWORD, SECRET_TOKEN):
                self.assertNotIn(secret.encode(), body)
            ctype = response.headers.getRawHeaders("content-type", [""])[0]
            return json.loads(body) if ctype.startswith("application/json") else body

        yield call("GET", "/status.json", 401, headers={})
        doc = yield call("PUT", "/streams/filter.json?track=austin,cheaptweet")
        self.assertEqual(doc["params"], {"track": ["austin", "cheaptweet"]})
        yield until(lambda: any(r.outcome == "streaming" and r.params.get("track")
                                and "austin" in ",".join(r.params["track"]) for r in emu.journal))
        yield until(lambda: daemon.app.wader.state.name == "connected")

        values = yield call("POST", "/streams/filter/track.json?add=etsy&remove=cheaptweet")
        self.assertEqual(values, ["austin", "etsy"])
        yield until(lambda: any(r.outcome == "streaming" and
                                sorted(",".join(r.params.get("track", [])).split(","))
                                == ["austin", "etsy"] for r in emu.journal))

        status = yield call("GET", "/status.json")
        self.assertIn(status["state"], ("connected", "connecting"))
        self.assertEqual(status["redis"], {"available": True})
        self.assertEqual(status["stream"]["params"], {"track": ["austin", "etsy"]})

        streaming = sum(1 for r in emu.journal if r.outcome == "streaming")
        doc = yield call("POST", "/wader/restart.json")
        self.assertTrue(doc["restarting"])
        yield until(lambda: sum(1 for r in emu.journal if r.outcome == "streaming") > streaming)

        yield until(lambda: (daemon.app.stats.snapshot()["events"]["total"] or 0) > 0)
        health = yield call("GET", "/health")
        self.assertEqual(health["status"], "ok", health)
        ready = yield call("GET", "/ready")  # the real sink's status: moving, no error
        self.assertEqual(ready, {"status": "ready", "reasons": []})
        yield call("GET", "/ready", 403, headers={**TOKEN_HEADER, "Origin": "http://evil.example"})
        metrics = yield call("GET", "/metrics")
        self.assertIn(b'flamingo_wader_state{flamingo_wader_state="', metrics)
        self.assertIn(b"flamingo_events_total{type=", metrics)
        meta = yield call("GET", "/meta.json")
        self.assertGreater(meta["events"]["total"], 0)

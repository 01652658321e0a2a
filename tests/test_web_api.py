"""The REST API with a real Store on the test redis-server: every route, every
error status, token auth.  In memory through treq's StubTreq (the real guard,
routes and handlers, no port), except where the wire matters (body limits)."""

from __future__ import annotations

import json
import socket
from typing import Any

import attrs
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from flamingo.web import documents
from flamingo.web.openapi import SCHEMAS
from tests.support.http import Server, Stub
from tests.support.parts import SECRET_PASSWORD, SECRET_TOKEN, make_app, make_config, make_store
from tests.support.redis import free_port

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class ApiTestCase(unittest.TestCase):
    timeout = 30
    token: str | None = None
    max_body: int | None = None
    #: How requests reach the API: in memory, or over a loopback socket.
    surface: Any = Stub

    @defer.inlineCallbacks
    def setUp(self):
        self.config = make_config(token=self.token, max_body=self.max_body)
        self.store = yield make_store(self)
        self.app = make_app(self.config, self.store)
        self.server = self.surface(self, self.app)
        self.bodies: list[bytes] = []

    @defer.inlineCallbacks
    def call(self, method, path, status=200, **kw):
        if self.token and "token" not in kw:
            kw["token"] = self.token
        response, body, parsed = yield self.server.request(method, path, **kw)
        self.bodies.append(body)
        self.assertEqual(response.code, status, f"{method} {path}: {body!r}")
        for secret in (SECRET_PASSWORD, SECRET_TOKEN):
            self.assertNotIn(secret.encode(), body)
        if status >= 400 and parsed is not None:
            self.assertLessEqual({"error", "detail"}, set(parsed), parsed)
        return response, body, parsed


class OriginalRoutesTests(ApiTestCase):
    @defer.inlineCallbacks
    def test_index_text_and_json(self):
        response, body, _ = yield self.call("GET", "/")
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        lines = body.decode().splitlines()
        self.assertEqual(lines, sorted(lines))
        for line in ("GET /meta.json", "PUT /streams/:name.json", "POST /streams/:name/:key.json",
                     "DELETE /subscriptions/:name.json", "GET /metrics"):
            self.assertIn(line, lines)
        _, _, doc = yield self.call("GET", "/", headers={"Accept": "application/json"})
        self.assertIn({"method": "GET", "path": "/status.json",
                       "summary": doc["resources"][0]["summary"].__class__(
                           [r for r in doc["resources"] if r["path"] == "/status.json"][0]
                           ["summary"])}, doc["resources"])

    @defer.inlineCallbacks
    def test_meta(self):
        _, _, meta = yield self.call("GET", "/meta.json")
        self.assertEqual(meta["events"]["by_type"]["tweet"], 40)
        self.assertEqual(meta["stream"], "filter")
        self.assertEqual(meta["wader"]["name"], "connected")
        self.assertIsInstance(meta["process"]["pid"], int)
        self.assertEqual(meta["process"]["host"], socket.gethostname())  # as the original's Meta
        self.assertGreaterEqual(meta["process"]["uptime"], 5)
        self.assertIs(meta["process"]["running"], True)
        self.assertEqual(SCHEMAS["Process"]["properties"]["running"], {"type": "boolean"})
        self.app.wader.state = attrs.evolve(self.app.wader.state, name="stopped")
        _, _, meta = yield self.call("GET", "/meta.json")
        self.assertIs(meta["process"]["running"], False)

    @defer.inlineCallbacks
    def test_stream_put_get_and_change_notification(self):
        changes = []
        self.store.on_change(lambda kind, name: changes.append((kind, name)))
        _, _, doc = yield self.call("GET", "/streams/filter.json")
        self.assertEqual(doc, {"name": "filter", "resource": "statuses/filter", "params": {}})
        _, _, doc = yield self.call("PUT", "/streams/filter.json?track=cats,dogs&follow=12,34")
        self.assertEqual(doc["params"], {"follow": ["12", "34"], "track": ["cats", "dogs"]})
        self.assertEqual(doc["wader"]["name"], "connected")
        self.assertIn(("params", "filter"), changes)
        _, _, values = yield self.call("GET", "/streams/filter/track.json")
        self.assertEqual(values, ["cats", "dogs"])
        _, _, values = yield self.call("GET", "/streams/filter/language.json")
        self.assertEqual(values, [])  # as the original: an unset param is empty
        self.assertEqual(self.store.params("filter")["follow"], ["12", "34"])

    @defer.inlineCallbacks
    def test_key_routes(self):
        yield self.call("PUT", "/streams/filter.json?track=a")
        response, _, values = yield self.call("POST", "/streams/filter/track.json?values=b,c")
        self.assertEqual(values, ["a", "b", "c"])
        self.assertEqual(response.headers.getRawHeaders("flamingo-wader-state"), ["connected"])
        _, _, values = yield self.call("POST", "/streams/filter/track.json?add=d&remove=a,b")
        self.assertEqual(values, ["c", "d"])
        _, _, values = yield self.call("PUT", "/streams/filter/track.json?values=x,y")
        self.assertEqual(values, ["x", "y"])
        _, _, values = yield self.call("DELETE", "/streams/filter/track.json?values=x")
        self.assertEqual(values, ["y"])
        yield self.call("PUT", "/streams/filter/follow.json?values=1")
        _, _, values = yield self.call("DELETE", "/streams/filter/track.json")
        self.assertEqual(values, [])
        self.assertEqual(self.store.params("filter"), {"follow": ["1"]})
        # deleting what is not there answers [] as the original did
        _, _, values = yield self.call("DELETE", "/streams/filter/language.json")
        self.assertEqual(values, [])

    @defer.inlineCallbacks
    def test_json_and_form_bodies(self):
        _, _, doc = yield self.call("PUT", "/streams/filter.json", headers=JSON,
                                    data=json.dumps({"track": ["json one", "two"],
                                                     "follow": "5,6"}).encode())
        self.assertEqual(doc["params"], {"follow": ["5", "6"], "track": ["json one", "two"]})
        _, _, values = yield self.call("POST", "/streams/filter/track.json", headers=FORM,
                                       data=b"add=three&remove=two")
        self.assertEqual(values, ["json one", "three"])
        _, _, values = yield self.call("PUT", "/streams/filter/follow.json", headers=JSON,
                                       data=b'{"values": [7, 8]}')
        self.assertEqual(values, ["7", "8"])

    @defer.inlineCallbacks
    def test_subscriptions(self):
        _, _, subs = yield self.call("GET", "/subscriptions.json")
        self.assertEqual(subs, [])
        _, _, sub = yield self.call("POST", "/subscriptions.json?name=plain")
        self.assertEqual(sub["name"], "plain")
        self.assertEqual(sub["format"], "raw")
        self.assertEqual(sub["queue"], f"{self.store.namespace}:queue:plain")
        _, _, sub = yield self.call("POST", "/subscriptions.json", headers=JSON, data=json.dumps(
            {"name": "jobs", "format": "resque", "types": ["tweet", "delete"],
             "filter": "cats,dogs", "max_length": 100}).encode())
        self.assertEqual(sub, {"name": "jobs", "format": "resque", "types": ["delete", "tweet"],
                               "filter": ["cats", "dogs"], "max_length": 100,
                               "queue": "resque:queue:jobs"})
        _, _, subs = yield self.call("GET", "/subscriptions.json")
        self.assertEqual([s["name"] for s in subs], ["jobs", "plain"])
        _, _, sub = yield self.call("GET", "/subscriptions/jobs.json")
        self.assertEqual(sub["max_length"], 100)
        _, _, sub = yield self.call("PATCH", "/subscriptions/jobs.json?format=envelope&max_length=")
        self.assertEqual((sub["format"], sub["max_length"], sub["types"]),
                         ("envelope", None, ["delete", "tweet"]))
        self.assertEqual(self.store.subscriptions()["jobs"].format, "envelope")
        _, _, sub = yield self.call("DELETE", "/subscriptions/jobs.json?drop_queue=true")
        self.assertEqual((sub["name"], sub["deleted"], sub["queue_dropped"]), ("jobs", True, True))
        yield self.call("GET", "/subscriptions/jobs.json", 404)
        yield self.call("DELETE", "/subscriptions/jobs.json", 404)
        yield self.call("PATCH", "/subscriptions/jobs.json?format=raw", 404)
        self.assertEqual(list(self.store.subscriptions()), ["plain"])


class NewRoutesTests(ApiTestCase):
    @defer.inlineCallbacks
    def test_meta_and_status_are_the_shared_documents(self):
        """REST serves what the console's meta()/status() print: one builder, no drift."""
        self.maxDiff = None
        for path, build in (("/meta.json", documents.meta_document),
                            ("/status.json", documents.status_document)):
            _, _, served = yield self.call("GET", path)
            built = json.loads(json.dumps(build(self.app, reactor.seconds()), default=str))
            for doc in (served, built):
                doc["process"].pop("uptime")
                for moving in ("time", "rates"):  # the stats clock: read at two instants
                    doc.pop(moving, None)
            self.assertEqual(served, built, path)

    @defer.inlineCallbacks
    def test_status(self):
        yield self.call("PUT", "/streams/filter.json?track=cats")
        _, _, status = yield self.call("GET", "/status.json")
        self.assertEqual(status["state"], "connected")
        self.assertEqual(status["request_line"], "POST /1.1/statuses/filter.json track=cats")
        self.assertEqual(status["connected_since"], 1700000000.0)
        self.assertEqual(status["journal_backlog"], 5)
        self.assertEqual(status["redis"], {"available": True})
        self.assertEqual(status["stream"], {"name": "filter", "params": {"track": ["cats"]}})

    @defer.inlineCallbacks
    def test_wader_restart(self):
        _, _, doc = yield self.call("POST", "/wader/restart.json")
        self.assertEqual(self.app.wader.restarts, 1)
        self.assertEqual(doc["restarting"], True)
        self.assertEqual(doc["wader"]["name"], "connecting")
        yield self.call("GET", "/wader/restart.json", 405)

    @defer.inlineCallbacks
    def test_metrics(self):
        response, body, _ = yield self.call("GET", "/metrics")
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        text = body.decode()
        for line in ('flamingo_events_total{type="tweet"} 40.0',
                     'flamingo_connection_attempts_total{cause="network"} 2.0',
                     'flamingo_event_rate{window="1m"}',
                     'flamingo_wader_state{flamingo_wader_state="connected"} 1.0',
                     'flamingo_wader_state{flamingo_wader_state="fatal"} 0.0',
                     "flamingo_journal_backlog 5.0",
                     "flamingo_journal_writable 1.0",
                     'flamingo_queue_length{subscription="q1"} 12.0',
                     'flamingo_queue_trimmed_total{subscription="q1"} 4.0',
                     "flamingo_limit_skipped 7.0",
                     "flamingo_coverage_percent 85.106",
                     "flamingo_duplicates_total 3.0",
                     "flamingo_redis_up 1.0",
                     "flamingo_sink_pacing 1.0",
                     "flamingo_sink_paced_seconds_total 1.5",
                     "flamingo_sink_pace_suspended_seconds 0.0",
                     "flamingo_sink_memory_dropped_total 9.0"):
            self.assertIn(line, text)
        # and it parses as Prometheus text
        from prometheus_client.parser import text_string_to_metric_families

        names = {f.name for f in text_string_to_metric_families(text)}
        self.assertLessEqual({"flamingo_events", "flamingo_wader_state",
                              "flamingo_journal_backlog"}, names)

    @defer.inlineCallbacks
    def test_health(self):
        _, _, doc = yield self.call("GET", "/health")
        self.assertEqual(doc["status"], "ok")
        self.app.delivery.journal.update(writable=False, error="disk full")
        _, _, doc = yield self.call("GET", "/health", 503)
        self.assertEqual(doc["status"], "unhealthy")
        self.assertIn("journal: disk full", doc["reason"])

    @defer.inlineCallbacks
    def test_openapi_lists_every_route(self):
        from flamingo.web.routes import ROUTES

        _, _, doc = yield self.call("GET", "/openapi.json")
        self.assertTrue(doc["openapi"].startswith("3."))
        for r in ROUTES:
            self.assertIn(r.method.lower(), doc["paths"][r.openapi_path])


class ErrorTests(ApiTestCase):
    max_body = 64 * 1024
    surface = Server  # body limits are enforced while the bytes arrive

    @defer.inlineCallbacks
    def test_400_malformed(self):
        _, _, e = yield self.call("PUT", "/streams/filter.json", 400, headers=JSON, data=b"{nope")
        self.assertEqual(e["error"], "body is not valid JSON")
        yield self.call("PUT", "/streams/filter.json", 400, headers=JSON, data=b"[1,2]")
        yield self.call("PUT", "/streams/filter.json", 400, headers=JSON,
                        data=b'{"track": {"a": 1}}')
        yield self.call("PUT", "/streams/filter.json", 400, headers={"Content-Type": "text/xml"},
                        data=b"<track/>")
        yield self.call("PUT", "/streams/filter.json", 400)  # nothing to set
        yield self.call("PUT", "/streams/filter/track.json", 400)  # no values
        yield self.call("POST", "/streams/filter/track.json", 400)
        yield self.call("POST", "/subscriptions.json", 400)  # no name
        yield self.call("POST", "/subscriptions.json?name=x&max_length=lots", 400)
        yield self.call("POST", "/subscriptions.json?name=x")
        yield self.call("DELETE", "/subscriptions/x.json?drop_queue=maybe", 400)
        yield self.call("PATCH", "/subscriptions/x.json", 400)  # no options
        yield self.call("PATCH", "/subscriptions/x.json?name=y", 400)  # no renaming

    @defer.inlineCallbacks
    def test_404(self):
        _, _, e = yield self.call("GET", "/streams/nope.json", 404)
        self.assertIn("filter", e["detail"]["streams"])
        yield self.call("PUT", "/streams/nope.json?track=a", 404)
        yield self.call("POST", "/streams/nope/track.json?values=a", 404)
        _, _, e = yield self.call("GET", "/no/such/route", 404)
        self.assertEqual(e["error"], "no such route")
        yield self.call("GET", "/subscriptions/ghost.json", 404)

    @defer.inlineCallbacks
    def test_405(self):
        response, _, e = yield self.call("DELETE", "/streams/filter.json", 405)
        self.assertEqual(e["detail"]["allowed"], ["GET", "HEAD", "PUT"])
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET, HEAD, PUT"])
        yield self.call("POST", "/meta.json", 405)
        yield self.call("PUT", "/subscriptions.json", 405)

    @defer.inlineCallbacks
    def test_413(self):
        _, _, e = yield self.call("PUT", "/streams/filter.json", 413, headers=JSON,
                                  data=json.dumps({"track": ["x" * 50] * 1400}).encode())
        self.assertIn("web.max_body", e["detail"]["limit"])
        self.assertEqual(self.store.params("filter"), {})
        # a chunked body (no Content-Length) is counted as it arrives
        import io

        from twisted.web.client import FileBodyProducer

        big = io.BytesIO(b"track=" + b"x" * (70 * 1024))
        from twisted.web.iweb import UNKNOWN_LENGTH

        producer = FileBodyProducer(big)
        producer.length = UNKNOWN_LENGTH  # chunked transfer encoding
        _, _, e = yield self.call("PUT", "/streams/filter.json", 413, headers=FORM, data=producer)
        self.assertEqual(e["detail"]["size"], 6 + 70 * 1024)

    def test_endpoint_description(self):
        from flamingo.web.server import endpoint_description

        self.assertEqual(endpoint_description("127.0.0.1", 4711), "tcp:4711:interface=127.0.0.1")
        self.assertEqual(endpoint_description("::1", 80), "tcp:80:interface=\\:\\:1")

    @defer.inlineCallbacks
    def test_422_streaming_api_limits(self):
        many = ",".join(f"t{i}" for i in range(401))
        _, _, e = yield self.call("PUT", "/streams/filter.json", 422, headers=FORM,
                                  data=f"track={many}".encode())
        self.assertEqual(e["detail"]["field"], "track")
        self.assertIn("400", e["detail"]["limit"])
        _, _, e = yield self.call("PUT", "/streams/filter.json?track=" + "x" * 61, 422)
        self.assertIn("60", e["detail"]["limit"])
        _, _, e = yield self.call("PUT", "/streams/filter.json?locations=1,2,3", 422)
        self.assertEqual(e["detail"]["field"], "locations")
        _, _, e = yield self.call("PUT", "/streams/filter.json?locations=-122.75,36.8,-121.75,99", 422)
        self.assertEqual(e["detail"]["field"], "locations")
        ids = ",".join(str(i) for i in range(1, 5002))
        _, _, e = yield self.call("PUT", "/streams/filter.json", 422, headers=FORM,
                                  data=f"follow={ids}".encode())
        self.assertIn("5000", e["detail"]["limit"])
        _, _, e = yield self.call("POST", "/subscriptions.json?name=bad%20name", 422)
        self.assertEqual(e["detail"]["field"], "name")
        self.assertIn("[A-Za-z0-9_.:-]{1,64}", e["error"])
        _, _, e = yield self.call("POST", "/subscriptions.json?name=ok&format=xml", 422)
        self.assertEqual(e["detail"]["field"], "format")
        self.assertEqual(self.store.params("filter"), {})


class RedisDownTests(ApiTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.config = make_config()
        # Store.stop leaves its in-flight health-check ping's timeout behind
        # (reported); let it fire before trial checks the reactor.
        self.addCleanup(task.deferLater, reactor, 0.4, lambda: None)
        self.store = yield make_store(self, redis_port=free_port(), timeout=0.3)
        self.app = make_app(self.config, self.store)
        self.server = self.surface(self, self.app)
        self.bodies = []

    @defer.inlineCallbacks
    def test_writes_503_reads_work_live_but_not_ready(self):
        self.assertFalse(self.store.available)
        _, _, e = yield self.call("PUT", "/streams/filter.json?track=a", 503)
        self.assertEqual(e["error"], "redis unavailable")
        yield self.call("POST", "/streams/filter/track.json?values=a", 503)
        yield self.call("POST", "/subscriptions.json?name=q", 503)
        yield self.call("GET", "/streams/filter.json")
        _, _, status = yield self.call("GET", "/status.json")
        self.assertEqual(status["redis"], {"available": False})
        # liveness: a restart would not bring Redis back, so /health stays 200
        _, _, doc = yield self.call("GET", "/health")
        self.assertEqual(doc["status"], "ok")
        _, _, doc = yield self.call("GET", "/ready", 503)
        self.assertEqual(doc["reasons"], [{"reason": "store", "detail": "redis unreachable"}])
        self.assertIn("store: redis unreachable", doc["detail"])


class TokenTests(ApiTestCase):
    token = SECRET_TOKEN

    @defer.inlineCallbacks
    def test_every_request_needs_the_token(self):
        for method, path in (("GET", "/"), ("GET", "/meta.json"), ("GET", "/no/such/route"),
                             ("DELETE", "/meta.json"), ("PUT", "/streams/filter.json?track=a"),
                             ("GET", "/metrics"), ("GET", "/openapi.json")):
            response, _, e = yield self.call(method, path, 401, token="")
            self.assertEqual(e["error"], "unauthorized")
            self.assertEqual(response.headers.getRawHeaders("www-authenticate"),
                             ['Bearer realm="flamingo"'])
        yield self.call("GET", "/meta.json", 401, token="wrong")
        yield self.call("GET", "/meta.json", 401, token=SECRET_TOKEN + "x")
        yield self.call("GET", "/meta.json", 401, token="",
                        headers={"Authorization": f"Basic {SECRET_TOKEN}"})
        self.assertEqual(self.store.params("filter"), {})
        yield self.call("GET", "/meta.json")
        yield self.call("PUT", "/streams/filter.json?track=a")
        yield self.call("GET", "/no/such/route", 404)


class LoggingTests(ApiTestCase):
    token = SECRET_TOKEN

    @defer.inlineCallbacks
    def test_requests_logged_without_bodies_or_secrets(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        yield self.call("PUT", "/streams/filter.json?track=secretterm", headers=FORM,
                        data=b"follow=424242")
        yield self.call("GET", "/nowhere", 404)
        mine = [e for e in events if e.get("log_namespace") == "flamingo.web"
                and "method" in e]
        self.assertEqual([(e["method"], e["path"], e["status"]) for e in mine],
                         [("PUT", "/streams/filter.json", 200), ("GET", "/nowhere", 404)])
        self.assertEqual(mine[0]["log_level"].name, "info")
        text = repr(events)
        for s in (SECRET_TOKEN, SECRET_PASSWORD, "424242", "secretterm"):
            self.assertNotIn(s, text)

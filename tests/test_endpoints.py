"""Which request opens which stream, and the request line shown in logs."""

from __future__ import annotations

from urllib.parse import parse_qs

from twisted.trial.unittest import SynchronousTestCase

from flamingo.config import from_mapping
from flamingo.stream.endpoints import V11Endpoint, endpoint_for

BASE = "https://stream.twitter.com"


class V11Tests(SynchronousTestCase):
    def test_filter_is_post_form(self) -> None:
        e = V11Endpoint(BASE, "filter")
        r = e.request({"track": ["#etsy", "austin", "cheaptweet"], "follow": ["12", "13"],
                       "language": ["en"], "bogus": ["x"]})
        self.assertEqual(r.method, "POST")
        self.assertEqual(r.url, BASE + "/1.1/statuses/filter.json")
        self.assertEqual(r.content_type, b"application/x-www-form-urlencoded")
        body = parse_qs(r.body.decode())
        self.assertEqual(body, {"track": ["#etsy,austin,cheaptweet"], "follow": ["12,13"],
                                "language": ["en"], "delimited": ["length"],
                                "stall_warnings": ["true"]})
        self.assertEqual(r.request_line,
                         "/1.1/statuses/filter.json?track=%23etsy,austin,cheaptweet"
                         "&follow=12,13&language=en")

    def test_original_request_line(self) -> None:
        r = V11Endpoint(BASE, "filter").request({"track": ["#etsy", "austin", "cheaptweet"]})
        self.assertEqual(r.request_line, "/1.1/statuses/filter.json?track=%23etsy,austin,cheaptweet")

    def test_locations_and_filter_level(self) -> None:
        r = V11Endpoint(BASE, "filter").request(
            {"locations": ["-122.75,36.8,-121.75,37.8"], "filter_level": ["low"]})
        body = parse_qs(r.body.decode())
        self.assertEqual(body["locations"], ["-122.75,36.8,-121.75,37.8"])
        self.assertEqual(body["filter_level"], ["low"])

    def test_switches_configurable(self) -> None:
        r = V11Endpoint(BASE, "filter", delimited=False, stall_warnings=False).request(
            {"track": ["a"]})
        self.assertEqual(parse_qs(r.body.decode()), {"track": ["a"]})

    def test_sample_and_firehose_are_get(self) -> None:
        for stream in ("sample", "firehose"):
            e = V11Endpoint(BASE, stream)
            r = e.request({})
            self.assertEqual(r.method, "GET")
            self.assertIsNone(r.body)
            self.assertEqual(r.url, f"{BASE}/1.1/statuses/{stream}.json"
                             "?delimited=length&stall_warnings=true")
            self.assertEqual(r.request_line, f"/1.1/statuses/{stream}.json")
            self.assertFalse(e.needs_params())

    def test_needs_params(self) -> None:
        e = V11Endpoint(BASE, "filter")
        self.assertTrue(e.needs_params())
        self.assertFalse(e.has_params({}))
        self.assertFalse(e.has_params({"language": ["en"]}))  # not a predicate
        self.assertTrue(e.has_params({"follow": ["1"]}))

    def test_from_config(self) -> None:
        c = from_mapping({"username": "u", "password": "p", "stream": "sample",
                          "api": {"url": "http://127.0.0.1:8080/"}, "wader": {"delimited": False}})
        e = endpoint_for(c)
        r = e.request({})
        self.assertEqual(r.url, "http://127.0.0.1:8080/1.1/statuses/sample.json?stall_warnings=true")

    def test_no_secret_in_request_line(self) -> None:
        c = from_mapping({"username": "u", "password": "hunter2"})
        r = endpoint_for(c).request({"track": ["x"]})
        self.assertNotIn("hunter2", r.request_line + r.url)

"""``redis.memory_max``: validated, passed to the sink, and bounding what the sink holds."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from flamingo.config import ConfigError, from_mapping
from flamingo.dispatch.redis_sink import RedisSink

BASIC = {"username": "u", "password": "p"}


class _Journal:
    dir = "/nonexistent"
    last_seq = 0
    first_seq = 1


class MemoryMaxTests(SynchronousTestCase):
    def test_default_and_override_reach_the_sink(self) -> None:
        c = from_mapping(BASIC, environ={})
        self.assertEqual(c.redis.memory_max, 16 << 20)
        self.assertEqual(RedisSink.from_config(c, _Journal(), dict).max_memory, 16 << 20)
        c = from_mapping({**BASIC, "redis": {"memory_max": 4 << 20}}, environ={})
        self.assertEqual(RedisSink.from_config(c, _Journal(), dict).max_memory, 4 << 20)

    def test_too_small_or_not_a_number_is_refused(self) -> None:
        for bad in (1000, -1, "lots", True):
            with self.assertRaises(ConfigError) as cm:
                from_mapping({**BASIC, "redis": {"memory_max": bad}}, environ={})
            self.assertIn("redis.memory_max", str(cm.exception))

    def test_journaled_batches_beyond_the_cap_are_dropped_from_memory(self) -> None:
        sink = RedisSink(_Journal(), dict, max_memory=1 << 20)
        frame = b"x" * 1000
        for i in range(3000):  # 3 MB journaled, Redis away (nothing pumps)
            sink.deliver(i + 1, 1, [frame], ["tweet"])
        self.assertLessEqual(sink.status()["memory_bytes"], 1 << 20)
        self.assertGreater(sink.memory_dropped, 0)
        self.assertEqual(sink.lost_events, 0)

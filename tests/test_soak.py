"""One minute of the chaos soak (``make soak`` runs ten): the real daemon, Redis and emulator.

``python -m bench.soak`` runs as a child process exactly as ``make soak``
does, with a fixed seed whose first minute holds a deleted event-log file
the sink still needs, a Redis restarted empty, a stream close and a daemon
restart while Redis is down. The verdict is the
soak's own: every event of the event log in every queue that wants it
exactly once, gaps only where a file was deleted, ``/ready`` 200 at the end,
RSS under 200 MB. Nothing here measures time; the soak's waits are bounded
(delivery that stands still for 45 s counts as stuck).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
SEED = 350  # delete-segment, redis-wipe, stream-close, daemon-restart-redis-down within 60 s
RUN_BOUND = 900  # seconds: 60 s of faults, the drain (at most 180 s), start and stop


class SoakTests(SynchronousTestCase):
    def test_one_minute_of_faults_keeps_every_event_exactly_once(self) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.soak", "--duration", "60", "--seed", str(SEED), "--rate", "1500"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_BOUND)
        report = proc.stdout.decode(errors="replace")
        self.assertIn(f"soak: seed {SEED}", report)
        self.assertIn("VERDICT: PASS", report, report[-8000:])
        self.assertEqual(proc.returncode, 0, report[-8000:])

"""pytest runs the suite; the tests are twisted.trial TestCases (Deferred-aware,
with trial's clean-reactor checks).

Hypothesis profiles: property tests must never fail on machine speed (CI is a
loaded 2-core machine), so the default profile has no deadline and does not
treat slow data generation as a failure. `HYPOTHESIS_PROFILE=thorough` runs
ten times the examples for a deeper search on a quiet machine.
"""

import os

from hypothesis import HealthCheck, settings

_SPEED_INDEPENDENT = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

settings.register_profile("default", **_SPEED_INDEPENDENT)
settings.register_profile("thorough", **_SPEED_INDEPENDENT, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

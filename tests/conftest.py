"""pytest runs the suite; the tests are twisted.trial TestCases (Deferred-aware,
with trial's clean-reactor checks)."""

"""The chaos soak: flamingod against the emulator under a seeded schedule of faults.

``python -m bench.soak --duration 600 --seed N --faults ...`` (``make soak``).
See docs/reliability.md for what it checks and what each fault proves.
"""

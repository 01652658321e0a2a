"""Flamingo's end-to-end benchmark (``make bench``, ``python -m bench``).

A run starts its own redis-server, the Streaming API emulator and flamingod
(``twistd -n flamingo``) as subprocesses, measures them from the outside
(Redis counts, psutil on the daemon's pid), and sets the numbers side by side
with the limits of the machine (``redis-benchmark``, ``curl``) and with a
baseline consumer (``bench/baseline.py``) a user would write instead.
Every child is bounded in time and killed when the run ends, however it ends.
"""

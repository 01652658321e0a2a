"""Test support: real servers (redis-server, the emulator) started per test session."""

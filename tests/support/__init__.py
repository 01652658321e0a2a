"""The helpers every test shares (CONTRIBUTING.md lists them): real servers
(redis-server, the emulator, the whole daemon), the daemon's parts built from
the real classes, the REST API in memory or on loopback, the user's programs
as child processes, and bounded waits."""

"""The live console: a Python prompt inside the running daemon, over SSH.

The original had an irb console (``flamingo path/to/flamingo.yml``) to poke
stream params and subscriptions into Redis.  Here the same lines work, with
Python spellings, inside the daemon's own reactor (a ``twisted.conch``
manhole), so they act on the live store, wader and stats::

    >>> s = Stream.get('filter')
    >>> s.params['track'] = ['@cheaptweet', 'austin', '#etsy']
    >>> Subscription('example', format='resque', types=['tweet']).save()

Why build it by hand rather than ``manhole_tap``: that one only knows
password files, and the console takes public keys only (``authorized_keys``
re-read at every login, so adding or removing a key needs no restart).

Writes go through the same ``Store`` as REST.  They are asynchronous; the
console waits for each result (holding typed input meanwhile) and prints
the value, or one line for an error, then shows the next prompt.

The package by role: :mod:`~flamingo.console.auth` (host key, authorized
keys), :mod:`~flamingo.console.namespace` (the names a session gets),
:mod:`~flamingo.console.manhole` (the prompt that waits for writes) and
:mod:`~flamingo.console.ssh` (sessions, factory, the listening service).
"""

from flamingo.console.auth import AuthorizedKeysFile, load_or_create_host_key, parse_authorized_keys
from flamingo.console.manhole import WAIT_LIMIT, FlamingoManhole
from flamingo.console.namespace import BANNER, ConfigView, Redacted, build_namespace, describe_error
from flamingo.console.ssh import ConsoleService, console_service

__all__ = [
    "console_service",
    "ConsoleService",
    "AuthorizedKeysFile",
    "load_or_create_host_key",
    "parse_authorized_keys",
    "build_namespace",
    "describe_error",
    "ConfigView",
    "Redacted",
    "FlamingoManhole",
    "WAIT_LIMIT",
    "BANNER",
]

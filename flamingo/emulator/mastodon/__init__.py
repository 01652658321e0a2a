"""A local Mastodon instance and streaming server (``flamingo emulator --source mastodon``)."""

from flamingo.emulator.mastodon.faults import MastoFault
from flamingo.emulator.mastodon.server import MastodonEmulator, MastoOptions

__all__ = ["MastodonEmulator", "MastoOptions", "MastoFault"]

"""Flamingo: a Twisted daemon that collects social streams without losing events."""

__version__ = "0.1.0"

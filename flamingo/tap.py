"""``twistd flamingo -c flamingo.yml``: options and the service maker.

The config is loaded and validated while the options are parsed, before
twistd checks the pidfile or daemonizes, so a mistake ends the command at
once with one line on stderr (``flamingo: config error: logging.level: ...``)
and exit status 1, never a traceback or a page of usage text.
"""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.python import usage

from flamingo import __version__
from flamingo.config import Config, ConfigError, find_config_file, load

__all__ = ["Options", "makeService"]

#: twistd's own default pidfile; when still in place, the config's `pidfile` wins.
_TWISTD_DEFAULT_PIDFILE = "twistd.pid"


class Options(usage.Options):
    synopsis = "[-c FILE]"
    longdesc = ("Collect a streaming API into an event log and Redis queues. Without -c, "
                "./flamingo.yml then ~/flamingo.yml is used.")
    optParameters = [
        ["config", "c", None, "configuration file (YAML)"],
    ]

    config_obj: Config | None = None

    def opt_version(self) -> None:
        print(f"flamingo {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        try:
            self.config_obj = load(find_config_file(self["config"]))
        except ConfigError as e:
            raise SystemExit(f"flamingo: config error: {e}") from None
        parent: object = getattr(self, "parent", None)  # twistd's ServerOptions, a dict
        if (self.config_obj.pidfile is not None and isinstance(parent, dict)
                and parent.get("pidfile") == _TWISTD_DEFAULT_PIDFILE):
            parent["pidfile"] = str(self.config_obj.pidfile)


def makeService(options: Options) -> IService:
    from flamingo.service import FlamingoService

    config = options.config_obj
    if config is None:  # makeService called without parseOptions (tests, embedding)
        try:
            config = load(find_config_file(options["config"]))
        except ConfigError as e:
            raise SystemExit(f"flamingo: config error: {e}") from None
    return FlamingoService(config, install_signals=True)  # twistd: ours replace its TERM/INT

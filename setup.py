"""Flamingo: collect social streams into a journal and Redis lists, on Twisted."""

import re
from pathlib import Path

from setuptools import find_namespace_packages, setup

version = re.search(
    r'__version__ = "([^"]+)"', Path("flamingo/__init__.py").read_text()
).group(1)

setup(
    name="flamingo",
    version=version,
    description="A Twisted daemon that collects streaming-API events into a journal and Redis lists",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # twisted.plugins is a namespace shared with Twisted itself: listed
    # explicitly, never with an __init__.py of ours. Namespace packages so the
    # dashboard's static folders (no __init__.py) are package-data homes.
    packages=find_namespace_packages(include=["flamingo", "flamingo.*"],
                                     exclude=["*.__pycache__"]) + ["twisted.plugins"],
    # The dashboard's page, CSS, JS and vendored uPlot (with its LICENSE), and
    # the demo's config (`python -m flamingo.demo` after a plain `pip install .`).
    # py.typed (PEP 561): type checkers of code that imports flamingo read its annotations.
    package_data={"flamingo": ["py.typed", "demo.yml", "demo_jetstream.yml", "demo-mastodon.yml", "web/static/*", "web/static/vendor/uplot/*",
                              # Jetstream's zstd dictionary, with its licence and provenance
                              "sources/jetstream_data/*"]},
    include_package_data=True,
    install_requires=[
        # The design card's packages.
        "twisted[tls,conch]>=24.7",  # reactor, web, conch manhole; tls = service_identity for HTTPS checks
        "klein>=24.8",
        "txredisapi>=1.4.10",
        "pyyaml>=6.0",
        "attrs>=23.1",
        # automat: the wader's state machine uses TypeMachineBuilder (typed inputs,
        # per-state data), new in 24.8; Twisted depends on automat but not that recent.
        "automat>=24.8",
        # orjson: message typing and filters parse JSON on the hot path; it is
        # several times faster than the stdlib json module.
        "orjson>=3.9",
        # prometheus_client: the /metrics exposition format, rather than hand-written text.
        "prometheus_client>=0.20",
        # rich: `flamingo top`, the live terminal view (tables, sparkline, key-free
        # refresh); well kept, pure Python, no curses dependency.
        "rich>=13.7",
        # treq: the Mastodon source's REST calls (discovery, health, gap filling).
        "treq>=24.9",
        # autobahn: the WebSocket client (Jetstream, Mastodon) on Twisted; the
        # well-kept RFC 6455 implementation with Twisted support (pings, close codes).
        "autobahn>=23.1",
        # zstandard: Jetstream's compress=true frames are zstd with a custom dictionary.
        "zstandard>=0.22",
        # msgspec: a term filter decodes only the dozen fields it matches (typed structs,
        # the rest of a 3.8 KB tweet skipped unbuilt): 3-4x cheaper than orjson.loads of the
        # whole tweet, which was two thirds of a filtered subscription's cost.
        "msgspec>=0.18",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "treq>=24.9",  # the tests' HTTP client, and StubTreq for the API in memory
            "hypothesis>=6.100",  # property tests: any split of a byte stream parses the same
            "schemathesis>=3.30",  # keeps /openapi.json true against the live server
            "psutil>=5.9",  # memory/RSS checks of child processes in tests and bench
            "selenium>=4.20",  # the dashboard's browser tests drive Debian's chromium/chromedriver
            # `make check` (run by `make test`): lint, and strict type checks of flamingo/
            # (config in pyproject.toml). mypy-zope reads Twisted's zope interfaces
            # (IReactorTime, ITransport, ...); types-PyYAML: PyYAML ships no annotations.
            "ruff>=0.6",
            "mypy>=1.11",
            "mypy-zope>=1.0.5",
            "types-PyYAML>=6.0",
        ],
        "bench": [
            "requests>=2.31",  # the baseline consumer the benchmark compares against
            "redis>=5.0",
            "psutil>=5.9",
        ],
    },
    entry_points={"console_scripts": ["flamingo = flamingo.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: WWW/HTTP",
    ],
)

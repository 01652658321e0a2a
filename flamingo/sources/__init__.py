"""One module per streaming API, each giving the wader a ``Source``
(``flamingo.stream.source``): ``twitter`` (v1.1), ``x`` (X API v2, with its
rules service in ``xrules``), ``jetstream`` (Bluesky) and ``mastodon``.
``registry`` maps the ``source:`` config key to a builder."""

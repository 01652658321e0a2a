"""The stream side: one connection manager for every source.

``wader`` (with ``wader_core`` and the state machine in ``machine``) holds
one connection open: backoff per cause (``backoff``), the stall timer,
params changes and ``overlap``. A ``Source`` (``source``; one per API in
``flamingo.sources``) builds requests and reads messages over a link:
HTTP lines (``http_lines``, ``pump``, ``framing``), ``websocket`` or ``sse``.
``auth`` signs requests, ``endpoints`` picks the v1.1 one, ``messages``
types a frame, and ``flow`` is delivery's gate the links honour.
"""

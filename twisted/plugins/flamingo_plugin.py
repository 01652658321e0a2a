"""twistd plugin: ``twistd flamingo -c flamingo.yml``.

Kept tiny: flamingo.tap is imported only when the plugin is used, so
``twistd --help`` stays fast.
"""

from twisted.application.service import ServiceMaker

flamingo = ServiceMaker(
    "flamingo",
    "flamingo.tap",
    "Flamingo: collect a streaming API into an event log and Redis queues",
    "flamingo",
)

"""What happens to each message after the wader: journal first, then Redis.

``Dispatcher`` (the wader's MessageSink) types each message and counts it in
``stats``; ``Journal`` (segmented files, written by ``journal_writer``; the
event log is a journal that is kept); ``routing`` decides which subscription
gets which event in which format (``payloads``); ``RedisSink`` delivers
batches with a checkpoint (``transaction``, ``resp``, ``redis_address`` for
Sentinel); ``store`` keeps params and subscriptions in Redis (with a local
copy, ``store_copy``); ``DeliveryService`` owns their lifecycle.
"""

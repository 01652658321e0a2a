"""What happens to each message after the wader: journal first, then Redis.

``Dispatcher`` (the wader's MessageSink), ``Journal`` (segmented files; the
event log is a journal that is kept), ``RedisSink`` (batched MULTI/EXEC with
a checkpoint) and ``DeliveryService`` (owns their lifecycle).
"""

"""The vocabulary every other part speaks, without I/O: the sources and their
streams and params (``catalog``), what a predicate may be (``predicates``) and
how one matches an event (``matching``), subscriptions (``subscription``), and
the rules the store applies to params and queue keys (``store_rules``)."""

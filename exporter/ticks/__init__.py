"""The tick sink: every accepted price (time, feed, symbol, price, size, source) kept in a database.

Optional (``tick_sink:`` in the config; absent, nothing is appended on the hot path). The book
appends each accepted update to a bounded ``book.TickTape`` (references into one list, room
checked once per frame); every ``flush_interval`` (2 s) the sink swaps the list out and its worker
thread converts and writes the rows in batches, retried with backoff, so a slow or dead database
never slows ingest: at worst the tape fills and new rows are dropped and counted.

Modules::

    config.py     the ``tick_sink:`` section; ``resolve``: where rows go (the journal's database by default)
    rows.py       tape slots -> typed rows (integer nanoseconds, sizes sanitized, row identity)
    backends.py   SQLite, PostgreSQL (psycopg 3) and ClickHouse (HTTP, JSONEachRow): blocking, one thread
    sink.py       ``TickSink``: the interval task, batches, retries, the buffer bound, its counters
    collector.py  ``feedwatch_tick_sink_*`` metrics

It sits beside the journal, above the core (it reads the book's tape) and below the service that
wires it.
"""

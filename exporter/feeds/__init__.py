"""Feed adapters, one module per venue, and the runner that owns their sockets.

    base.py        what an adapter is and the signals it returns (pure: no I/O)
    <venue>.py     one venue each: polygon, binance, bybit, generic, trading (the bot's event stream)
    registry.py    ``kind:`` -> adapter class, through the ``feedwatch.venues`` entry points
    runner.py      one FeedRunner per feed: shards, reconnects, run-time symbols, silent stalls
    link.py        one socket of one shard: connect, auth, subscribe, keep alive, read
    backoff.py     reconnect delays (random first delay, growth to a cap, reset after success)
    watchlist.py   symbols added at run time from trigger files

Adding a venue: a module here subclassing ``base.Adapter``, one line in ``pyproject.toml``'s
``feedwatch.venues`` entry points, its recorded frames in ``tests/fixtures/<venue>/`` and its
tests. A venue can also live in a package of its own that declares the same entry point
(``tests/plugins/feedwatch-echo`` is a working example).
"""

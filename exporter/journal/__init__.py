"""The incident journal: what happened, kept in a database, read back over HTTP and the CLI.

Facts arrive from the running exporter (symbol state transitions from the book's sweep,
connection changes, trading limit breaches and safety switches from the tracker, config reloads)
and become two kinds of rows:

- **incidents** (``records.Incident``): a symbol out of health, a feed down, a trading limit
  breached, a kill switch on, a circuit breaker open; opened, updated (level, worst staleness or
  value) and resolved, one row each, written as idempotent upserts;
- **events** (``records.Event``): the log of every fact, append-only, each with a unique id.

Modules::

    config.py     the ``journal:`` section (sink, path or DSN, retention, batching, buffer bound), ``open_sink``
    records.py    the two row shapes and the query filter
    journal.py    ``Journal``: turns facts into rows in memory; never blocks, never raises
    writer.py     ``Writer``: the bounded buffer and the batch writer task (retries, overflow count)
    sinks.py      the sink protocol, the SQL both databases share, the in-memory sink
    sqlite.py     SQLite sink (default; blocking calls in one worker thread)
    postgres.py   PostgreSQL sink (psycopg 3, async; several replicas share one journal)
    recordings.py saves the frame recorder's window when an incident opens
    collector.py  ``feedwatch_journal_*`` metrics
    api.py        ``GET /api/v1/incidents`` (a ``feedwatch.web`` extension), the status page's incidents

The journal sits above the core, feeds and trading (it reads their state and listens to them)
and below the service that wires it; the web app never imports it (``api.py`` is an extension).
"""

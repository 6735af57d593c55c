"""Feed adapters, one module per venue, and the runner that owns their sockets.

Each venue module subclasses ``exporter.feeds.base.Adapter`` and registers itself with
``@registry.register``; configuration selects it with ``kind:``. Adding a venue means one new
module here (listed in ``registry.VENUE_MODULES``), its recorded frames and its tests.
"""

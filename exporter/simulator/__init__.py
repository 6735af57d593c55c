"""A WebSocket server that speaks each venue's dialect, with fault injection.

``server.Simulator`` runs one venue on 127.0.0.1; ``base.Dialect`` subclasses (one module per
venue: ``polygon.py``, ``binance.py``, ...) say how that venue speaks; ``control.py`` serves the
HTTP API that switches faults at run time; ``timeline.py`` plays the demo's scripted scenarios.
``feedwatch simulate`` runs it from the command line.
"""

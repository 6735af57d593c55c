"""feedwatch-venue-echo: an example venue plugin (adapter + simulator dialect) for feedwatch.

The echo protocol, both directions JSON text frames::

    client -> {"op": "subscribe", "symbols": ["AAPL"], "greeting": "hello"}
    venue  -> {"subscribed": ["AAPL"]}
    venue  -> {"s": "AAPL", "p": 189.5, "t": 1700000000123}      one trade per frame, t in Unix ms
"""

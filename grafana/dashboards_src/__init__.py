"""One module per Grafana dashboard.

Convention (what ``grafana/generate.py`` discovers): every module in this package whose name does
not start with an underscore defines ``build()`` returning a grafana-foundation-sdk dashboard
(builder or model); the generator writes it to ``grafana/dashboards/<module name>.json``. Adding
a dashboard means adding a module here and running ``python -m grafana.generate``; shared
building blocks live in ``grafana/panels.py``.
"""

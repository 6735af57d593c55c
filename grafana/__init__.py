"""feedwatch's Grafana dashboards, generated from code (see ``grafana/generate.py``).

``grafana/panels.py`` holds the shared building blocks (datasource, variables, health-state
colours, panel factories); ``grafana/dashboards_src/`` holds one module per dashboard; the
generator writes ``grafana/dashboards/<module>.json``, which Grafana loads through
``grafana/provisioning/``.
"""

"""Grafana's shipped files: ``dashboards`` and ``provisioning`` (mapped from grafana/ in pyproject.toml)."""

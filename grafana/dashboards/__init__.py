"""Not code: marks this folder as the resource package exporter.resources.grafana.dashboards (see exporter/resources)."""

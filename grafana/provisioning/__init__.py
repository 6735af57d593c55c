"""Not code: marks this folder as the resource package exporter.resources.grafana.provisioning (see exporter/resources)."""

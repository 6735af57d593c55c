"""Not code: marks prometheus/ as the resource package exporter.resources.prometheus (see exporter/resources)."""

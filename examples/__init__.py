"""Not code: marks examples/ as the resource package exporter.resources.examples (see exporter/resources)."""

"""Not code: marks alertmanager/ as the resource package exporter.resources.alertmanager (see exporter/resources)."""

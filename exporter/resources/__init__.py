"""The files feedwatch ships beside its code, found through ``importlib.resources``.

The team edits them in the repository's top-level folders; ``pyproject.toml`` maps each folder
into this package (setuptools ``package-dir``), so a wheel installs them here and an editable
install reads the folders themselves. Code never builds a path from the repository root::

    repository folder          resource package                          what
    examples/                  exporter.resources.examples               example exporter configs
    prometheus/                exporter.resources.prometheus             prometheus.yml, rules/, tests/ (promtool)
    alertmanager/              exporter.resources.alertmanager           alertmanager.yml, templates/, zoneinfo/, tests/
    grafana/dashboards/        exporter.resources.grafana.dashboards     generated dashboards (*.json)
    grafana/provisioning/      exporter.resources.grafana.provisioning   datasource and dashboard providers

Each folder holds an ``__init__.py`` only so that it can be mapped (the editable finder needs
one); ``tree`` and ``feedwatch init`` leave it out. docs/architecture.md explains the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Iterator


@dataclass(frozen=True)
class Resource:
    """One shipped folder: its resource package and where it lives in the repository layout."""

    package: str
    layout: str  # the folder's path relative to the repository root (and to `feedwatch init DIR`)


EXAMPLES = Resource("exporter.resources.examples", "examples")
PROMETHEUS = Resource("exporter.resources.prometheus", "prometheus")
ALERTMANAGER = Resource("exporter.resources.alertmanager", "alertmanager")
GRAFANA_DASHBOARDS = Resource("exporter.resources.grafana.dashboards", "grafana/dashboards")
GRAFANA_PROVISIONING = Resource("exporter.resources.grafana.provisioning", "grafana/provisioning")
ALL = (EXAMPLES, PROMETHEUS, ALERTMANAGER, GRAFANA_DASHBOARDS, GRAFANA_PROVISIONING)

# Not resources: the mapping marker and Python's caches.
_SKIP_NAMES = {"__init__.py", "__pycache__"}


def path(resource: Resource, *parts: str) -> Path:
    """A shipped file or folder as a filesystem path (Prometheus and Alertmanager need real paths).

    Wheels install unpacked, so this is always a real path; a zipped install is refused with
    the reason instead of handing a binary a path that does not exist.
    """
    target = files(resource.package).joinpath(*parts)
    if not isinstance(target, Path):
        raise RuntimeError(f"feedwatch's {resource.layout}/ files must be installed on the filesystem "
                           f"(found {target!r}); install the wheel with pip, not as a zip")
    return target


def tree(resource: Resource) -> Iterator[tuple[PurePosixPath, Traversable]]:
    """Every shipped file of ``resource``: (path relative to its folder, file), sorted."""
    def walk(node: Traversable, rel: PurePosixPath) -> Iterator[tuple[PurePosixPath, Traversable]]:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in _SKIP_NAMES or child.name.endswith(".pyc"):
                continue
            if child.is_dir():
                yield from walk(child, rel / child.name)
            else:
                yield rel / child.name, child

    yield from walk(files(resource.package), PurePosixPath())

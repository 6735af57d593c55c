"""pyproject.toml ships every package and resource folder; ``feedwatch init`` writes them out.

The wheel itself is built and installed by tests/integration/test_wheel.py; these checks are the
fast part: a folder added under exporter/ or under a mapped resource folder (prometheus/rules/...)
must be listed in ``[tool.setuptools] packages`` or the wheel silently leaves it out.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from exporter import resources
from exporter.cli import main
from exporter.commands import NOT_WRITTEN

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def folders_with_files(root: Path) -> set[Path]:
    return {p.parent for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and not p.name.endswith(".pyc")}


def expected_packages() -> set[str]:
    """Every folder holding a shipped file, as the package name it gets in the wheel."""
    names = set()
    for package, folder in SETUPTOOLS["package-dir"].items():
        root = ROOT / folder
        for path in folders_with_files(root):
            names.add(".".join([package, *path.relative_to(root).parts]))
    # The parent of the two mapped Grafana folders: a package with only its __init__.py.
    return names | {"exporter.resources.grafana"}


def test_every_folder_with_files_is_a_listed_package():
    listed = set(SETUPTOOLS["packages"])
    assert expected_packages() - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - expected_packages() == set(), "listed packages with no files"


def test_every_mapped_folder_is_a_resource_and_back():
    mapped = {p: f for p, f in SETUPTOOLS["package-dir"].items() if p != "exporter"}
    assert {r.package: r.layout for r in resources.ALL} == mapped


def test_license_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text            # the full text, not a stub
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(project["urls"])
    assert "License :: OSI Approved :: Apache Software License" not in project["classifiers"], \
        "PEP 639: the license expression replaces license classifiers"


def test_init_writes_every_resource_and_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "stack"
    assert main(["init", str(target)]) == 0
    for resource in resources.ALL:
        for rel, source in resources.tree(resource):
            assert (target / resource.layout / rel).read_bytes() == source.read_bytes()
    assert not list(target.rglob("__init__.py"))          # the mapping markers stay behind
    assert (target / "prometheus/rules/feeds.yml").exists()
    assert (target / "alertmanager/zoneinfo/America/New_York").exists()
    assert (target / "grafana/provisioning/datasources/prometheus.yml").exists()

    edited = target / "prometheus/prometheus.yml"
    edited.write_text("# mine\n")
    capsys.readouterr()
    assert main(["init", str(target)]) == 1
    err = capsys.readouterr().err
    assert "nothing written" in err and str(edited) in err and "--force" in err
    assert edited.read_text() == "# mine\n"
    assert main(["init", "--force", str(target)]) == 0
    assert edited.read_text() != "# mine\n"


def test_init_refuses_before_writing_anything(tmp_path, capsys):
    target = tmp_path / "stack"
    (target / "examples").mkdir(parents=True)
    (target / "examples/demo.yml").write_text("mine\n")
    assert main(["init", str(target)]) == 1
    assert [p.name for p in target.rglob("*") if p.is_file()] == ["demo.yml"]


@pytest.mark.parametrize("resource", resources.ALL, ids=lambda r: r.layout)
def test_resources_are_read_from_their_folder(resource):
    # An editable install reads the repository's folders themselves (no copy to go stale).
    assert resources.path(resource) == ROOT / resource.layout


@pytest.mark.parametrize("command", [["init"], ["mixin", "--out"]], ids=["init", "mixin"])
def test_init_and_mixin_refuse_and_fail_alike(tmp_path, capsys, command):
    """One helper (``commands.write_files``) behind both: the same refusal, the same write error,
    the same exit status."""
    target = tmp_path / "stack"
    target.mkdir()
    (target / "prometheus").write_text("a file where a directory must go\n")
    assert main([*command, str(target)]) == NOT_WRITTEN
    err = capsys.readouterr().err
    assert f"cannot write {target / 'prometheus'}" in err, err   # the OS's reason follows
    (target / "prometheus").unlink()
    # What the failed run wrote before the error is in the way now: --force overwrites it.
    assert main([command[0], "--force", *command[1:], str(target)]) == 0
    capsys.readouterr()
    assert main([*command, str(target)]) == NOT_WRITTEN
    assert "already exist" in capsys.readouterr().err

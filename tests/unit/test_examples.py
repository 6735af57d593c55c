"""Every configuration shipped in examples/ and deploy/ loads with the real, strict loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import load_file

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted([*ROOT.glob("examples/*.yml"), *ROOT.glob("deploy/*.yml")])
# Secrets the examples read from the environment (never written in the files).
ENVIRON = {"POLYGON_API_KEY": "example-key"}


def test_there_are_examples_for_every_venue():
    kinds = {feed.kind for path in CONFIGS for feed in load_file(str(path), ENVIRON).feeds}
    assert {"polygon", "binance", "bybit", "generic", "trading"} <= kinds


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_loads(path: Path):
    config = load_file(str(path), ENVIRON)
    assert config.feeds, f"{path} watches nothing"

"""``--help`` names the choices a user must know (issue 11): the simulator's venue dialects (from
the ``feedwatch.dialects`` registry, plugins included), its faults and each venue's scenarios;
the feed kinds and markets a config may name (``run``, ``check-config``); defaults and metavars
on every command. The lists come from the registries, so a new venue or market shows up by
itself (and a plugin that fails to import is named, not fatal)."""

from __future__ import annotations

import re

import pytest

from exporter.cli import build_parser
from exporter.markets import CALENDARS
from exporter.plugins import PluginError, VENUES
from exporter.simulator import base
from exporter.simulator.trading import SCENARIOS


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def flat(text: str) -> str:
    return " ".join(text.split())


def test_simulate_help_names_the_venues_faults_and_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("simulate", capsys)
    names = base.names()
    assert {"polygon", "binance", "bybit", "generic", "trading"} <= set(names)
    assert "--venue {" + ",".join(names) + "}" in flat(text)
    venues = text.split("venues (--venue", 1)[1].split("\n\n", 1)[0]
    for name in names:
        assert re.search(rf"^  {name} +\S", venues, re.M), f"{name} is not described:\n{venues}"
    faults = text.split("faults (--fault", 1)[1].split("\n\n", 1)[0]
    for name, meaning in base.FAULT_HELP.items():
        assert re.search(rf"^  {name}(:SYMBOL)?(\[:VALUE\])? +{re.escape(meaning)}$", faults, re.M), name
    assert "trading  " + ", ".join(SCENARIOS) in text
    assert "(default: polygon)" in text and "(default: 10)" in text


def test_an_unknown_venue_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["simulate", "--venue", "kraken"])
    assert done.value.code == 2
    assert "invalid choice: 'kraken' (choose from" in capsys.readouterr().err


def test_a_broken_plugin_dialect_is_named_in_help_not_fatal(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real_get, real_names = base.get, base.names

    def get(name: str):
        if name == "broken":
            raise PluginError("simulator venue 'broken' (broken_pkg:Dialect) cannot be loaded: ImportError: no")
        return real_get(name)

    monkeypatch.setattr(base, "get", get)
    monkeypatch.setattr(base, "names", lambda: sorted([*real_names(), "broken"]))
    text = help_of("simulate", capsys)
    assert re.search(r"^  broken +cannot be loaded: simulator venue 'broken'", text, re.M)
    assert re.search(r"^  polygon +Polygon", text, re.M)


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_config_commands_list_feed_kinds_and_markets(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(command, capsys)
    assert ", ".join(VENUES.names()) in text
    assert ", ".join(sorted(CALENDARS)) in text
    assert {"us-equities", "cme-globex", "always"} <= set(CALENDARS)
    assert "docs/configuration.md" in text


def test_run_help_shows_defaults_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    text = flat(help_of("run", capsys))
    for expected in ("--log.level {debug,info,warn,error}", "(default: info)", "--log.format {logfmt,json}",
                     "(default: logfmt)", "--web.listen-address HOST:PORT", "':10119'", "'/metrics'",
                     "--web.config.file FILE", "-c FILE, --config.file FILE"):
        assert expected in text, expected


@pytest.mark.parametrize("command", ["run", "check-config", "simulate", "demo", "alertmanager-config", "alert-test",
                                     "incidents"])
def test_every_option_says_its_default_or_that_it_is_required(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each option with a value documents its default (or none, or required): a user never has to
    read the source to know what happens when they leave it out."""
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == command)[1]
    for action in sub._actions:
        if action.option_strings and action.nargs != 0 and action.dest != "help":
            text = action.help or ""
            assert "default" in text or action.required or "required" in text, (command, action.option_strings)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for command in ("run", "check-config", "simulate", "demo", "alertmanager-config", "alert-test"):
        assert re.search(rf"^    {command}\b", text, re.M), command

"""``--help`` that lists the choices a user must know, computed only when help is shown.

The lists come from registries (venues and dialects from their entry points, plugins included;
markets from ``exporter/markets.py``), so they can never fall behind the code. Some need imports
(a dialect's scenarios live on its class); an epilog given as a function is therefore called
only when ``--help`` formats it, and building the parser for ``feedwatch run`` imports nothing
extra::

    parser = subparsers.add_parser("simulate", formatter_class=HelpFormatter, epilog=simulate_epilog)
"""

from __future__ import annotations

import argparse
from typing import Callable, Iterable


class HelpFormatter(argparse.HelpFormatter):
    """A description or epilog with line breaks (a table) is kept as written, one without is
    wrapped; a callable one is called when help is formatted."""

    def _format_text(self, text: str | Callable[[], str]) -> str:
        return super()._format_text(text() if callable(text) else text)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def table(title: str, rows: Iterable[tuple[str, str]]) -> str:
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    lines = [f"{title}:"]
    lines += [f"  {name.ljust(width)}  {text}".rstrip() for name, text in rows]
    return "\n".join(lines)


def simulate_epilog() -> str:
    from exporter.simulator import base

    venues: list[tuple[str, str]] = []
    scenarios: list[tuple[str, str]] = []
    for name in base.names():
        line, names = base.describe(name)
        venues.append((name, line))
        if names:
            scenarios.append((name, ", ".join(names)))
    faults = [(name + (":SYMBOL" if name in base.SYMBOL_FAULTS else "")
               + ("[:VALUE]" if name in base.FAULT_VALUES else ""), text) for name, text in base.FAULT_HELP.items()]
    parts = [
        table("venues (--venue; the feedwatch.dialects entry points, plugins included)", venues),
        table("faults (--fault NAME[:SYMBOL][:VALUE], or POST /faults/NAME?symbol=S&value=V on the control URL)", faults),
        table("scenarios (--scenario NAME[:ACCOUNT], or POST /scenarios/NAME), by venue",
              scenarios or [("(none)", "no installed venue has scripted scenarios")]),
    ]
    return "\n\n".join(parts)


def config_epilog() -> str:
    """What a config's ``kind:`` and ``market:`` may say (for ``run`` and ``check-config``)."""
    from exporter.markets import CALENDARS
    from exporter.plugins import VENUES

    return "\n".join([
        "feed kinds (a feed's kind:; the feedwatch.venues entry points, plugins included):",
        "  " + (", ".join(VENUES.names()) or "none installed"),
        "markets (a feed's market:, or one of your own under markets:):",
        "  " + ", ".join(sorted(CALENDARS)),
        "",
        "The configuration file is described in docs/configuration.md.",
    ])

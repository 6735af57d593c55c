"""Which replica watches what: (feed, symbol) pairs spread over N shards by rendezvous hashing.

A deployment too large for one process runs N replicas with the same configuration file, each
started with its place (``feedwatch run --shard 1/3``, or ``shard: "1/3"`` in the file; shards
are numbered 0 to N-1). Each replica watches only its *share*::

    shard = Shard.parse("1/3")
    shard.owns("stocks", "AAPL")          # True on exactly one of the three replicas
    share = shard.share(config)           # the config this replica runs (see Share)

Rendezvous (highest-random-weight) hashing: every (feed, symbol) gets a weight per shard index,
``blake2b(feed NUL symbol, salt=index)``, and belongs to the shard with the highest weight. A
shard's weights never depend on N, so going from N to N+1 shards moves a symbol only when the new
shard's weight beats the old winner's: about 1/(N+1) of the symbols move, all of them to the new
shard, and nothing moves between the shards that stay. Dropping a shard moves only its own
symbols. The hash is keyed BLAKE2, the same in every process and every Python (never the salted
built-in ``hash()``), and pinned by tests: changing it would reshuffle every deployment.

The members of an instrument (config ``instruments:``, one instrument on several feeds, whose
prices the exporter compares with each other) are watched together, by the shard their
instrument's name hashes to (``instrument_owner``): a comparison needs every member's price in one
process. ``Shard.bound(config)`` knows them; ``share`` binds itself.

What is not a (feed, symbol) pair belongs to shard 0, whatever N is, so it never moves when N
changes: a feed configured without symbols (the trading bot's event stream, a feed fed only by
trigger files) and the ``trading:`` section with its state file and push API. A replica opens no
connection for a feed it holds no symbol of; such a feed is on *standby* there, and a trigger
file for one of its symbols that this shard owns brings it up (``Service``).

This module is part of the core: it knows the configuration's shape but imports nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

# Far more shards than any deployment needs; a typo like 1/300 is caught instead of silently
# starving 299 replicas of symbols.
MAX_SHARDS = 256


def _salt(index: int) -> bytes:
    return index.to_bytes(16, "little")  # BLAKE2b's salt is 16 bytes


_SALTS = tuple(_salt(i) for i in range(MAX_SHARDS))


def owner(feed: str, symbol: str, count: int) -> int:
    """The shard (0 to count-1) that watches ``symbol`` on ``feed`` when there are ``count``.

    Not for a member of an instrument (config ``instruments:``): those go where their instrument
    goes (``instrument_owner``; ``Shard.bound(config).owner_of`` knows both).
    """
    # Feed names cannot contain NUL (config validation), so the key is unambiguous.
    return _rendezvous(feed.encode() + b"\0" + symbol.encode(), count)


def instrument_owner(instrument: str, count: int) -> int:
    """The shard that watches every member of ``instrument`` (config ``instruments:``).

    The exporter compares an instrument's prices across its feeds in one process
    (``Book.deviations``), so its members must share a shard: hashed by the instrument's name
    (rendezvous too, so changing N moves instruments like symbols), in a key space no
    (feed, symbol) pair can reach (a key starting with NUL: a feed name is never empty).
    """
    return _rendezvous(b"\0instrument\0" + instrument.encode(), count)


def _rendezvous(key: bytes, count: int) -> int:
    if count == 1:
        return 0
    best, best_weight = 0, b""
    for index in range(count):
        weight = hashlib.blake2b(key, digest_size=8, salt=_SALTS[index]).digest()
        if weight > best_weight:
            best, best_weight = index, weight
    return best


@dataclass(frozen=True)
class Share:
    """What one shard runs, cut from the whole configuration.

    ``config``: the configuration with each feed's ``symbols`` cut down to this shard's; feeds
    it holds nothing of left out; ``trading`` kept on shard 0 only. ``standby``: the feeds left
    out, by name, with no symbols (a trigger file this shard owns may bring one up).
    """

    config: Any
    standby: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shard:
    """This replica's place: shard ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1
    # (feed, symbol) -> instrument, for the members of the config's instruments (``bound``).
    pinned: Mapping[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be 1 to {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is out of range: with {self.count} shard(s) "
                             f"the index is 0 to {self.count - 1}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"1/3"`` -> Shard(1, 3); a ValueError that says what is expected otherwise."""
        match = _SPEC.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"expected a shard as INDEX/COUNT, like 0/3 (shards are numbered from 0), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def bound(self, config: Any) -> "Shard":
        """This shard knowing ``config``'s instruments, whose members it places together."""
        pinned = {(feed, symbol): name for name, members in (config.instruments or {}).items()
                  for feed, symbol in (members or {}).items()}
        return dataclasses.replace(self, pinned=pinned)

    def owner_of(self, feed: str, symbol: str) -> int:
        """The shard that watches ``symbol`` on ``feed``: its instrument's, if it is a member of one."""
        instrument = self.pinned.get((feed, symbol))
        if instrument is not None:
            return instrument_owner(instrument, self.count)
        return owner(feed, symbol, self.count)

    def owns(self, feed: str, symbol: str) -> bool:
        return self.owner_of(feed, symbol) == self.index

    def share(self, config: Any) -> Share:
        """This shard's part of ``config`` (an ``exporter.config.Config``); see ``Share``."""
        if not self.sharded:
            return Share(config)
        shard = self.bound(config)
        feeds, standby = [], {}
        for feed in config.feeds:
            if feed.symbols:
                mine = tuple(s for s in feed.symbols if shard.owns(feed.name, s))
                if mine:
                    feeds.append(dataclasses.replace(feed, symbols=mine))
                else:
                    standby[feed.name] = dataclasses.replace(feed, symbols=())
            elif self.index == 0:
                feeds.append(feed)  # not sharded: the trading stream, a trigger-only feed
            else:
                standby[feed.name] = feed
        trading = config.trading if self.index == 0 else None
        return Share(dataclasses.replace(config, feeds=tuple(feeds), trading=trading), standby)

    def render(self, now: float = 0.0) -> str:
        """``feedwatch_shard_info``, a renderer for the web app's ``/metrics``::

            # HELP feedwatch_shard_info Always 1; this replica's shard (0 to shards-1) and the number of shards.
            # TYPE feedwatch_shard_info gauge
            feedwatch_shard_info{shard="1",shards="3"} 1
        """
        return (f"# HELP feedwatch_shard_info {SHARD_INFO_HELP}\n"
                "# TYPE feedwatch_shard_info gauge\n"
                f'feedwatch_shard_info{{shard="{self.index}",shards="{self.count}"}} 1\n')


SHARD_INFO_HELP = "Always 1; this replica's shard (0 to shards-1) and the number of shards."

"""``feedwatch check-config FILE``: validate a configuration file.

Every problem is printed on its own line with its path (``feeds[1].symbols[3]: ...``) and the
exit status is 1; a valid file prints a short summary (feeds, symbols, connections) and exits 0.
The trading state file is checked as ``feedwatch run`` would open it, without changing it
(``trading.store.diagnose``): a directory that cannot be written, a file that cannot be read, is
truncated or corrupt, or is missing while its backup exists, is a problem naming the path.

``--shard INDEX/COUNT`` (or the file's ``shard:``) summarises what that replica would run: its
share of each feed's symbols and the feeds it keeps on standby (docs/scaling.md).
"""

from __future__ import annotations

import argparse

from exporter.commands import common_flags, report_problems
from exporter.commands.helptext import HelpFormatter, config_epilog
from exporter.config import ConfigError, format_duration, load_file
from exporter.sharding import Shard


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check-config", parents=[common_flags()],
                                   help="validate a configuration file",
                                   description="Validate a configuration file and list every problem.",
                                   formatter_class=HelpFormatter, epilog=config_epilog)
    parser.add_argument("file", help="the YAML configuration file")
    parser.add_argument("--shard", dest="shard", default=None, metavar="INDEX/COUNT",
                        help="summarise what the replica run with --shard INDEX/COUNT would watch "
                             "(default: the file's shard, '0/1')")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        if args.shard:
            Shard.parse(args.shard)   # its own message first
        config = load_file(args.file, shard=args.shard)   # the caps count this shard's share
        shard = Shard.parse(config.shard)
    except ConfigError as exc:
        report_problems(f"{args.file}: {len(exc.errors)} problem(s):", exc.errors)
        return 1
    except ValueError as exc:
        report_problems(f"{args.file}: 1 problem(s):", [f"--shard: {exc}"])
        return 1
    whole = config
    share = shard.share(config)
    config = share.config
    state_file = config.trading.state_file if config.trading is not None else None
    if state_file:
        from exporter.trading.store import diagnose

        error = diagnose(state_file)
        if error is not None:
            report_problems(f"{args.file}: 1 problem(s):", [f"trading.state_file: {error}"])
            return 1
    from exporter.feeds import registry

    symbols = sum(len(f.symbols) for f in config.feeds)
    if shard.sharded:
        total = sum(len(f.symbols) for f in whole.feeds)
        print(f"{args.file}: OK: shard {shard}: {len(config.feeds)} feed(s), {symbols} of {total} symbol(s), "
              f"listen {config.listen}")
    else:
        print(f"{args.file}: OK: {len(config.feeds)} feed(s), {symbols} symbol(s), listen {config.listen}")
    for feed in config.feeds:
        adapter = registry.get(feed.kind)
        capacity = adapter(feed, _NoBook(), "0").capacity() if adapter else None
        connections = max(1, -(-len(feed.symbols) // capacity)) if capacity else 1
        th = feed.resolved_thresholds
        market = feed.market or "24/7"
        cal = feed.resolved_calendar
        if cal is not None and cal.end is not None:
            market += f" (holidays known to {cal.end})"
        print(f"  {feed.name} ({feed.kind}): {len(feed.symbols)} symbol(s) on {connections} connection(s), "
              f"market {market}, degraded/stale/critical {format_duration(th.degraded)}/"
              f"{format_duration(th.stale)}/{format_duration(th.critical)}")
    if share.standby:
        print(f"  standby (no symbols on this shard; trigger files it owns connect them): "
              f"{', '.join(sorted(share.standby))}")
    if config.watchlist.trigger_dir:
        print(f"  watchlist: {config.watchlist.trigger_dir} (ttl {format_duration(config.watchlist.ttl)})")
    if config.trading is not None:
        print(f"  trading: {len(config.trading.accounts)} account(s), state file "
              f"{state_file or 'none (state kept in memory only)'}")
    return 0


class _NoBook:
    """Adapters take a FeedBook; asking one its capacity does not touch it."""

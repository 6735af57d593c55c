"""``Throttle``: a problem that repeats is logged once a minute, with how many repeats were not.

A hostile client, a venue sending garbage or a database that stays down can make the same
problem happen thousands of times a second; each is counted in a metric, but logging each would
fill the disk. One throttle serves a component, one ``key`` per kind of problem::

    throttle = Throttle(log)
    throttle.warn("header_timeout", "HTTP: closed a connection from %s ...", peer, remote=address)

The first of a kind is logged at once; repeats within ``interval`` (60 s) are only counted, and
the next line logged says how many (``suffix``, and a ``suppressed`` log field). ``settle(key)``
says the problem is over (a write succeeded again): it returns the repeats not logged and forgets
them, so a later report counts from there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

LOG_EVERY = 60.0
# What a line says of the repeats it stands for: ``suppressed`` (their number) and ``interval``.
SUPPRESSED = " ({suppressed} similar not logged in the last {interval:g}s)"
# The same for a failure that repeats until it is over (``settle``): a database refusing writes.
FAILURES = " ({suppressed} more failure(s) since the last report)"


class Throttle:
    """Logs each kind of problem at most once per ``interval``, counting the ones it kept quiet."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_EVERY, suffix: str = SUPPRESSED) -> None:
        self.logger = logger
        self.interval = interval
        self.suffix = suffix
        self.last: dict[str, float] = {}
        self.quiet: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: Any, **fields: Any) -> bool:
        """Log a warning unless ``key`` was logged less than ``interval`` ago; True when logged.

        ``fields`` become log fields (``remote``, ``reason``, ...), with ``suppressed`` when repeats were.
        """
        now = time.monotonic()  # looked up each call: tests move it ahead (tests/conftest.py)
        if now - self.last.get(key, -1e9) < self.interval:
            self.quiet[key] = self.quiet.get(key, 0) + 1
            return False
        self.last[key] = now
        suppressed = self.quiet.pop(key, 0)
        if suppressed:
            message += self.suffix.format(suppressed=suppressed, interval=self.interval)
            fields["suppressed"] = suppressed
        self.logger.warning(message, *args, stacklevel=2, extra=fields)
        return True

    def settle(self, key: str) -> int:
        """``key``'s problem is over: the repeats not logged since its last line, forgotten now.

        The time of that line is kept: a relapse within the interval is counted, not logged.
        """
        return self.quiet.pop(key, 0)

"""``Journal``: turns what the exporter observes into incident and event rows, in memory.

Wiring (``exporter/service.py``)::

    journal = Journal(config.journal, sink, clock, book, recorder=..., recordings_dir=...)
    book.listeners.append(journal.on_transition)            # symbol state changes (the sweep)
    book.connection_listeners.append(journal.on_connection)  # connections up / down, with reasons
    tracker.listeners.append(journal.on_trading)             # after every applied batch
    journal.record_reload(ok, problems)                      # config reloads (the /-/reload code)
    await journal.start() ... await journal.stop()           # writer, adoption, retention, ticks

Every ``on_*`` and ``record_*`` method runs on the event loop, does a few dict operations and
hands copies of the changed rows to the ``Writer``; none does I/O, none raises (a bug is logged,
the exporter carries on), so the journal can never slow down or stop ingest.

Incident rules (docs/configuration.md, "Incident journal"):

- **symbol**: opens when a symbol leaves ``healthy`` for degraded/stale/critical; the level
  follows it, the worst is kept; resolves when it is healthy again (``worst_value`` = the whole
  silence: its next update's time minus ``silent_since``), or closed (market close), or no longer
  watched. Every state change is also an event with the staleness and update count.
- **feed**: opens when a feed's last open connection goes down for an unplanned reason
  (``rollover``, ``server_shutdown``, ``resharding``, ``shutdown`` and ``reload`` are planned:
  events only);
  resolves at the next connect. Every connect and disconnect is an event with its reason.
- **trading**: per account, the kill switch while on, the circuit breaker while open, and each
  limit while breached (drawdown daily / weekly / total at or over its limit, the losing streak at
  or over its limit, API errors of the last minute over the per-minute limit: the alert rules'
  conditions); re-checked after every batch and every second (a new trading day ends a daily
  breach).

A restarted exporter adopts its own open incidents (same ``replica``) from the database once it
is reachable: trading ones still breached stay open under the same id; the others are resolved at
the restart with the reason "feedwatch restarted": what happened while it was down is unknown,
and a still-silent symbol opens a new incident when its thresholds pass again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Iterable

import msgspec

from exporter.book import CLOSED, CRITICAL, DEGRADED, HEALTHY, STALE, STATE_NAMES, Book, ConnectionChange, Transition
from exporter.journal.records import SEVERITY, Event, Incident, Query, newest_first, new_id
from exporter.journal.sinks import Sink
from exporter.journal.writer import Writer

log = logging.getLogger(__name__)

PLANNED = frozenset({"rollover", "server_shutdown", "resharding", "shutdown", "reload"})
RECENT = 200            # resolved incidents kept in memory (status page, fallback reads)
TICK = 1.0              # seconds between time-based checks (trading day boundaries, removed symbols)
PRUNE_EVERY = 3600.0


async def _ended(tasks: list[asyncio.Future[Any]], timeout: float) -> bool:
    """Wait for ``tasks`` for at most ``timeout``; False if any is still running (it is cancelled
    and left behind: unlike ``wait_for``, nothing here waits for a cancellation to take)."""
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    return not pending


def _copy(row: Incident) -> Incident:
    return msgspec.structs.replace(row)


class Journal:
    def __init__(self, config: Any, sink: Sink, clock: Any, book: Book | None = None, *,
                 recorder: Any = None, recordings_dir: str | None = None, tracker: Any = None) -> None:
        self.config = config
        self.sink = sink
        self.clock = clock
        self.book = book
        self.tracker = tracker
        self.replica = config.replica_name
        self.writer = Writer(sink, clock, flush_interval=config.flush_interval, batch_size=config.batch_size,
                             buffer_limit=config.buffer_limit, timeout=config.write_timeout)
        self.open: dict[tuple[str, ...], Incident] = {}
        self.recent: deque[Incident] = deque(maxlen=RECENT)
        self._safety: dict[str, tuple[bool, str, bool, str]] = {}
        self._adopted = not sink.persistent
        # Ids of the incidents this run saved before adoption: never a previous run's leftovers.
        self._ours_before_adoption: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._errors_logged: dict[str, float] = {}
        from exporter.journal.recordings import Recordings

        self.recordings = Recordings(recorder, recordings_dir, clock) if recorder is not None and recordings_dir else None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.sink.persistent:
            log.warning("journal.path is not set (nor trading.state_file): incidents are kept in memory only "
                        "and lost on restart")
        try:
            await asyncio.wait_for(self.sink.open(), self.config.write_timeout)
        except Exception as exc:  # unreachable now: keep buffering, the writer retries
            log.warning("journal: %s not reachable at start (%s); incidents are kept in memory until it is",
                        self.sink.name, exc)
        self._tasks = [asyncio.create_task(self.writer.run(), name="journal-writer"),
                       asyncio.create_task(self._tick_forever(), name="journal-ticks")]
        if self.tracker is not None:
            self.on_trading(self.tracker, frozenset(self.tracker.accounts))

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop the tasks after one last attempt to write what is waiting.

        Every wait here has a deadline of ``drain_timeout``: the recordings being written, the
        last drain, the tasks' end, the sink's close. A writer stuck on a dead disk or database
        (a write that never returns, a close queued behind it) is reported with a warning and
        left behind; the stop goes on, so the exporter's shutdown never hangs on it.
        """
        for task in self._tasks[1:]:
            task.cancel()
        if self.recordings is not None:
            # Their links to incidents are rows to write too.
            stuck = await self.recordings.wait(drain_timeout)
            if stuck:
                log.warning("journal: %d incident recording(s) still being written to %s after %gs; stopping "
                            "without them (a stuck disk?)", stuck, self.recordings.dir, drain_timeout)
        writer = self.writer
        if writer.depth:   # waiting, or in a write under way (which may be the stuck one)
            await writer.drained(drain_timeout)
        for task in self._tasks:
            task.cancel()   # a write cut short puts its rows back: they count below
        tasks, self._tasks = self._tasks, []
        if tasks and not await _ended(tasks, drain_timeout):
            log.warning("journal: its tasks did not end within %gs of being cancelled (a write to %s "
                        "that ignores cancellation?); stopping without them", drain_timeout, self.sink.name)
        if writer.depth:
            log.warning("journal: %d row(s) could not be written to %s before stopping: %s", writer.depth,
                        self.sink.name, writer.last_error or f"the write did not finish within {drain_timeout:g}s")
        if not await _ended([asyncio.ensure_future(self.sink.close())], drain_timeout):
            log.warning("journal: %s did not close within %gs (a write still stuck in it); stopping without it",
                        self.sink.name, drain_timeout)

    async def _tick_forever(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = self.clock.time()
            try:
                self.tick(now)
                if not self._adopted:  # until the database answers once (it may be down at start)
                    await self._adopt(now)
                if self.config.retention and now - last_prune >= PRUNE_EVERY:
                    last_prune = now
                    await asyncio.wait_for(self.sink.prune(now - self.config.retention), self.config.write_timeout)
                    if self.recordings is not None:
                        await self.recordings.prune(now - self.config.retention)
            except Exception as exc:  # the database is down: the writer says so; try again next tick
                self._log_once("tick", f"journal: periodic check failed: {exc!r}")

    def tick(self, now: float) -> None:
        """Time-based checks: trading windows that rolled over, symbols and feeds no longer watched."""
        if self.tracker is not None:
            self.on_trading(self.tracker, frozenset(self.tracker.accounts), now)
        if self.book is not None:
            for key, incident in list(self.open.items()):
                feed = self.book.feeds.get(incident.feed)
                if incident.kind == "symbol" and (feed is None or incident.symbol not in feed.symbols):
                    self._resolve(key, now, "no longer watched")
                elif incident.kind == "feed" and feed is None:
                    self._resolve(key, now, "feed removed from the configuration")

    # --- symbols ---------------------------------------------------------------------------------

    def on_transition(self, change: Transition) -> None:
        try:
            self._transition(change)
        except Exception:
            log.exception("journal: could not record %s", change.describe())

    def _transition(self, change: Transition) -> None:
        key = ("symbol", change.feed, change.symbol)
        incident = self.open.get(key)
        new = STATE_NAMES[change.new]
        state = self._symbol(change.feed, change.symbol)
        if change.new in (DEGRADED, STALE, CRITICAL):
            if incident is None:
                incident = Incident(id=new_id(), kind="symbol", feed=change.feed, symbol=change.symbol,
                                    level=new, worst_level=new, opened_at=change.at,
                                    silent_since=change.at - change.staleness, worst_value=change.staleness,
                                    reason=f"no update for {change.staleness:.1f}s", replica=self.replica,
                                    updated_at=change.at)
                self.open[key] = incident
                self._save(incident)
                if self.recordings is not None:
                    self.recordings.attach(self, incident)
            else:
                incident.level = new
                if SEVERITY[new] > SEVERITY.get(incident.worst_level, 0):
                    incident.worst_level = new
                incident.worst_value = max(incident.worst_value or 0.0, change.staleness)
                incident.updated_at = change.at
                self._save(incident)
        elif incident is not None:
            if change.new == HEALTHY and state is not None and incident.silent_since is not None \
                    and state.last_update > incident.silent_since:
                silence = state.last_update - incident.silent_since
            else:
                silence = change.at - (incident.silent_since or incident.opened_at)
            incident.worst_value = max(incident.worst_value or 0.0, silence)
            self._resolve(key, change.at, "updated again" if change.new == HEALTHY else
                          "market closed" if change.new == CLOSED else new)
        self.writer.put(Event(id=new_id(), at=change.at, kind="transition", feed=change.feed, symbol=change.symbol,
                              state=new, value=change.staleness, count=state.updates if state is not None else None,
                              detail=f"{STATE_NAMES[change.old]} -> {new}",
                              incident=incident.id if incident is not None else None, replica=self.replica))

    def _symbol(self, feed: str, symbol: str):
        if self.book is None:
            return None
        book = self.book.feeds.get(feed)
        return book.symbols.get(symbol) if book is not None else None

    # --- connections -----------------------------------------------------------------------------

    def on_connection(self, change: ConnectionChange) -> None:
        try:
            self._connection(change)
        except Exception:
            log.exception("journal: could not record a connection change of %s", change.feed)

    def _connection(self, change: ConnectionChange) -> None:
        key = ("feed", change.feed)
        incident = self.open.get(key)
        if change.up:
            if incident is not None:
                incident.worst_value = change.at - incident.opened_at
                self._resolve(key, change.at, f"connected again (connection {change.connection})")
        else:
            feed = self.book.feeds.get(change.feed) if self.book is not None else None
            all_down = feed is None or not feed.is_up()
            if incident is None and all_down and change.reason not in PLANNED:
                incident = Incident(id=new_id(), kind="feed", feed=change.feed, level="down", worst_level="down",
                                    opened_at=change.at, reason=change.reason, replica=self.replica,
                                    updated_at=change.at)
                self.open[key] = incident
                self._save(incident)
                if self.recordings is not None:
                    self.recordings.attach(self, incident)
        self.writer.put(Event(id=new_id(), at=change.at, kind="connect" if change.up else "disconnect",
                              feed=change.feed, state="up" if change.up else "down", detail=change.reason,
                              incident=incident.id if incident is not None else None, replica=self.replica))

    # --- trading ---------------------------------------------------------------------------------

    def on_trading(self, tracker: Any, accounts: frozenset[str], now: float | None = None) -> None:
        """Tracker listener: safety switch changes and limit breaches of the accounts touched."""
        now = self.clock.time() if now is None else now
        try:
            for name in accounts:
                account = tracker.accounts.get(name)
                if account is not None:
                    self._account(account, now)
        except Exception:
            log.exception("journal: could not check trading accounts %s", sorted(accounts))

    def _account(self, account: Any, now: float) -> None:
        from exporter.trading.view import api_errors_per_minute

        name = account.name
        safety = (account.kill_switch, account.kill_reason, account.breaker_open, account.breaker_reason)
        previous = self._safety.get(name)
        self._safety[name] = safety
        if previous is not None and previous[:2] != safety[:2]:
            self.writer.put(Event(id=new_id(), at=now, kind="kill_switch", account=name,
                                  state="active" if account.kill_switch else "inactive",
                                  detail=account.kill_reason, replica=self.replica))
        if previous is not None and previous[2:] != safety[2:]:
            self.writer.put(Event(id=new_id(), at=now, kind="circuit_breaker", account=name,
                                  state="open" if account.breaker_open else "closed",
                                  detail=account.breaker_reason, replica=self.replica))
        limits = account.rules.limits
        self._trading(name, "kill_switch", account.kill_switch, None, account.kill_reason, now)
        self._trading(name, "circuit_breaker", account.breaker_open, None, account.breaker_reason, now)
        # The alert rules' conditions: drawdowns and the streak at or over their limits, API errors over.
        for what, value, limit in (("drawdown_daily", account.drawdown_daily(now), limits.drawdown_daily),
                                   ("drawdown_weekly", account.drawdown_weekly(now), limits.drawdown_weekly),
                                   ("drawdown_total", account.drawdown(), limits.drawdown_total),
                                   ("consecutive_losses", float(account.losing_streak),
                                    float(limits.consecutive_losses))):
            breached = value is not None and value >= limit
            reason = f"{_show(what, value)} >= limit {_show(what, limit)}" if breached else ""
            self._trading(name, what, breached, value, reason, now)
        rate, limit = api_errors_per_minute(account, now), float(limits.api_errors_per_minute)
        self._trading(name, "api_errors", rate > limit, rate,
                      f"{rate:g} failed API calls in the last minute > limit {limit:g}" if rate > limit else "", now)

    def _trading(self, account: str, what: str, breached: bool, value: float | None, reason: str,
                 now: float) -> None:
        key = ("trading", account, what)
        incident = self.open.get(key)
        if breached:
            if incident is None:
                incident = Incident(id=new_id(), kind="trading", account=account, level=what, worst_level=what,
                                    opened_at=now, worst_value=value, reason=reason, replica=self.replica,
                                    updated_at=now)
                self.open[key] = incident
                self._save(incident)
                if what not in ("kill_switch", "circuit_breaker"):
                    self.writer.put(Event(id=new_id(), at=now, kind="breach", account=account, state=what,
                                          value=value, detail=reason, incident=incident.id, replica=self.replica))
            elif value is not None and (incident.worst_value is None or value > incident.worst_value):
                incident.worst_value = value
                incident.reason = reason or incident.reason
                incident.updated_at = now
                self._save(incident)
        elif incident is not None:
            if what not in ("kill_switch", "circuit_breaker"):
                self.writer.put(Event(id=new_id(), at=now, kind="recovered", account=account, state=what,
                                      value=value, incident=incident.id, replica=self.replica))
            self._resolve(key, now, "switched off" if what == "kill_switch" else
                          "closed" if what == "circuit_breaker" else "back within the limit")

    # --- reloads ---------------------------------------------------------------------------------

    def record_reload(self, ok: bool, problems: Iterable[str] = (), trigger: str = "") -> None:
        """A configuration reload finished (``web.app.notify_reload`` calls this): ok, or its problems."""
        try:
            problems = list(problems)
            detail = "; ".join(problems)[:4000]
            if trigger:
                detail = f"{trigger}: {detail}" if detail else trigger
            self.writer.put(Event(id=new_id(), at=self.clock.time(), kind="reload", state="ok" if ok else "failed",
                                  count=len(problems), detail=detail, replica=self.replica))
        except Exception:
            log.exception("journal: could not record a config reload")

    # --- rows ------------------------------------------------------------------------------------

    def _save(self, incident: Incident) -> None:
        if not self._adopted:
            self._ours_before_adoption.add(incident.id)
        self.writer.put(_copy(incident))

    def _resolve(self, key: tuple[str, ...], at: float, reason: str) -> None:
        incident = self.open.pop(key)
        incident.resolved_at = at
        incident.updated_at = at
        if reason and incident.kind != "trading":
            incident.reason = f"{incident.reason}; {reason}" if incident.reason else reason
        self.recent.append(incident)
        self._save(incident)

    def update(self, incident: Incident) -> None:
        """Write an incident again after a change made from outside (a recording was linked)."""
        incident.updated_at = max(incident.updated_at, self.clock.time())
        self._save(incident)

    async def _adopt(self, now: float) -> None:
        """Take over this replica's incidents left open by a previous run (see the module docs)."""
        found = await asyncio.wait_for(self.sink.incidents(Query(open=True, limit=100_000)), self.config.write_timeout)
        # Not this run's own: one written open and resolved since (its resolution still waiting to
        # be written while the database refused writes) is no leftover to resolve again.
        ours = self._ours_before_adoption | {o.id for o in self.open.values()}
        mine = [i for i in found if i.replica == self.replica and i.id not in ours]
        for incident in mine:
            key = (("trading", incident.account, incident.level) if incident.kind == "trading" else
                   ("feed", incident.feed) if incident.kind == "feed" else ("symbol", incident.feed, incident.symbol))
            current = self.open.get(key)
            if incident.kind == "trading" and current is not None and incident.opened_at <= current.opened_at:
                # Still breached: keep the first incident's id and start, drop the duplicate opened at start.
                incident.worst_value = max(incident.worst_value or 0.0, current.worst_value or 0.0)
                incident.updated_at = now
                self.open[key] = incident
                self._save(incident)
                current.resolved_at = current.opened_at
                current.reason = f"duplicate of {incident.id} (continued after a restart)"
                current.updated_at = now
                self._save(current)
                continue
            incident.resolved_at = max(now, incident.opened_at)
            incident.updated_at = now
            incident.reason = f"{incident.reason}; feedwatch restarted" if incident.reason else "feedwatch restarted"
            self.recent.append(incident)
            self._save(incident)
        self._adopted = True
        self._ours_before_adoption = set()
        if mine:
            log.info("journal: took over %d incident(s) left open by the previous run", len(mine))

    # --- reading ---------------------------------------------------------------------------------

    def memory(self, query: Query) -> list[Incident]:
        """This replica's open and recent incidents, from memory (no database involved)."""
        rows = {i.id: i for i in self.recent}
        rows.update({i.id: i for i in self.open.values()})
        return newest_first([_copy(i) for i in rows.values() if query.matches(i)], query.limit)

    async def incidents(self, query: Query) -> tuple[list[Incident], str]:
        """(incidents, problem): from the database with the rows still waiting laid over them, or
        from memory with the reason when the database cannot be read."""
        try:
            stored = await asyncio.wait_for(self.sink.incidents(query), self.config.write_timeout)
        except Exception as exc:
            return self.memory(query), f"{self.sink.name} journal unreachable ({type(exc).__name__}: {exc}); " \
                                       "showing this replica's incidents from memory"
        rows = {i.id: i for i in stored}
        for row in list(self.writer.pending.values()):
            if isinstance(row, Incident) and query.matches(row):
                old = rows.get(row.id)
                if old is None or old.updated_at <= row.updated_at:
                    rows[row.id] = row
        return newest_first(list(rows.values()), query.limit), ""

    def _log_once(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._errors_logged.get(key, -1e9) >= 60.0:
            self._errors_logged[key] = now
            log.warning("%s", message)


def _show(what: str, value: float | None) -> str:
    if value is None:
        return "?"
    if what.startswith("drawdown"):
        return f"{value * 100:.2f} %"
    return f"{value:g}"

"""The desk metrics: Sortino, Calmar, profit factor, average win and loss, expectancy. No I/O.

Each is a pure function of state the tracker already keeps (``Account``), derived at read time
like the Sharpe ratio, and each follows quantstats' definition (the reference
``tests/unit/test_desk_metrics.py`` checks every one against quantstats 0.0.86 on the same series,
to 1e-9). The formulas, written out, are in docs/trading-events.md ("Desk metrics"):

- **Sortino** and **Calmar** are computed on the daily returns of completed trading days, the same
  rolling window as the Sharpe ratio (``Account.daily_returns``), annualised with the same
  ``periods_per_year``; the risk-free rate is taken per period as ``risk_free_rate /
  periods_per_year`` as for the Sharpe ratio (quantstats de-annualises geometrically; the two
  agree at the default rate of 0, see the docs).
- **Profit factor, average win, average loss, expectancy** are computed on closed trades' net
  P&L (``pnl - fees``), from the running sums ``Account.gross_profit`` (winning trades) and
  ``Account.gross_loss`` (losing trades, negative) and the trade counts: exact, O(1), and
  restart-safe because the sums are persisted with the rest of the account.

A value that is undefined is None (absent from /metrics, ``null`` in JSON), never a fake 0: no
returns or trades yet, no downside, no drawdown, no losing trade.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from exporter.trading.tracker import Account


def sortino_ratio(returns: Sequence[float], risk_free_per_period: float, periods_per_year: int) -> float | None:
    """``mean(x) / sqrt(sum(min(x, 0)^2) / n) * sqrt(periods_per_year)`` with ``x = r - rf``.

    The downside deviation divides the squared negative excess returns by the number of *all*
    returns (quantstats, after Sortino and Red Rock Capital); None without a negative return.
    """
    n = len(returns)
    if n == 0:
        return None
    excess = [r - risk_free_per_period for r in returns]
    downside = math.sqrt(sum(x * x for x in excess if x < 0) / n)
    if downside == 0:
        return None
    return sum(excess) / n / downside * math.sqrt(periods_per_year)


def compound_annual_growth(returns: Sequence[float], periods_per_year: int) -> float | None:
    """``prod(1 + r) ** (periods_per_year / n) - 1``; None when the wealth is not positive."""
    n = len(returns)
    if n == 0:
        return None
    wealth = math.prod(1.0 + r for r in returns)
    if wealth <= 0:
        return None
    return wealth ** (periods_per_year / n) - 1.0


def max_drawdown_of_returns(returns: Sequence[float]) -> float:
    """Largest fall of the compounded wealth ``W_i = prod(1 + r_1..r_i)`` below its running peak,
    as a ratio >= 0, with the wealth before the first return (1) as the first peak."""
    wealth = peak = 1.0
    worst = 0.0
    for r in returns:
        wealth *= 1.0 + r
        if wealth > peak:
            peak = wealth
        elif peak > 0:
            worst = max(worst, 1.0 - wealth / peak)
    return worst


def calmar_ratio(returns: Sequence[float], periods_per_year: int) -> float | None:
    """Compound annual growth over the maximum drawdown of the same returns; None without a drawdown."""
    growth = compound_annual_growth(returns, periods_per_year)
    drawdown = max_drawdown_of_returns(returns)
    if growth is None or drawdown == 0:
        return None
    return growth / drawdown


# --- per account ------------------------------------------------------------------------------

def _returns(account: "Account", now: float) -> list[float] | None:
    returns = account.daily_returns(now)
    if returns is None or len(returns) < account.rules.sharpe.min_returns:
        return None
    return returns


def sortino(account: "Account", now: float) -> float | None:
    settings = account.rules.sharpe
    returns = _returns(account, now)
    if returns is None:
        return None
    return sortino_ratio(returns, settings.risk_free_rate / settings.periods_per_year, settings.periods_per_year)


def calmar(account: "Account", now: float) -> float | None:
    returns = _returns(account, now)
    return None if returns is None else calmar_ratio(returns, account.rules.sharpe.periods_per_year)


def profit_factor(account: "Account") -> float | None:
    """Gross profit of winning trades over the absolute gross loss of losing trades."""
    if not account.trades["loss"] or account.gross_loss >= 0:
        return None
    return account.gross_profit / -account.gross_loss


def average_win(account: "Account") -> float | None:
    wins = account.trades["win"]
    return account.gross_profit / wins if wins else None


def average_loss(account: "Account") -> float | None:
    """Mean net P&L of the losing trades: a negative number (quantstats' sign)."""
    losses = account.trades["loss"]
    return account.gross_loss / losses if losses else None


def expectancy(account: "Account") -> float | None:
    """Expected net P&L per decisive trade: ``p * average_win + (1 - p) * average_loss`` with
    ``p = wins / (wins + losses)``, which is ``(gross_profit + gross_loss) / (wins + losses)``.
    Flat trades (net 0) are left out, as quantstats' win rate leaves out zero returns."""
    decisive = account.trades["win"] + account.trades["loss"]
    if not decisive:
        return None
    return (account.gross_profit + account.gross_loss) / decisive

"""A market simulator for `run_feed --source sim`: index, futures and option chains that move.

What a trader should recognise:

- Spot follows geometric Brownian motion with a U-shaped intraday volatility (busy open, quiet
  lunch, a pick-up into the 15:30 close) and occasional jumps; the ATM volatility level drifts,
  falls as spot rises and jumps when spot gaps down.
- Futures trade at the forward ``S e^{(r-q)T}`` plus a small noisy basis; options are priced by
  Black-Scholes on a smile (puts richer below spot, lifted wings, a term structure) off the same
  forward, to 15:30 IST on the expiry date, rounded to the tick and never below one tick.
- Five-level order books around the model price, wider away from the money; trades print at the
  touch. ATM and front-expiry contracts tick far more often than far OTM or far-month ones.
- Each contract's flow switches every few minutes between opening and closing positions, with
  buyers or sellers aggressive, so long buildup, short buildup, short covering and long unwinding
  all show up on a chain. Volume only grows; OI stays in lots and never goes negative.

Ticks are dicts in kiteconnect's shape (see `marketdata.sim.ticks`); `marketdata.kite.build_frame`
turns them into Kite's binary frames. Nothing here imports Django or the Kite modules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from marketdata.sim.chain import KIND_CODES
from marketdata.sim.clock import IST, TimestampCache
from marketdata.sim.ticks import Tick
from marketdata.sim.underlying import UnderlyingMarket

__all__ = ["MarketSimulator", "SimContract", "SimUnderlying", "Tick"]


@dataclass(frozen=True)
class SimContract:
    """One option (CE/PE) or future (FUT) on an underlying."""

    instrument_token: int
    kind: str  # "CE" | "PE" | "FUT"
    strike: float  # ignored for futures
    expiry: dt.date
    lot_size: int
    tick_size: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in KIND_CODES:
            raise ValueError(f"SimContract {self.instrument_token}: kind must be CE, PE or FUT, not {self.kind!r}")
        if self.kind != "FUT" and not self.strike > 0:
            raise ValueError(f"SimContract {self.instrument_token}: an option needs a positive strike")
        if self.lot_size < 1:
            raise ValueError(f"SimContract {self.instrument_token}: lot_size must be at least 1")
        if round(self.tick_size * 100) < 1:
            raise ValueError(f"SimContract {self.instrument_token}: tick_size must be at least 0.01")


@dataclass(frozen=True)
class SimUnderlying:
    """An index with its futures and options. `annual_volatility` None picks the index's usual
    ATM level (NIFTY 13 %, BANKNIFTY 16 %, FINNIFTY 15 %; 25 % for anything unlisted)."""

    symbol: str
    index_token: int
    spot: float
    strike_step: float
    contracts: tuple[SimContract, ...]
    risk_free_rate: float = 0.065
    dividend_yield: float = 0.0
    annual_volatility: float | None = None

    def __post_init__(self) -> None:
        if not self.spot > 0 or not self.strike_step > 0:
            raise ValueError(f"SimUnderlying {self.symbol}: spot and strike_step must be positive")
        if self.annual_volatility is not None and not self.annual_volatility > 0:
            raise ValueError(f"SimUnderlying {self.symbol}: annual_volatility must be positive")


class MarketSimulator:
    """Deterministic for a seed: the same seed and the same calls give the same ticks."""

    def __init__(
        self, underlyings: Sequence[SimUnderlying], *, seed: int, start: dt.datetime, speed: float = 1.0
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("MarketSimulator: start must be a timezone-aware datetime")
        if not speed > 0:
            raise ValueError("MarketSimulator: speed must be positive")
        self.speed = speed
        self._start = start.astimezone(IST)
        self._elapsed = 0.0  # simulated seconds since start
        self._timestamps = TimestampCache()
        self._markets: dict[str, UnderlyingMarket] = {}
        self._owner: dict[int, str] = {}  # instrument token -> symbol
        start_epoch = self._start.timestamp()
        for spec in underlyings:
            if spec.symbol in self._markets:
                raise ValueError(f"MarketSimulator: underlying {spec.symbol} given twice")
            self._claim(spec.symbol, [spec.index_token, *(c.instrument_token for c in spec.contracts)])
            self._markets[spec.symbol] = UnderlyingMarket(
                spec, seed=seed, start=start_epoch, timestamps=self._timestamps
            )

    @property
    def now(self) -> dt.datetime:
        """Simulated exchange time (aware, IST)."""
        return self._start + dt.timedelta(seconds=self._elapsed)

    @property
    def tokens(self) -> list[int]:
        """Every simulated instrument: each underlying's index token, then its contracts."""
        return [token for market in self._markets.values() for token in market.tokens]

    def step(self, seconds: float) -> list[Tick]:
        """Advance simulated time by `seconds` x speed; the ticks that occurred, in exchange-time
        order (one per instrument that changed, carrying its latest values)."""
        if seconds < 0:
            raise ValueError("MarketSimulator.step: seconds must not be negative")
        simulated = seconds * self.speed
        if simulated == 0:
            return []
        start = self._start.timestamp() + self._elapsed
        times: list[float] = []
        ticks: list[Tick] = []
        for market in self._markets.values():
            market_times, market_ticks = market.advance(start, simulated)
            times.extend(market_times)
            ticks.extend(market_ticks)
        self._elapsed += simulated
        order = np.argsort(np.asarray(times), kind="stable")
        return [ticks[i] for i in order.tolist()]

    def snapshot(self) -> list[Tick]:
        """A full tick for every instrument as it stands (no time passes)."""
        return [tick for market in self._markets.values() for tick in market.snapshot()]

    def add_contracts(self, symbol: str, contracts: Iterable[SimContract]) -> None:
        """Start simulating `contracts` of `symbol` from now; ones already simulated are kept as they are."""
        market = self._market(symbol)
        contracts = list(contracts)
        self._claim(symbol, [contract.instrument_token for contract in contracts])
        market.add(contracts, self._start.timestamp() + self._elapsed)

    def remove_contracts(self, symbol: str, tokens: Iterable[int]) -> None:
        """Stop simulating these contracts of `symbol` (unknown tokens are ignored)."""
        market = self._market(symbol)
        tokens = {token for token in tokens if self._owner.get(token) == symbol and token != market.index_token}
        market.remove(tokens)
        for token in tokens:
            del self._owner[token]

    def _market(self, symbol: str) -> UnderlyingMarket:
        try:
            return self._markets[symbol]
        except KeyError:
            raise KeyError(f"MarketSimulator: no underlying {symbol!r}") from None

    def _claim(self, symbol: str, tokens: list[int]) -> None:
        """Record `symbol` as the owner of `tokens`; a token can belong to one underlying only."""
        for token in tokens:
            owner = self._owner.get(token, symbol)
            if owner != symbol:
                raise ValueError(f"MarketSimulator: token {token} already belongs to {owner}")
        for token in tokens:
            self._owner[token] = symbol

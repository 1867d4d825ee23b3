"""What the feed may stream: each underlying's spot, future and option chains.

Plain dataclasses, built from the database once at start (marketdata.selectors.feed_universe)
and re-read when expiries roll, so that re-centring the chain as spot moves needs no
query. The planner decides which tokens to subscribe: spot and future always, and the
options whose strikes are the N nearest each side of the at-the-money strike.

No Django import.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import numpy as np

from marketdata.groups import chain_group, ticks_group

log = logging.getLogger(__name__)

MODE_FULL = "full"
# Kite allows 3 connections of 3,000 instruments per API key.
MAX_INSTRUMENTS = 9000
# Re-centre only once spot is this many strike steps from the current centre, so a spot
# hovering between two strikes does not flap the subscriptions.
RECENTRE_STEPS = 0.75


@dataclass(frozen=True)
class ChainContract:
    instrument_token: int
    tradingsymbol: str
    kind: str  # CE, PE or FUT
    strike: float
    expiry: dt.date
    lot_size: int
    tick_size: float = 0.05


@dataclass(frozen=True)
class UnderlyingUniverse:
    symbol: str
    spot_token: int | None
    strike_step: float
    strikes_each_side: int
    expiries: tuple[dt.date, ...]  # the streamed option expiries, nearest first
    futures: tuple[ChainContract, ...]  # nearest first; the first is streamed
    options: tuple[ChainContract, ...]  # of the streamed expiries
    store_ticks: bool = False
    risk_free_rate: float = 0.065
    dividend_yield: float = 0.0
    reference_spot: float = 0.0  # a starting guess before the first spot tick (e.g. the middle strike)

    @property
    def strikes(self) -> np.ndarray:
        return np.unique(np.array([c.strike for c in self.options], dtype=np.float64))

    def fixed_tokens(self) -> list[int]:
        tokens = [self.spot_token] if self.spot_token else []
        tokens += [c.instrument_token for c in self.futures[:1]]
        return tokens

    def window(self, spot: float) -> list[ChainContract]:
        """Options whose strike is among the N nearest strikes each side of spot."""
        strikes = self.strikes
        if strikes.size == 0:
            return []
        atm = int(np.abs(strikes - spot).argmin())
        low, high = max(0, atm - self.strikes_each_side), min(strikes.size, atm + self.strikes_each_side + 1)
        chosen = set(strikes[low:high].tolist())
        return [c for c in self.options if c.strike in chosen]

    def atm_strike(self, spot: float) -> float:
        strikes = self.strikes
        return float(strikes[np.abs(strikes - spot).argmin()]) if strikes.size else 0.0


@dataclass
class SubscriptionChange:
    add: dict[int, str] = field(default_factory=dict)  # token -> mode
    remove: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


class SubscriptionPlanner:
    """Keeps each underlying's chain window centred on spot, within Kite's instrument limit, and
    adds the instruments someone watches one by one (`watched`: a watchlist's far strike or stock)."""

    def __init__(self, universes: list[UnderlyingUniverse], *, max_instruments: int = MAX_INSTRUMENTS) -> None:
        self.universes = {u.symbol: u for u in universes}
        self.max_instruments = max_instruments
        self.watched: set[int] = set()
        self.centres: dict[str, float] = {}
        self.subscribed: dict[int, str] = {}
        self.trimmed = 0  # options left out by the last plan to stay within the limit
        self._warned_over_limit = False

    def plan(self, spots: dict[str, float]) -> SubscriptionChange:
        """The change needed for these spot prices (missing or zero spot: the reference guess).

        The caller subscribes `add` before it unsubscribes `remove`, so a re-centre never
        leaves a gap in the strikes a trader is looking at.
        """
        wanted: dict[int, str] = {}
        for symbol, universe in self.universes.items():
            spot = spots.get(symbol) or self.centres.get(symbol) or universe.reference_spot
            centre = self.centres.get(symbol)
            if centre is None or abs(spot - centre) >= RECENTRE_STEPS * universe.strike_step:
                centre = universe.atm_strike(spot) if universe.options else spot
                self.centres[symbol] = centre
            for token in universe.fixed_tokens():
                wanted[token] = MODE_FULL
            for contract in universe.window(centre):
                wanted[contract.instrument_token] = MODE_FULL
        for token in self.watched:
            wanted.setdefault(token, MODE_FULL)
        wanted = self._within_limit(wanted)
        change = SubscriptionChange(
            add={t: m for t, m in wanted.items() if self.subscribed.get(t) != m},
            remove=set(self.subscribed) - set(wanted),
        )
        self.subscribed = wanted
        return change

    def _within_limit(self, wanted: dict[int, str]) -> dict[int, str]:
        """Drop the options farthest from the money until the total fits Kite's limit."""
        excess = len(wanted) - self.max_instruments
        self.trimmed = max(excess, 0)
        if excess <= 0:
            return wanted
        distance = {}
        for symbol, universe in self.universes.items():
            centre = self.centres.get(symbol, universe.reference_spot)
            for contract in universe.options:
                if contract.instrument_token in wanted:
                    distance[contract.instrument_token] = abs(contract.strike - centre) / universe.strike_step
        farthest = set(sorted(distance, key=lambda token: (-distance[token], token))[:excess])
        if not self._warned_over_limit:
            self._warned_over_limit = True
            log.warning(
                "the enabled chains ask for %d instruments, over Kite's limit of %d: the %d options farthest "
                "from the money are left out; narrow 'strikes each side' or 'expiries' in the admin",
                len(wanted),
                self.max_instruments,
                excess,
            )
        return {token: mode for token, mode in wanted.items() if token not in farthest}

    def groups_of(self) -> dict[int, list[str]]:
        """Token -> the symbol-level group keys it belongs to: ('ticks', symbol) and ('chain', symbol, expiry)."""
        groups: dict[int, list[str]] = {}
        for symbol, universe in self.universes.items():
            for token in universe.fixed_tokens():
                groups.setdefault(token, []).append(ticks_group(symbol))
            for contract in universe.options:
                groups.setdefault(contract.instrument_token, []).extend(
                    [ticks_group(symbol), chain_group(symbol, contract.expiry)]
                )
        return groups

    def store_tokens(self) -> set[int]:
        tokens: set[int] = set()
        for universe in self.universes.values():
            if universe.store_ticks:
                tokens.update(universe.fixed_tokens())
                tokens.update(c.instrument_token for c in universe.options)
        return tokens

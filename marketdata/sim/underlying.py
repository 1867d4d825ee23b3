"""One underlying's market: its index, futures and option chain, moved forward a step at a time.

Each underlying draws from its own generator, seeded by (simulator seed, index token), so its
path does not change when other underlyings are added to the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from marketdata.analytics.black_scholes import price
from marketdata.sim import book
from marketdata.sim.chain import KIND_CODES, OI_DIRECTION, REGIME_COUNT, ChainState
from marketdata.sim.clock import (
    CALENDAR_SECONDS_PER_YEAR,
    SESSION_SECONDS,
    TRADING_DAYS_PER_YEAR,
    TRADING_SECONDS_PER_YEAR,
    TimestampCache,
    expiry_epoch,
    intraday_multiplier,
    session_fraction,
)
from marketdata.sim.surface import Smile, VolatilityLevel, default_annual_volatility
from marketdata.sim.ticks import Tick, contract_ticks, index_tick

if TYPE_CHECKING:
    from marketdata.sim.market import SimContract, SimUnderlying

# Market dynamics.
REALISED_TO_IMPLIED = 0.9  # index options trade a little over the volatility that follows
JUMPS_PER_SESSION = 2.0
JUMP_MEAN, JUMP_SD = -0.0003, 0.0015  # log returns: about 40 NIFTY points, more often down
BASIS_SD = 0.0002  # futures' noise around fair value: about 5 NIFTY points
BASIS_MEMORY_SECONDS = 120.0
INDEX_TICKS_PER_SECOND = 1.0  # NSE disseminates index values about once a second
# Activity. Kite sends a liquid instrument about one tick a second: an ATM front-week option sees
# about one event a second at an average moment of the session (two at the open), a far OTM or
# far-month one a small fraction of that.
EVENTS_PER_SECOND = 1.0
TRADE_SHARE = 0.6  # of events; the rest change only the order book
REGIME_MEAN_SECONDS = 240.0  # a contract's flow changes character every four minutes or so
# A Kite tick sums every trade since the last one: an ATM front-week NIFTY option's tick carries
# about 60 lots, which makes a few crore units a day. About an eighth of what trades opens (or,
# unwinding, closes) positions, so OI moves a few per cent an hour while volume outruns it.
LOTS_PER_TRADE_AT_THE_MONEY = 60.0
OI_SHARE_OF_VOLUME = 0.12
# Open interest (units) around the money in the front expiry, from which a chain's OI is shaped.
BASE_OI_UNITS = {"NIFTY": 12_000_000, "BANKNIFTY": 2_500_000, "FINNIFTY": 600_000, "SENSEX": 3_000_000}
FALLBACK_OI_UNITS = 1_000_000


_ALL = slice(None)


class _Surface(NamedTuple):
    T: np.ndarray  # years to expiry, ACT/365
    spot_with_basis: float
    forward: np.ndarray
    moneyness: np.ndarray  # standardised: ln(K/F) / (ATM vol * sqrt(T)), clipped
    sigma: np.ndarray  # the smile's volatility at each contract


class UnderlyingMarket:
    def __init__(self, spec: SimUnderlying, *, seed: int, start: float, timestamps: TimestampCache) -> None:
        self.symbol = spec.symbol
        self.index_token = spec.index_token
        self._strike_step = spec.strike_step
        self._rate, self._yield = spec.risk_free_rate, spec.dividend_yield
        self._rng = np.random.default_rng([seed, spec.index_token])
        self._timestamps = timestamps
        base_volatility = spec.annual_volatility or default_annual_volatility(spec.symbol)
        self._volatility = VolatilityLevel(base=base_volatility, log_level=math.log(base_volatility))
        self._smile = Smile()
        self._basis = 0.0
        self._spot = spec.spot
        self._oi_units = BASE_OI_UNITS.get(spec.symbol.upper(), FALLBACK_OI_UNITS)
        self._open_day(start)
        self.chain = ChainState.zeros()
        self.add(spec.contracts, start)

    # -- the chain's membership -------------------------------------------------------------------
    def add(self, contracts: Iterable[SimContract], now: float) -> None:
        """Start simulating `contracts` (already simulated tokens are left as they are)."""
        known = set(self.chain.token.tolist())
        fresh = list({c.instrument_token: c for c in contracts if c.instrument_token not in known}.values())
        if fresh:
            self.chain = self.chain.concat(self._new_rows(fresh, now))

    def remove(self, tokens: Iterable[int]) -> None:
        self.chain = self.chain.select(~np.isin(self.chain.token, np.fromiter(tokens, dtype=np.int64)))

    @property
    def tokens(self) -> list[int]:
        return [self.index_token, *self.chain.token.tolist()]

    # -- time passing -----------------------------------------------------------------------------
    def advance(self, start: float, seconds: float) -> tuple[list[float], list[Tick]]:
        """Move `seconds` on from `start`; the ticks that occurred, with their exchange times."""
        intensity = intraday_multiplier(start + seconds / 2)
        self._move_market(seconds, intensity)
        times: list[float] = []
        ticks: list[Tick] = []
        if self._index_ticked(start, seconds):
            times.append(self._index_time)
            ticks.append(self._index_tick())
        if len(self.chain):
            rows = self._trade_contracts(start, seconds, intensity)
            times.extend(self.chain.exchange_time[rows].tolist())
            ticks.extend(contract_ticks(self.chain, rows, self._timestamps))
        return times, ticks

    def snapshot(self) -> list[Tick]:
        return [self._index_tick(), *contract_ticks(self.chain, np.arange(len(self.chain)), self._timestamps)]

    # -- the index --------------------------------------------------------------------------------
    def _open_day(self, now: float) -> None:
        """The day so far: if `now` is into the session, the index has opened and ranged already."""
        rng, daily = self._rng, REALISED_TO_IMPLIED * self._volatility.base / math.sqrt(TRADING_DAYS_PER_YEAR)
        elapsed = session_fraction(now)
        open_spot = self._spot * math.exp(-rng.normal(0.0, daily * math.sqrt(elapsed)))
        self._prev_close_spot = open_spot * math.exp(-rng.normal(0.0, 0.4 * daily))
        self._open_spot = open_spot
        reach = np.abs(rng.normal(0.0, 0.3 * daily * math.sqrt(elapsed), size=2))
        self._index_ltp = _paise(self._spot)
        self._index_open = _paise(open_spot)
        self._index_prev_close = _paise(self._prev_close_spot)
        self._index_high = _paise(max(open_spot, self._spot) * math.exp(reach[0]))
        self._index_low = _paise(min(open_spot, self._spot) * math.exp(-reach[1]))
        self._index_time = now

    def _move_market(self, seconds: float, intensity: float) -> None:
        """Spot by geometric Brownian motion with jumps; the volatility level and basis with it."""
        rng = self._rng
        years = seconds / TRADING_SECONDS_PER_YEAR
        spot_shock, volatility_shock, basis_shock = rng.standard_normal(3)
        jumps = rng.poisson(JUMPS_PER_SESSION * seconds / SESSION_SECONDS)
        jump = float(rng.normal(JUMP_MEAN, JUMP_SD, size=jumps).sum())
        variance = (REALISED_TO_IMPLIED * self._volatility.level * intensity) ** 2 * years
        self._spot *= math.exp(-0.5 * variance + math.sqrt(variance) * spot_shock + jump)
        self._volatility.advance(years, spot_shock, volatility_shock, jump)
        memory = math.exp(-seconds / BASIS_MEMORY_SECONDS)
        self._basis = self._basis * memory + BASIS_SD * math.sqrt(1.0 - memory * memory) * basis_shock

    def _index_ticked(self, start: float, seconds: float) -> bool:
        """Whether NSE disseminated a new index value during the step (updating the index if so)."""
        arrived = self._rng.random() < -math.expm1(-INDEX_TICKS_PER_SECOND * seconds)
        ltp = _paise(self._spot)
        if not arrived or ltp == self._index_ltp:
            return False
        self._index_ltp = ltp
        self._index_high, self._index_low = max(self._index_high, ltp), min(self._index_low, ltp)
        self._index_time = float(book.last_arrival(self._rng, np.array([INDEX_TICKS_PER_SECOND]), start, seconds)[0])
        return True

    def _index_tick(self) -> Tick:
        return index_tick(
            self.index_token,
            self._index_ltp,
            self._index_open,
            self._index_high,
            self._index_low,
            self._index_prev_close,
            self._index_time,
            self._timestamps,
        )

    # -- contracts --------------------------------------------------------------------------------
    def _surface(self, chain: ChainState, now: float, spot: float, years_added: float = 0.0) -> _Surface:
        """Where each contract sits on the volatility surface at `now` with the index at `spot`."""
        T = (chain.expiry_epoch - now) / CALENDAR_SECONDS_PER_YEAR + years_added
        spot_with_basis = spot * (1.0 + self._basis)
        forward = spot_with_basis * np.exp((self._rate - self._yield) * T)
        atm = self._smile.atm_volatility(self._volatility.level, T)
        moneyness = self._smile.moneyness(atm, forward, np.where(chain.is_future, forward, chain.strike), T)
        return _Surface(T, spot_with_basis, forward, moneyness, self._smile.volatility(atm, moneyness))

    def _fair(self, chain: ChainState, surface: _Surface, rows: np.ndarray | slice = _ALL) -> np.ndarray:
        """Model prices in paise (float) of the contracts at `rows`.

        Options are priced off the same basis-adjusted forward as the futures, as the market does,
        so the calls, puts and future of an expiry stay in put-call parity."""
        T = surface.T[rows]
        option = price(
            surface.spot_with_basis,
            chain.strike[rows],
            T,
            self._rate,
            surface.sigma[rows],
            chain.is_call[rows],
            self._yield,
        )
        return np.where(chain.is_future[rows], surface.forward[rows], option) * 100.0

    def _trade_contracts(self, start: float, seconds: float, intensity: float) -> np.ndarray:
        """Decide which contracts ticked over the step, update them, and return their rows."""
        rng, chain, end = self._rng, self.chain, start + seconds
        rows_total = len(chain)
        surface = self._surface(chain, end, self._spot)
        shape = _activity(surface.moneyness, surface.T, chain.is_future)
        switched = rng.random(rows_total) < -math.expm1(-seconds / REGIME_MEAN_SECONDS)
        switched_rows = np.flatnonzero(switched)
        chain.regime[switched_rows] = (rng.random(switched_rows.size) * REGIME_COUNT).astype(np.int64)

        event_rate = EVENTS_PER_SECOND * shape * chain.liquidity * intensity
        trade_rate, quote_rate = TRADE_SHARE * event_rate, (1.0 - TRADE_SHARE) * event_rate
        trades = book.trade_counts(rng, trade_rate * seconds)
        quoted = rng.random(rows_total) < -np.expm1(-quote_rate * seconds)
        rows = np.flatnonzero((trades > 0) | quoted)
        if rows.size == 0:
            return rows

        fair = self._fair(chain, surface, rows)  # only for the contracts that ticked: pricing is the cost
        spread = book.spread_ticks(rng, fair, chain.tick[rows], surface.moneyness[rows], chain.is_future[rows])
        depth = book.build_depth(rng, fair, chain.tick[rows], spread, chain.lot[rows], 2 + 25 * shape[rows])
        chain.depth_price[rows], chain.depth_quantity[rows], chain.depth_orders[rows] = depth
        chain.total_buy[rows], chain.total_sell[rows] = book.resting_totals(
            rng, chain.depth_quantity[rows], chain.lot[rows], chain.regime[rows]
        )
        traded_rows = rows[trades[rows] > 0]
        if traded_rows.size:
            self._record_trades(
                traded_rows, trades[traded_rows], shape[traded_rows], trade_rate[traded_rows], start, seconds
            )
        # A tick's exchange time is its latest event: a trade, or a change to the order book.
        quote_time = np.where(quoted[rows], book.last_arrival(rng, quote_rate[rows], start, seconds), -np.inf)
        traded = trades[rows] > 0
        chain.exchange_time[rows] = np.where(traded, np.maximum(quote_time, chain.last_trade_time[rows]), quote_time)
        return rows

    def _record_trades(
        self,
        rows: np.ndarray,
        trades: np.ndarray,
        shape: np.ndarray,
        trade_rate: np.ndarray,
        start: float,
        seconds: float,
    ) -> None:
        """Prices, volume, VWAP, open interest and last trade times after the step's trades."""
        rng, chain = self._rng, self.chain
        lot, regime = chain.lot[rows], chain.regime[rows]
        ltp = book.trade_prices(rng, chain.depth_price[rows], regime)
        lots, last_lots = book.traded_lots(rng, trades, _lots_per_trade(shape))
        chain.ltp[rows] = ltp
        chain.day_high[rows] = np.maximum(chain.day_high[rows], ltp)
        chain.day_low[rows] = np.minimum(chain.day_low[rows], ltp)
        chain.volume[rows] += lots * lot
        chain.turnover[rows] += (lots * lot) * ltp.astype(np.float64)
        chain.last_quantity[rows] = last_lots * lot
        opened_lots = np.rint(lots * OI_SHARE_OF_VOLUME * rng.uniform(0.5, 1.5, rows.size)).astype(np.int64)
        oi = np.maximum(chain.oi[rows] + opened_lots * OI_DIRECTION[regime] * lot, 0)
        chain.oi[rows] = oi
        chain.oi_high[rows] = np.maximum(chain.oi_high[rows], oi)
        chain.oi_low[rows] = np.minimum(chain.oi_low[rows], oi)
        chain.last_trade_time[rows] = book.last_arrival(rng, trade_rate, start, seconds)

    def _new_rows(self, contracts: list[SimContract], now: float) -> ChainState:
        """State for contracts joining the simulation: priced now, with the day's trading so far."""
        rng, count = self._rng, len(contracts)
        chain = ChainState.zeros(count)
        kinds = np.array([KIND_CODES[contract.kind] for contract in contracts])
        chain.token[:] = [contract.instrument_token for contract in contracts]
        chain.is_call[:], chain.is_future[:] = kinds == KIND_CODES["CE"], kinds == KIND_CODES["FUT"]
        chain.strike[:] = [0.0 if contract.kind == "FUT" else contract.strike for contract in contracts]
        chain.expiry_epoch[:] = [expiry_epoch(contract.expiry) for contract in contracts]
        chain.lot[:] = [contract.lot_size for contract in contracts]
        tick = chain.tick
        tick[:] = [round(contract.tick_size * 100) for contract in contracts]
        chain.liquidity[:] = rng.lognormal(0.0, 0.25, count)
        chain.regime[:] = rng.integers(0, REGIME_COUNT, count)

        surface = self._surface(chain, now, self._spot)
        fair, moneyness, T = self._fair(chain, surface), surface.moneyness, surface.T
        shape = _activity(moneyness, T, chain.is_future)
        elapsed = session_fraction(now)
        chain.ltp[:] = _to_ticks(fair, tick)
        yesterday = self._surface(chain, now, self._prev_close_spot, years_added=1.0 / 365)
        chain.prev_close[:] = _to_ticks(self._fair(chain, yesterday), tick)
        chain.day_open[:] = _to_ticks(self._fair(chain, self._surface(chain, now, self._open_spot)), tick)
        reach = np.minimum(np.abs(rng.normal(0.0, 0.06 * math.sqrt(elapsed), (2, count))), 0.5)
        upper, lower = np.maximum(chain.day_open, chain.ltp), np.minimum(chain.day_open, chain.ltp)
        chain.day_high[:] = np.maximum(upper, _to_ticks(upper * (1.0 + reach[0]), tick))
        chain.day_low[:] = np.minimum(lower, _to_ticks(lower * (1.0 - reach[1]), tick))

        # The session so far at the average rate: volume, VWAP, the last trade.
        trade_rate = TRADE_SHARE * EVENTS_PER_SECOND * shape * chain.liquidity
        volume_lots = np.rint(
            elapsed * SESSION_SECONDS * trade_rate * _lots_per_trade(shape) * rng.lognormal(0, 0.2, count)
        )
        chain.volume[:] = volume_lots.astype(np.int64) * chain.lot
        chain.turnover[:] = chain.volume * (chain.day_open + chain.ltp) / 2.0
        last_lots = np.minimum(volume_lots, rng.geometric(0.35, count)).astype(np.int64)
        chain.last_quantity[:] = last_lots * chain.lot
        chain.last_trade_time[:] = now
        chain.exchange_time[:] = now

        oi_lots = np.rint(
            self._oi_units / chain.lot * self._oi_shape(chain, moneyness, T) * rng.lognormal(0, 0.25, count)
        )
        chain.oi[:] = oi_lots.astype(np.int64) * chain.lot
        swing = np.rint(oi_lots * 0.08 * elapsed * rng.random((2, count))).astype(np.int64) * chain.lot
        chain.oi_high[:] = chain.oi + swing[0]
        chain.oi_low[:] = np.maximum(chain.oi - swing[1], 0)

        spread = book.spread_ticks(rng, fair, tick, moneyness, chain.is_future)
        depth = book.build_depth(rng, fair, tick, spread, chain.lot, 2 + 25 * shape)
        chain.depth_price[:], chain.depth_quantity[:], chain.depth_orders[:] = depth
        chain.total_buy[:], chain.total_sell[:] = book.resting_totals(
            rng, chain.depth_quantity, chain.lot, chain.regime
        )
        return chain

    def _oi_shape(self, chain: ChainState, moneyness: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Where a chain's open interest sits, relative to the front-month ATM: option writers
        crowd just out of the money (calls above spot, puts below), on round strikes most of all,
        and in the nearest expiry."""
        writers_side = np.where(chain.is_call, 0.7, -0.7)
        strike_units = np.rint(chain.strike / self._strike_step).astype(np.int64)
        round_strike = np.where(strike_units % 10 == 0, 1.8, np.where(strike_units % 2 == 0, 1.15, 1.0))
        weeks = np.maximum(T, 0.0) * 365 / 7
        option = np.exp(-0.5 * ((moneyness - writers_side) / 1.3) ** 2) * round_strike * (1.0 + weeks) ** -0.4
        future = 1.3 / (1.0 + weeks * 7 / 30)
        return np.where(chain.is_future, future, option)


def _activity(moneyness: np.ndarray, T: np.ndarray, is_future: np.ndarray) -> np.ndarray:
    """How busy each contract is relative to a front-week ATM option: falling away from the money
    and with time to expiry; the near-month future busiest of all."""
    weeks = np.maximum(T, 0.0) * 365 / 7
    option = (np.exp(-0.5 * (moneyness / 1.6) ** 2) + 0.03) / np.sqrt(1.0 + weeks)
    future = 2.0 / (1.0 + weeks * 7 / 30)
    return np.where(is_future, future, option)


def _lots_per_trade(activity: np.ndarray) -> np.ndarray:
    return 1.0 + LOTS_PER_TRADE_AT_THE_MONEY * activity


def _to_ticks(fair: np.ndarray, tick: np.ndarray) -> np.ndarray:
    """Model prices (paise) rounded to the contract's tick, never below one tick."""
    return np.maximum(1, np.rint(fair / tick)).astype(np.int64) * tick


def _paise(rupees: float) -> int:
    return round(rupees * 100)

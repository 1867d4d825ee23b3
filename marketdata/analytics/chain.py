"""Every figure of one option chain (one underlying, one expiry) from one call: ``compute_chain``.

Inputs are per-strike arrays (``ChainQuotes``: strikes ascending and unique, a ``SideQuotes`` each for
CE and PE, NaN wherever a contract or a quote is missing) and a few scalars. Units and conventions
are those of ``black_scholes``: ``T`` in years ACT/365, continuous ``r`` and ``q``, volatility as a
fraction in the arrays (the JSON of ``ChainFigures.to_dict`` shows it in percent points). OI and
volume are in units, as Kite reports them (contracts x lot size).

The figures, precisely:

- Pricing price (per contract): the mid ``(bid + ask) / 2`` when the quote is sane, i.e.
  ``bid > 0``, ``ask >= bid`` and ``ask - bid <= max(25 % of mid, 0.20)`` (0.20 is four NSE ticks, so
  that a far out-of-the-money 0.05 / 0.20 quote still counts); otherwise the last price if it is
  positive; otherwise none (``iv_from_mid`` says which; the JSON's ``iv_source`` is "mid" or "ltp").
- Forward ``F``: put-call parity ``K + e^{rT} (C - P)`` on the pricing prices, at the
  ``PARITY_STRIKES`` (5) strikes nearest the first guess of the forward (the future, else
  ``spot e^{(r-q)T}``; the lower strike first on a tie) among strikes where both sides have a
  pricing price and the parity value is positive; the median of those (``forward_source``
  "parity"). Without any such strike: the future, which must expire with the options ("future");
  then ``spot e^{(r-q)T}`` ("carry").
- Implied dividend yield ``q_implied = r - ln(F / spot) / T`` (dividends plus any basis; the given
  ``q`` without a spot or when ``T <= 0``). Every contract is valued at ``S = spot`` with
  ``q_implied``: the CE and PE implied vols of a strike then agree (parity holds by construction),
  and the Greeks are per unit of spot, which is what traders and GEX use.
- IV per contract: ``black_scholes.implied_vol`` of the pricing price; NaN where none exists.
  Greeks per contract: ``black_scholes.greeks`` at the IV (delta per unit, gamma per unit per unit,
  theta per calendar day, vega per vol point, rho per rate point).
- ATM strike: the strike nearest the forward (the lower one on a tie). ATM IV: the mean of the CE
  and PE IVs there (the one that exists if only one does). ATM straddle: CE + PE pricing prices there.
- Expected move: one standard deviation to expiry, ``spot x ATM IV x sqrt(T)``, and in percent of
  spot ``100 x ATM IV x sqrt(T)``.
- 25-delta IVs: along the calls by ascending strike, the first pair of neighbouring strikes with a
  CE IV whose (spot) deltas straddle +0.25, the IV interpolated linearly in delta; along the puts
  the last pair whose deltas straddle -0.25 (both are the crossings nearest the money, the only
  ones when deltas fall monotonically with the strike). Risk reversal
  ``IV25c - IV25p``, butterfly ``(IV25c + IV25p) / 2 - ATM IV``.
- PCR: total PE OI / total CE OI, and the same by volume (NaN OI or volume counts as 0; None when
  the CE total is 0). Call wall / put wall: the strike of the largest CE / PE OI (lowest on a tie).
- Max pain: the strike ``s`` minimising the holders' payout at expiry if the underlying settles at
  ``s``, ``sum CE_OI max(s - K, 0) + PE_OI max(K - s, 0)``, over ``s`` in the strikes (NaN OI
  counts as 0, the lowest strike wins a tie, None without any OI); evaluated for all ``s`` at once
  with cumulative sums (the n x n table, summed in O(n)).
- Gamma exposure (GEX), rupees per 1 % move of spot: ``gamma x OI x spot^2 x 0.01`` per contract,
  positive for calls and negative for puts: the convention that dealers are long the calls and short
  the puts the public trades. With OI in units this is the familiar
  ``gamma x OI_contracts x lot_size x S^2 x 0.01``. A strike's GEX sums its known sides (NaN when
  neither side has both a gamma and an OI); total GEX sums every known contract.
- Gamma flip: the spot at which total GEX changes sign, IVs, ``T``, ``r`` and ``q_implied`` held
  (the contracts with an IV and a non-zero OI, as in total GEX). Total GEX is evaluated at 41
  hypothetical spots from 0.9 x spot to 1.1 x spot (0.5 % apart); of the sign changes between
  neighbours, the one whose linear interpolation lies nearest spot is refined inside its 0.5 % step
  by three Illinois (modified regula falsi) steps, which pin it to well under a rupee. None without a
  sign change in that range.
- OI change: ``OI - reference OI`` (the reference is the day's open or N minutes ago, as the caller
  chose), in percent of the reference when it is positive. Price change: ``last - previous close``,
  in percent of a positive previous close.
- Buildup: price up and OI up "long_buildup", price down and OI up "short_buildup", price up and OI
  down "short_covering", price down and OI down "long_unwinding"; None when either change is zero or
  unknown. Its strength, 0-100 where labelled:
  ``100 x (0.7 x clip((z + 3) / 6, 0, 1) + 0.3 x volume / (volume + OI))``, where ``z`` is the
  contract's ``|OI change|`` as a z-score among every contract of the chain (CE and PE) with a known
  OI change (population standard deviation; ``z = 0`` when that is 0), and the volume term (day
  turnover relative to open interest) counts 0 when unknown. So a typical OI change with no trading
  scores 35, a +3 sigma OI change with volume equal to OI scores 85.

Nothing here raises on missing data: a figure that cannot be computed is NaN in the arrays and None
in the JSON. Arrays of the wrong length raise ``ValueError`` naming them.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from marketdata.analytics import black_scholes, chain_figures, chain_json

MAX_SPREAD_FRACTION = 0.25
MIN_SPREAD_ALLOWANCE = 0.20
PARITY_STRIKES = 5
# Rows of ChainQuotes' contract matrix, in an order that lets one call cover several fields:
# (last, OI) - (previous close, reference OI) gives both changes, (OI, volume) both totals.
_CONTRACT_ROWS = ("previous_close", "reference_oi", "last_price", "oi", "volume", "bid", "ask")


@dataclass(frozen=True)
class SideQuotes:
    """The CE (or the PE) contracts of a chain, one entry per strike; NaN where unknown.

    A field left as None is unknown for every strike. ``previous_close`` is Kite's ``ohlc.close``
    (the previous session's close); ``reference_oi`` is the OI that ``oi_change`` is measured from.
    """

    last_price: ArrayLike | None = None
    bid: ArrayLike | None = None
    ask: ArrayLike | None = None
    volume: ArrayLike | None = None
    oi: ArrayLike | None = None
    previous_close: ArrayLike | None = None
    reference_oi: ArrayLike | None = None


@dataclass(frozen=True)
class ChainQuotes:
    """One underlying and one expiry: strikes ascending and unique, both sides, and the scalars.

    ``future_price`` is the future expiring with the options (NaN if none); ``rate`` and
    ``dividend_yield`` are the continuous ``r`` and ``q`` of ``black_scholes``. Construction checks
    the shapes and copies every side array into one float matrix (a missing side or field becomes
    NaN); ``ce`` and ``pe`` then hold read-only views of it, one float array per field.
    """

    strikes: ArrayLike
    spot: float
    time_to_expiry_years: float
    ce: SideQuotes = field(default_factory=SideQuotes)
    pe: SideQuotes = field(default_factory=SideQuotes)
    future_price: float = math.nan
    rate: float = 0.0
    dividend_yield: float = 0.0
    lot_size: int = 1
    contracts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        strikes = np.array(self.strikes, dtype=float)
        if strikes.ndim != 1:
            raise ValueError(f"strikes must be one-dimensional, got shape {strikes.shape}")
        with np.errstate(invalid="ignore"):
            if not np.all(np.diff(strikes) > 0) or np.isnan(strikes).any():
                raise ValueError("strikes must be ascending and unique, without NaN")
        n = strikes.size
        contracts = np.full((len(_CONTRACT_ROWS), 2 * n), np.nan)
        mismatched = []
        for offset, side in ((0, "ce"), (n, "pe")):
            quotes = getattr(self, side)
            for row, name in enumerate(_CONTRACT_ROWS):
                value = getattr(quotes, name)
                if value is None:
                    continue
                array = np.asarray(value, dtype=float)
                if array.shape != strikes.shape:
                    mismatched.append(f"{side}.{name} has shape {array.shape}")
                else:
                    contracts[row, offset : offset + n] = array
        if mismatched:
            raise ValueError(f"expected shape {strikes.shape} like strikes: " + ", ".join(mismatched))
        strikes.flags.writeable = contracts.flags.writeable = False
        object.__setattr__(self, "strikes", strikes)
        object.__setattr__(self, "contracts", contracts)
        for offset, side in ((0, "ce"), (n, "pe")):
            views = {name: contracts[row, offset : offset + n] for row, name in enumerate(_CONTRACT_ROWS)}
            object.__setattr__(self, side, SideQuotes(**views))
        for name in ("spot", "time_to_expiry_years", "future_price", "rate", "dividend_yield"):
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True)
class SideFigures:
    """Per-strike arrays for the CE (or PE) side; NaN where unknown. ``iv`` is a fraction,
    ``iv_from_mid`` says the IV's price was the mid (else the last price), ``buildup`` holds indices
    into ``chain_json.BUILDUP_LABELS`` (0 for none)."""

    last_price: np.ndarray
    change: np.ndarray
    change_pct: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray
    pricing_price: np.ndarray
    iv_from_mid: np.ndarray
    volume: np.ndarray
    oi: np.ndarray
    oi_change: np.ndarray
    oi_change_pct: np.ndarray
    iv: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray
    gex: np.ndarray
    buildup: np.ndarray
    buildup_strength: np.ndarray


@dataclass(frozen=True)
class ChainFigures:
    """Everything ``compute_chain`` works out: per-strike arrays and the chain-level figures
    (NaN where they cannot be computed). The module docstring defines each one."""

    strikes: np.ndarray
    ce: SideFigures
    pe: SideFigures
    gex: np.ndarray
    pcr_oi_by_strike: np.ndarray
    spot: float
    future_price: float
    forward: float
    forward_source: str | None
    implied_dividend_yield: float
    time_to_expiry_years: float
    atm_strike: float
    atm_iv: float
    atm_straddle: float
    expected_move: float
    expected_move_pct: float
    iv_25d_call: float
    iv_25d_put: float
    risk_reversal_25d: float
    butterfly_25d: float
    pcr_oi: float
    pcr_volume: float
    max_pain: float
    call_wall: float
    put_wall: float
    total_gex: float
    gamma_flip: float
    total_ce_oi: float
    total_pe_oi: float
    total_ce_volume: float
    total_pe_volume: float
    lot_size: int

    def to_dict(self) -> dict:
        """JSON-safe figures (marketdata.analytics.chain_json): NaN becomes None, IV is in percent points."""
        return chain_json.figures_to_dict(self)


def compute_chain(quotes: ChainQuotes) -> ChainFigures:
    """Every figure of the chain, as the module docstring defines them."""
    strikes, n = quotes.strikes, quotes.strikes.size
    spot, T, r = quotes.spot, quotes.time_to_expiry_years, quotes.rate
    # Every per-contract step runs once over CE then PE (2n entries), not once per side.
    contracts = quotes.contracts
    last, oi, volume, bid, ask = contracts[2], contracts[3], contracts[4], contracts[5], contracts[6]
    is_call, signs = chain_figures.contract_layout(n)
    with np.errstate(all="ignore"):  # missing quotes are NaN and must stay NaN without warnings
        mid, pricing, from_mid = _pricing_prices(bid, ask, last)
        forward, forward_source = _forward(strikes, pricing[:n], pricing[n:], quotes)
        has_carry = spot > 0 and T > 0 and forward > 0
        q_implied = r - math.log(forward / spot) / T if has_carry else quotes.dividend_yield
        contract_strikes = np.concatenate((strikes, strikes))
        iv = black_scholes.implied_vol(pricing, spot, contract_strikes, T, r, is_call, q_implied)
        greeks = _greeks_where_known(spot, contract_strikes, T, r, iv, is_call, q_implied)

        signed_oi = oi * signs
        gex = greeks.gamma * signed_oi * (spot * spot * 0.01)
        gex_known = gex == gex
        gex_or_zero = np.where(gex_known, gex, 0.0)
        strike_known = gex_known[:n] | gex_known[n:]
        strike_gex = np.where(strike_known, gex_or_zero[:n] + gex_or_zero[n:], np.nan)
        total_gex = float(np.add.reduce(gex_or_zero))
        if total_gex == 0.0 and not strike_known.any():
            total_gex = math.nan
        gamma_flip = chain_figures.gamma_flip(spot, contract_strikes, iv, signed_oi, T, r, q_implied, gex_or_zero != 0)

        # rows (last price, OI) against (previous close, reference OI): both changes in one go
        changes = contracts[2:4] - contracts[0:2]
        change_pcts = np.where(contracts[0:2] > 0, changes / contracts[0:2] * 100.0, np.nan)
        buildup, strength = chain_figures.buildup_codes(changes, oi, volume)
        # (OI, volume) x (CE, PE) totals, a NaN counting as nothing
        held = np.fmax(contracts[3:5], 0.0)
        (total_ce_oi, total_pe_oi), (total_ce_volume, total_pe_volume) = np.add.reduce(
            held.reshape(2, 2, n), axis=2
        ).tolist()
        ce_oi, pe_oi = held[0, :n], held[0, n:]
        pcr_oi_by_strike = np.where(ce_oi > 0, oi[n:] / ce_oi, np.nan)
        iv_25d_call, iv_25d_put = chain_figures.iv_at_25_delta(greeks.delta, iv, n)

    atm = _nearest_index(strikes, forward)
    atm_iv = _mean_of_known(float(iv[atm]), float(iv[n + atm])) if atm >= 0 else math.nan
    move_fraction = atm_iv * math.sqrt(T) if T > 0 else math.nan
    has_oi = total_ce_oi + total_pe_oi > 0

    def side(part: slice) -> SideFigures:
        return SideFigures(
            last_price=last[part],
            change=changes[0, part],
            change_pct=change_pcts[0, part],
            bid=bid[part],
            ask=ask[part],
            mid=mid[part],
            pricing_price=pricing[part],
            iv_from_mid=from_mid[part],
            volume=volume[part],
            oi=oi[part],
            oi_change=changes[1, part],
            oi_change_pct=change_pcts[1, part],
            iv=iv[part],
            delta=greeks.delta[part],
            gamma=greeks.gamma[part],
            theta=greeks.theta[part],
            vega=greeks.vega[part],
            rho=greeks.rho[part],
            gex=gex[part],
            buildup=buildup[part],
            buildup_strength=strength[part],
        )

    return ChainFigures(
        strikes=strikes,
        ce=side(slice(0, n)),
        pe=side(slice(n, 2 * n)),
        gex=strike_gex,
        pcr_oi_by_strike=pcr_oi_by_strike,
        spot=spot,
        future_price=quotes.future_price,
        forward=forward,
        forward_source=forward_source,
        implied_dividend_yield=q_implied if has_carry else math.nan,
        time_to_expiry_years=T,
        atm_strike=float(strikes[atm]) if atm >= 0 else math.nan,
        atm_iv=atm_iv,
        atm_straddle=float(pricing[atm] + pricing[n + atm]) if atm >= 0 else math.nan,
        expected_move=spot * move_fraction,
        expected_move_pct=100.0 * move_fraction,
        iv_25d_call=iv_25d_call,
        iv_25d_put=iv_25d_put,
        risk_reversal_25d=iv_25d_call - iv_25d_put,
        butterfly_25d=0.5 * (iv_25d_call + iv_25d_put) - atm_iv,
        pcr_oi=total_pe_oi / total_ce_oi if total_ce_oi > 0 else math.nan,
        pcr_volume=total_pe_volume / total_ce_volume if total_ce_volume > 0 else math.nan,
        max_pain=chain_figures.max_pain(strikes, ce_oi, pe_oi, total_pe_oi) if has_oi else math.nan,
        call_wall=float(strikes[ce_oi.argmax()]) if total_ce_oi > 0 else math.nan,
        put_wall=float(strikes[pe_oi.argmax()]) if total_pe_oi > 0 else math.nan,
        total_gex=total_gex,
        gamma_flip=gamma_flip,
        total_ce_oi=total_ce_oi,
        total_pe_oi=total_pe_oi,
        total_ce_volume=total_ce_volume,
        total_pe_volume=total_pe_volume,
        lot_size=quotes.lot_size,
    )


def _greeks_where_known(spot, contract_strikes, T, r, iv, is_call, q) -> black_scholes.Greeks:
    """black_scholes.greeks, NaN where there is no IV. greeks() takes a slower edge-case path for
    every NaN volatility (twice the time on a chain with some), so those contracts get a stand-in
    volatility and are blanked afterwards."""
    iv_known = iv == iv
    if iv_known.all() or not iv_known.any():
        return black_scholes.greeks(spot, contract_strikes, T, r, iv, is_call, q)
    greeks = black_scholes.greeks(spot, contract_strikes, T, r, np.where(iv_known, iv, 1.0), is_call, q)
    without_iv = ~iv_known
    for values in greeks:
        values[without_iv] = np.nan
    return greeks


def _pricing_prices(bid: np.ndarray, ask: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, ...]:
    """The mid, the price each IV is taken from, and whether that is the mid."""
    mid = (bid + ask) * 0.5
    spread = ask - bid
    sane = (bid > 0) & (spread >= 0) & (spread <= np.maximum(mid * MAX_SPREAD_FRACTION, MIN_SPREAD_ALLOWANCE))
    return mid, np.where(sane, mid, np.where(last > 0, last, np.nan)), sane


def _forward(
    strikes: np.ndarray, call_price: np.ndarray, put_price: np.ndarray, quotes: ChainQuotes
) -> tuple[float, str | None]:
    """The forward by parity near the money, else the future, else spot carried at r - q."""
    spot, T, r, future = quotes.spot, max(quotes.time_to_expiry_years, 0.0), quotes.rate, quotes.future_price
    carry = spot * math.exp((r - quotes.dividend_yield) * T) if spot > 0 else math.nan
    first_guess = future if future > 0 else carry
    if first_guess > 0:
        parity = (strikes + math.exp(r * T) * (call_price - put_price)).tolist()
        strike_list = strikes.tolist()
        # walk outwards from the guess, nearer side first, collecting strikes where parity prices
        right = bisect.bisect_left(strike_list, first_guess)
        left, nearest = right - 1, []
        while len(nearest) < PARITY_STRIKES and (left >= 0 or right < len(strike_list)):
            if right == len(strike_list) or (
                left >= 0 and first_guess - strike_list[left] <= strike_list[right] - first_guess
            ):
                index, left = left, left - 1
            else:
                index, right = right, right + 1
            if parity[index] > 0:
                nearest.append(parity[index])
        if nearest:
            nearest.sort()
            return (nearest[(len(nearest) - 1) // 2] + nearest[len(nearest) // 2]) * 0.5, "parity"
    if future > 0:
        return future, "future"
    if carry > 0:
        return carry, "carry"
    return math.nan, None


def _nearest_index(strikes: np.ndarray, level: float) -> int:
    """Index of the strike nearest ``level`` (the lower on a tie); -1 without strikes or level."""
    if not (level > 0 and strikes.size):
        return -1
    right = int(strikes.searchsorted(level))
    if right == strikes.size or (right > 0 and level - strikes[right - 1] <= strikes[right] - level):
        return right - 1
    return right


def _mean_of_known(first: float, second: float) -> float:
    if first == first and second == second:
        return (first + second) * 0.5
    return first if first == first else second

"""Black-Scholes-Merton prices: textbook values, parity, edge cases, broadcasting."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.analytics.black_scholes import price

N = NormalDist().cdf


def hand_bsm(S: float, K: float, T: float, r: float, sigma: float, q: float, is_call: bool) -> float:
    """The Merton formula written out with the standard library, to check the vectorised one."""
    d1 = (math.log(S / K) + (r - q + sigma**2 / 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    if is_call:
        return S * math.exp(-q * T) * N(d1) - K * math.exp(-r * T) * N(d2)
    return K * math.exp(-r * T) * N(-d2) - S * math.exp(-q * T) * N(-d1)


def test_it_matches_the_textbook_values():
    assert float(price(100, 100, 1, 0.05, 0.2, True)) == pytest.approx(10.450583572185565, abs=1e-12)
    assert float(price(100, 100, 1, 0.05, 0.2, False)) == pytest.approx(5.573526022256971, abs=1e-12)


def test_calls_and_puts_satisfy_put_call_parity_on_a_grid():
    S, K, T, sigma, r, q = np.meshgrid(
        [50.0, 90.0, 100.0, 120.0, 150.0],
        [60.0, 95.0, 100.0, 105.0, 140.0],
        [1 / 365, 0.1, 0.5, 2.0],
        [0.05, 0.2, 0.6],
        [0.0, 0.065],
        [0.0, 0.03],
        indexing="ij",
    )
    parity = price(S, K, T, r, sigma, True, q) - price(S, K, T, r, sigma, False, q)
    assert np.max(np.abs(parity - (S * np.exp(-q * T) - K * np.exp(-r * T)))) < 1e-10


def test_a_dividend_yield_matches_the_merton_formula_by_hand():
    for is_call in (True, False):
        expected = hand_bsm(100.0, 95.0, 0.5, 0.05, 0.25, 0.02, is_call)
        assert float(price(100.0, 95.0, 0.5, 0.05, 0.25, is_call, q=0.02)) == pytest.approx(expected, abs=1e-9)
    # q lowers calls and raises puts (the forward falls)
    assert price(100, 100, 1, 0.05, 0.2, True, q=0.03) < price(100, 100, 1, 0.05, 0.2, True)
    assert price(100, 100, 1, 0.05, 0.2, False, q=0.03) > price(100, 100, 1, 0.05, 0.2, False)


def test_black_76_on_a_future_is_s_equal_f_and_q_equal_r():
    F, K, T, r, sigma = 26_150.0, 26_000.0, 20 / 365, 0.065, 0.13
    d1 = (math.log(F / K) + sigma**2 / 2 * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    black_76_call = math.exp(-r * T) * (F * N(d1) - K * N(d2))
    assert float(price(F, K, T, r, sigma, True, q=r)) == pytest.approx(black_76_call, rel=1e-12)


def test_an_expired_option_is_worth_its_intrinsic_value():
    S = np.array([90.0, 100.0, 110.0])
    assert price(S, 100, 0.0, 0.05, 0.2, True).tolist() == [0.0, 0.0, 10.0]
    assert price(S, 100, 0.0, 0.05, 0.2, False).tolist() == [10.0, 0.0, 0.0]
    assert price(S, 100, -0.01, 0.05, 0.2, True).tolist() == [0.0, 0.0, 10.0]  # past expiry too


def test_zero_volatility_gives_the_discounted_intrinsic_of_the_forward():
    S, K, T, r, q = 100.0, 100.0, 1.0, 0.05, 0.01
    forward_intrinsic = S * math.exp(-q * T) - K * math.exp(-r * T)  # e^{-rT} (F - K), F = S e^{(r-q)T}
    assert float(price(S, K, T, r, 0.0, True, q)) == pytest.approx(forward_intrinsic, abs=1e-12)
    assert float(price(S, K, T, r, 0.0, False, q)) == 0.0
    assert float(price(S, 110.0, T, r, 0.0, False, q)) == pytest.approx(110 * math.exp(-r) - S * math.exp(-q))


def test_scalars_and_arrays_broadcast_together():
    strikes = np.array([95.0, 100.0, 105.0])
    row = price(100.0, strikes, 0.5, 0.05, 0.2, True)
    assert row.shape == (3,)
    assert row.tolist() == [float(price(100.0, k, 0.5, 0.05, 0.2, True)) for k in strikes]
    grid = price(np.array([[90.0], [110.0]]), strikes, 0.5, 0.05, 0.2, np.array([True, False, True]))
    assert grid.shape == (2, 3)
    assert grid[1, 1] == float(price(110.0, 100.0, 0.5, 0.05, 0.2, False))
    scalar = price(100, 100, 1, 0.05, 0.2, True)
    assert isinstance(scalar, np.ndarray) and scalar.shape == ()


def test_a_nan_input_spoils_only_its_own_entry():
    S = np.array([100.0, np.nan, 100.0, 100.0])
    sigma = np.array([0.2, 0.2, np.nan, 0.2])
    T = np.array([1.0, 1.0, 0.0, 0.0])  # the NaN sigma sits on an expired entry: still NaN
    values = price(S, 100.0, T, 0.05, sigma, True)
    assert np.isnan(values).tolist() == [False, True, True, False]
    assert values[0] == pytest.approx(10.450583572185565, abs=1e-12)
    assert values[3] == 0.0


def test_shapes_that_do_not_broadcast_raise_naming_the_arguments():
    with pytest.raises(ValueError, match=r"S shape \(3,\) and K shape \(4,\)"):
        price(np.ones(3), np.ones(4), 1.0, 0.05, 0.2, True)
    with pytest.raises(ValueError, match=r"sigma shape \(2,\) and is_call shape \(5,\)"):
        price(100.0, 100.0, 1.0, 0.05, np.full(2, 0.2), np.ones(5, dtype=bool))


def test_is_call_must_be_boolean():
    with pytest.raises(TypeError, match="is_call"):
        price(100.0, 100.0, 1.0, 0.05, 0.2, "CE")


def test_prices_rise_with_volatility_and_move_with_spot():
    sigmas = np.linspace(0.05, 1.0, 40)
    for is_call in (True, False):
        assert np.all(np.diff(price(100.0, 105.0, 0.25, 0.05, sigmas, is_call)) > 0)
    spots = np.linspace(60.0, 140.0, 81)
    assert np.all(np.diff(price(spots, 100.0, 0.25, 0.05, 0.2, True)) > 0)
    assert np.all(np.diff(price(spots, 100.0, 0.25, 0.05, 0.2, False)) < 0)


def test_nifty_scale_prices_are_sensible():
    # A front-week ATM NIFTY straddle at 13 % vol is worth about 0.8 sigma sqrt(T) S.
    T = 5 / 365
    straddle = price(26_000.0, 26_000.0, T, 0.065, 0.13, True) + price(26_000.0, 26_000.0, T, 0.065, 0.13, False)
    assert float(straddle) == pytest.approx(0.8 * 0.13 * math.sqrt(T) * 26_000, rel=0.02)


@settings(max_examples=200, deadline=None)
@given(
    S=st.floats(1.0, 100_000.0),
    moneyness=st.floats(0.5, 2.0),
    T=st.floats(1e-4, 3.0),
    r=st.floats(0.0, 0.15),
    q=st.floats(0.0, 0.1),
    sigma=st.floats(0.01, 2.0),
)
def test_prices_stay_within_no_arbitrage_bounds(S, moneyness, T, r, q, sigma):
    K = S * moneyness
    discounted_spot, discounted_strike = S * math.exp(-q * T), K * math.exp(-r * T)
    tolerance = 1e-9 * (S + K)
    call = float(price(S, K, T, r, sigma, True, q))
    put = float(price(S, K, T, r, sigma, False, q))
    assert max(discounted_spot - discounted_strike, 0.0) - tolerance <= call <= discounted_spot + tolerance
    assert max(discounted_strike - discounted_spot, 0.0) - tolerance <= put <= discounted_strike + tolerance
    assert call - put == pytest.approx(discounted_spot - discounted_strike, abs=tolerance)

"""Implied volatility: recovery of sigma on a wide grid, tiny time values, NaN where none exists, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.analytics import black_scholes
from marketdata.analytics.black_scholes import implied_vol, price
from tests.benchmarks.baselines import newton_bisection_implied_vol, vollib_implied_vol_loop

ONE_HOUR = 1 / (365 * 24)
TICK = 0.05  # NSE's price tick: a time value below it is not something a market quotes


def wide_grid(spot: float) -> tuple:
    """Moneyness 0.5 to 2, one hour to two years, 1 % to 300 % vol, calls and puts, q and r zero or not."""
    moneyness = np.concatenate([np.linspace(0.5, 2.0, 31), [0.999, 1.0, 1.001]])
    expiries = [ONE_HOUR, 4 * ONE_HOUR, 1 / 365, 3 / 365, 7 / 365, 30 / 365, 0.25, 0.5, 1.0, 2.0]
    sigmas = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0]
    m, T, sigma, is_call, q, r = np.meshgrid(
        moneyness, expiries, sigmas, [True, False], [0.0, 0.03], [0.0, 0.065], indexing="ij"
    )
    return spot, spot * m.ravel(), T.ravel(), r.ravel(), sigma.ravel(), is_call.ravel(), q.ravel()


def time_value(premium, S, K, T, r, is_call, q):
    """What the price holds over the intrinsic value of the discounted forward."""
    discounted_spot, discounted_strike = S * np.exp(-q * T), K * np.exp(-r * T)
    return premium - np.maximum(np.where(is_call, 1.0, -1.0) * (discounted_spot - discounted_strike), 0.0)


@pytest.mark.parametrize("spot", [100.0, 24_000.0])
def test_it_recovers_sigma_wherever_the_time_value_is_a_tick_or_more(spot):
    S, K, T, r, sigma, is_call, q = wide_grid(spot)
    premium = price(S, K, T, r, sigma, is_call, q)
    quoted = time_value(premium, S, K, T, r, is_call, q) >= TICK
    assert quoted.sum() > 8_000  # the grid is not vacuous
    iv = implied_vol(premium, S, K, T, r, is_call, q)
    assert np.max(np.abs(iv[quoted] - sigma[quoted])) <= 1e-10


@pytest.mark.parametrize("spot", [100.0, 24_000.0])
def test_tiny_time_values_still_converge_to_a_volatility_that_reprices(spot):
    S, K, T, r, sigma, is_call, q = wide_grid(spot)
    premium = price(S, K, T, r, sigma, is_call, q)
    tiny = (time_value(premium, S, K, T, r, is_call, q) > 0) & (time_value(premium, S, K, T, r, is_call, q) < TICK)
    assert tiny.sum() > 4_000
    iv = implied_vol(premium[tiny], S, K[tiny], T[tiny], r[tiny], is_call[tiny], q[tiny])
    assert np.all(np.isfinite(iv)) and np.all(iv > 0)
    repriced = price(S, K[tiny], T[tiny], r[tiny], iv, is_call[tiny], q[tiny])
    relative = np.abs(repriced - premium[tiny]) / premium[tiny]
    # price() itself loses digits far out of the money an hour from expiry (its two terms cancel),
    # and the normal distribution's tails limit the e^-700-small prices.
    assert np.max(relative[premium[tiny] > 1e-100]) <= 1e-8
    assert np.max(relative) <= 1e-7


def test_deep_in_the_money_with_a_sliver_of_time_value_still_converges():
    # An hour before expiry, NIFTY strikes 1.7 % to 2.5 % in the money: intrinsic value plus 1e-9 to
    # 1e-3 of a rupee, where the input's last digit (~6e-14 of 400) is all the information left.
    S, T, r = 24_000.0, ONE_HOUR, 0.065
    K = np.array([23_400.0, 23_600.0, 24_400.0, 24_600.0])
    is_call = np.array([True, True, False, False])
    sigma = np.array([0.4, 0.3, 0.3, 0.4])
    premium = price(S, K, T, r, sigma, is_call)
    extra = time_value(premium, S, K, T, r, is_call, 0.0)
    assert np.all((extra > 1e-10) & (extra < 1e-3))
    iv = implied_vol(premium, S, K, T, r, is_call)
    assert np.all(np.abs(price(S, K, T, r, iv, is_call) - premium) <= 1e-14 * premium)  # to its last digit or two
    assert np.max(np.abs(iv - sigma)) < 1e-3
    # the same strikes' out-of-the-money side carries the time value alone, and pins sigma down
    other_side = price(S, K, T, r, sigma, ~is_call)
    assert np.max(np.abs(implied_vol(other_side, S, K, T, r, ~is_call) - sigma)) <= 1e-9


def test_a_price_equal_to_its_intrinsic_value_in_floating_point_has_no_volatility():
    # Further in the money the time value (N(-13) of a rupee) is below the price's last digit.
    premium = price(24_000.0, 22_000.0, ONE_HOUR, 0.065, 0.6, True)
    assert premium == 24_000.0 - 22_000.0 * math.exp(-0.065 * ONE_HOUR)
    assert np.isnan(implied_vol(premium, 24_000.0, 22_000.0, ONE_HOUR, 0.065, True))


def test_far_out_of_the_money_wings_recover_sigma_from_paise_and_less():
    S, T, r = 24_000.0, 1 / 365, 0.065
    K = np.linspace(24_500.0, 26_000.0, 16)
    sigma = 0.12 + 0.5 * (K / S - 1) ** 2
    premium = price(S, K, T, r, sigma, True)
    assert premium.min() < 1e-15 and premium.max() < 20.0
    iv = implied_vol(premium, S, K, T, r, True)
    assert np.max(np.abs(iv - sigma)) <= 1e-11
    assert np.max(np.abs(newton_bisection_implied_vol(premium, S, K, T, r, True) - sigma)) < 1e-6  # reference agrees


@settings(max_examples=400, deadline=None)
@given(
    S=st.sampled_from([100.0, 2_500.0, 24_000.0, 52_000.0]),
    moneyness=st.floats(0.5, 2.0),
    T=st.floats(ONE_HOUR, 2.0),
    r=st.floats(0.0, 0.12),
    q=st.floats(0.0, 0.08),
    sigma=st.floats(0.01, 3.0),
    is_call=st.booleans(),
)
def test_random_contracts_round_trip(S, moneyness, T, r, q, sigma, is_call):
    K = S * moneyness
    premium = float(price(S, K, T, r, sigma, is_call, q))
    extra = float(time_value(premium, S, K, T, r, is_call, q))
    iv = float(implied_vol(premium, S, K, T, r, is_call, q))
    if extra >= TICK:
        assert iv == pytest.approx(sigma, abs=1e-10)
    elif extra > 0:
        assert math.isfinite(iv)
        assert float(price(S, K, T, r, iv, is_call, q)) == pytest.approx(premium, rel=1e-7)
    else:
        assert math.isnan(iv)  # the price is its intrinsic value: no volatility is left to find


def test_calls_and_puts_at_one_strike_imply_the_same_volatility():
    S, K, T, r, q = 24_000.0, np.linspace(21_000, 27_000, 25), 12 / 365, 0.065, 0.012
    sigma = 0.12 + 0.4 * (K / S - 1) ** 2
    call_prices, put_prices = price(S, K, T, r, sigma, True, q), price(S, K, T, r, sigma, False, q)
    calls = implied_vol(call_prices, S, K, T, r, True, q)
    puts = implied_vol(put_prices, S, K, T, r, False, q)
    # Deep in the money a price keeps the time value only to its last digit, so compare where
    # both sides quote at least a tick of it.
    quoted = (time_value(call_prices, S, K, T, r, True, q) >= TICK) & (
        time_value(put_prices, S, K, T, r, False, q) >= TICK
    )
    assert quoted.sum() >= 10
    assert np.max(np.abs(calls - puts)[quoted]) <= 1e-10


def test_black_76_on_a_future_is_s_equal_f_and_q_equal_r():
    F, K, T, r = 24_150.0, np.array([23_000.0, 24_000.0, 25_500.0]), 20 / 365, 0.065
    premium = price(F, K, T, r, 0.14, False, q=r)
    assert implied_vol(premium, F, K, T, r, False, q=r) == pytest.approx(np.full(3, 0.14), abs=1e-12)


def test_it_agrees_with_vollib_on_nifty_like_options():
    rng = np.random.default_rng(11)
    K = rng.uniform(20_000, 28_000, 300)
    T = rng.integers(1, 61, 300) / 365
    sigma = rng.uniform(0.08, 0.6, 300)
    is_call = rng.random(300) < 0.5
    premium = price(24_000.0, K, T, 0.065, sigma, is_call)
    quoted = time_value(premium, 24_000.0, K, T, 0.065, is_call, 0.0) >= TICK
    ours = implied_vol(premium, 24_000.0, K, T, 0.065, is_call)
    theirs = vollib_implied_vol_loop(premium, 24_000.0, K, T, 0.065, is_call)
    assert np.max(np.abs(ours[quoted] - theirs[quoted])) <= 1e-10


def test_it_is_nan_exactly_where_no_volatility_exists_and_neighbours_are_untouched():
    S, K, T, r, q = 100.0, 90.0, 0.5, 0.05, 0.02
    discounted_spot, discounted_strike = S * math.exp(-q * T), K * math.exp(-r * T)
    good = float(price(S, K, T, r, 0.3, True, q))
    cases = [
        # (price, S, K, T, is_call, solvable)
        (good, S, K, T, True, True),
        (discounted_spot - discounted_strike, S, K, T, True, False),  # exactly the forward intrinsic
        (discounted_spot - discounted_strike - 0.01, S, K, T, True, False),  # below it
        (discounted_spot, S, K, T, True, False),  # the call's ceiling
        (discounted_spot + 1.0, S, K, T, True, False),  # above it
        (discounted_strike, S, K, T, False, False),  # the put's ceiling
        (0.0, S, 120.0, T, True, False),
        (-1.0, S, 120.0, T, True, False),
        (good, S, K, 0.0, True, False),  # expired
        (good, S, K, -0.1, True, False),
        (good, 0.0, K, T, True, False),
        (good, -100.0, K, T, True, False),
        (good, S, 0.0, T, True, False),
        (good, S, -90.0, T, True, False),
        (np.nan, S, K, T, True, False),
        (good, np.nan, K, T, True, False),
        (good, S, np.nan, T, True, False),
        (good, S, K, np.nan, True, False),
        (good, S, K, np.inf, True, False),
        (good, S, K, T, True, True),
    ]
    premium, spot, strike, expiry, is_call, solvable = (np.array(column) for column in zip(*cases, strict=True))
    iv = implied_vol(premium, spot, strike, expiry, r, is_call, q)
    assert np.isnan(iv).tolist() == (~solvable).tolist()
    assert iv[solvable] == pytest.approx([0.3, 0.3], abs=1e-13)
    for bad_rate in (np.nan,):
        assert np.isnan(implied_vol(good, S, K, T, bad_rate, True, q))
        assert np.isnan(implied_vol(good, S, K, T, r, True, bad_rate))


def test_a_whole_array_of_unsolvable_prices_is_all_nan():
    assert np.isnan(implied_vol(np.zeros(5), 100.0, 100.0, 0.5, 0.05, True)).all()
    assert implied_vol(np.zeros(0), 100.0, 100.0, 0.5, 0.05, True).shape == (0,)


def test_long_arrays_are_solved_block_by_block_without_seams():
    rng = np.random.default_rng(5)
    n = 3 * black_scholes._IMPLIED_VOL_BLOCK + 17
    K = rng.uniform(20_000, 28_000, n)
    T = rng.integers(1, 61, n) / 365
    sigma = rng.uniform(0.08, 0.6, n)
    is_call = rng.random(n) < 0.5
    premium = price(24_000.0, K, T, 0.065, sigma, is_call)
    premium[::97] = 0.0  # unsolvable entries scattered through every block
    iv = implied_vol(premium, 24_000.0, K, T, 0.065, is_call)
    quoted = time_value(premium, 24_000.0, K, T, 0.065, is_call, 0.0) >= TICK
    assert np.isnan(iv[::97]).all()
    assert np.max(np.abs(iv[quoted] - sigma[quoted])) <= 1e-10
    picks = rng.choice(n, 200, replace=False)
    alone = [float(implied_vol(premium[i], 24_000.0, K[i], T[i], 0.065, bool(is_call[i]))) for i in picks]
    assert np.array_equal(iv[picks], np.array(alone), equal_nan=True)


def test_scalars_and_arrays_broadcast_together():
    scalar = implied_vol(10.450583572185565, 100, 100, 1, 0.05, True)
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and float(scalar) == pytest.approx(0.2, abs=1e-14)
    strikes = np.array([95.0, 100.0, 105.0])
    kinds = np.array([[True], [False]])
    premium = price(100.0, strikes, 0.5, 0.05, 0.25, kinds)
    assert premium.shape == (2, 3)
    assert implied_vol(premium, 100.0, strikes, 0.5, 0.05, kinds) == pytest.approx(np.full((2, 3), 0.25), abs=1e-13)
    spots = np.array([[99.0], [101.0]])  # and with spot and strikes along different axes
    premium = price(spots, strikes, 0.5, 0.05, 0.25, kinds)
    premium[1, 0] = 0.0
    iv = implied_vol(premium, spots, strikes, 0.5, 0.05, kinds)
    assert np.isnan(iv).tolist() == [[False, False, False], [True, False, False]]
    assert iv[~np.isnan(iv)] == pytest.approx(np.full(5, 0.25), abs=1e-13)


def test_shapes_that_do_not_broadcast_raise_naming_the_arguments():
    with pytest.raises(ValueError, match=r"implied_vol: .*price shape \(3,\) and K shape \(4,\)"):
        implied_vol(np.ones(3), 100.0, np.ones(4), 0.5, 0.05, True)
    with pytest.raises(TypeError, match="is_call"):
        implied_vol(1.0, 100.0, 100.0, 0.5, 0.05, "PE")


@pytest.mark.parametrize("spot", [100.0, 24_000.0])
def test_each_entry_is_solved_as_if_alone_whatever_segment_its_neighbours_are_in(spot):
    # The wide grid has entries in every segment of the initial guess and every objective; the
    # solver reorders them by segment, and its result for each must not depend on the others.
    S, K, T, r, sigma, is_call, q = wide_grid(spot)
    premium = price(S, K, T, r, sigma, is_call, q)
    iv = implied_vol(premium, S, K, T, r, is_call, q)
    picks = np.random.default_rng(17).choice(K.size, 300, replace=False)
    alone = [float(implied_vol(premium[i], S, K[i], T[i], r[i], bool(is_call[i]), q[i])) for i in picks]
    assert np.array_equal(iv[picks], np.array(alone), equal_nan=True)
    assert np.isfinite(iv[picks]).sum() > 150


def test_stragglers_converge_by_bracket_and_bisection_when_the_step_test_never_passes(monkeypatch):
    # Every entry normally converges in two steps; with the step test disabled, all of them go
    # through the stragglers' path (compaction, bracket tightening, bisection, the iteration limit).
    from marketdata.analytics import _lets_be_rational

    S, K, T, r, sigma, is_call, q = wide_grid(100.0)
    premium = price(S, K, T, r, sigma, is_call, q)
    normal = implied_vol(premium, S, K, T, r, is_call, q)
    monkeypatch.setattr(_lets_be_rational, "_CONVERGED_STEP", np.array(0.0))
    straggling = implied_vol(premium, S, K, T, r, is_call, q)
    assert np.array_equal(np.isnan(straggling), np.isnan(normal))
    solved = ~np.isnan(normal)
    assert np.max(np.abs(straggling[solved] - normal[solved]) / normal[solved]) <= 1e-10
    quoted = time_value(premium, S, K, T, r, is_call, q) >= TICK
    assert np.max(np.abs(straggling[quoted] - sigma[quoted])) <= 1e-10

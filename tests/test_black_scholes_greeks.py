"""Black-Scholes-Merton Greeks: against QuantLib on a wide grid, units, parity, finite differences, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erfcx

from marketdata.analytics.black_scholes import Greeks, greeks, price

ONE_HOUR = 1 / (365 * 24)
GREEK_NAMES = ("price", "delta", "gamma", "theta", "vega", "rho")


def quantlib_greeks(S: float, K: float, T: float, r: float, sigma: float, is_call: bool, q: float) -> dict:
    """QuantLib's BlackCalculator on the forward, converted to this module's units: vega per 1.0
    of vol and rho per 1.0 of rate with the spot and q held, so / 100 (checked against finite
    differences below).

    Its theta(spot, T) is -dV/dT per year with the spot held, our theta times 365, but it recovers
    -rT as log(discount), which keeps only ~5 digits of rT an hour from expiry. The same quantity
    comes from its value, delta and gamma through the Black-Scholes PDE without that loss:
    -dV/dT = rV - (r - q) S delta - sigma^2 S^2 gamma / 2."""
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, K)
    calculator = ql.BlackCalculator(payoff, S * math.exp((r - q) * T), sigma * math.sqrt(T), math.exp(-r * T))
    value, delta, gamma = calculator.value(), calculator.delta(S), calculator.gamma(S)
    return {
        "price": value,
        "delta": delta,
        "gamma": gamma,
        "theta": (r * value - (r - q) * S * delta - 0.5 * sigma**2 * S**2 * gamma) / 365,
        "vega": calculator.vega(T) / 100,
        "rho": calculator.rho(T) / 100,
    }


def tail_accurate_price(S, K, T, r, sigma, is_call, q) -> np.ndarray:
    """The price by Jäckel's erfcx form of the normalised Black function, which keeps its relative
    accuracy far out of the money, where QuantLib's normal distribution (accurate to ~1e-16
    absolute, not relative) leaves errors of ~1e-16 S."""
    discounted_spot, discounted_strike = S * np.exp(-q * T), K * np.exp(-r * T)
    x = np.log(discounted_spot / discounted_strike)
    h, t = -np.abs(x) / (sigma * np.sqrt(T)), 0.5 * sigma * np.sqrt(T)
    otm = 0.5 * np.exp(-0.5 * (h * h + t * t)) * (erfcx(-(h + t) / math.sqrt(2)) - erfcx(-(h - t) / math.sqrt(2)))
    intrinsic = np.maximum(np.where(is_call, 1.0, -1.0) * (discounted_spot - discounted_strike), 0.0)
    return intrinsic + np.sqrt(discounted_spot * discounted_strike) * otm


def wide_grid(spot: float) -> tuple:
    """Moneyness 0.5 to 2, one hour to two years, 1 % to 300 % vol, calls and puts, q and r zero or not."""
    moneyness = [0.5, 0.7, 0.85, 0.95, 0.99, 1.0, 1.01, 1.05, 1.2, 1.5, 2.0]
    expiries = [ONE_HOUR, 6 * ONE_HOUR, 1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 2.0]
    sigmas = [0.01, 0.05, 0.13, 0.4, 1.0, 3.0]
    m, T, sigma, is_call, q, r = np.meshgrid(
        moneyness, expiries, sigmas, [True, False], [0.0, 0.03], [0.0, 0.065], indexing="ij"
    )
    return spot, spot * m.ravel(), T.ravel(), r.ravel(), sigma.ravel(), is_call.ravel(), q.ravel()


def assert_close(ours: np.ndarray, reference: np.ndarray, rel: float = 1e-10, abs_: float = 1e-12) -> None:
    error = np.abs(ours - reference)
    allowed = np.maximum(rel * np.abs(reference), abs_)
    worst = int(np.argmax(error / allowed))
    assert np.all(error <= allowed), f"entry {worst}: ours {ours[worst]!r}, reference {reference[worst]!r}"


@pytest.mark.parametrize("spot", [100.0, 24_000.0])
def test_price_and_every_greek_match_quantlib_on_a_wide_grid(spot):
    S, K, T, r, sigma, is_call, q = wide_grid(spot)
    ours = greeks(S, K, T, r, sigma, is_call, q)
    reference = [quantlib_greeks(S, *row) for row in zip(K, T, r, sigma, is_call.tolist(), q, strict=True)]
    for name in GREEK_NAMES:
        # 1e-12 absolute per 100 of spot: the model is homogeneous in (S, K), and QuantLib's own
        # absolute errors grow with S.
        assert_close(getattr(ours, name), np.array([row[name] for row in reference]), abs_=1e-12 * spot / 100)


@pytest.mark.parametrize("spot", [100.0, 24_000.0])
def test_prices_far_out_of_the_money_keep_their_relative_accuracy(spot):
    S, K, T, r, sigma, is_call, q = wide_grid(spot)
    assert_close(price(S, K, T, r, sigma, is_call, q), tail_accurate_price(S, K, T, r, sigma, is_call, q))


@settings(max_examples=300, deadline=None)
@given(
    S=st.floats(1.0, 100_000.0),
    moneyness=st.floats(0.5, 2.0),
    T=st.floats(ONE_HOUR, 2.0),
    r=st.floats(0.0, 0.15),
    q=st.floats(0.0, 0.1),
    sigma=st.floats(0.01, 3.0),
    is_call=st.booleans(),
)
def test_random_contracts_match_quantlib(S, moneyness, T, r, q, sigma, is_call):
    ours = greeks(S, S * moneyness, T, r, sigma, is_call, q)
    reference = quantlib_greeks(S, S * moneyness, T, r, sigma, is_call, q)
    for name in GREEK_NAMES:
        assert_close(np.array([getattr(ours, name)]), np.array([reference[name]]), abs_=1e-12 * max(S, 100.0) / 100)
    assert_close(np.array([ours.price]), np.array([tail_accurate_price(S, S * moneyness, T, r, sigma, is_call, q)]))


def test_it_returns_a_greeks_tuple_with_the_textbook_values():
    result = greeks(100.0, 100.0, 1.0, 0.05, 0.2, True)
    assert isinstance(result, Greeks) and result._fields == GREEK_NAMES
    # Hull's textbook case: d1 = 0.35, delta N(d1), vega per point S phi(d1) sqrt(T) / 100.
    assert float(result.price) == pytest.approx(10.450583572185565, abs=1e-12)
    assert float(result.delta) == pytest.approx(0.6368306511756191, abs=1e-14)
    assert float(result.vega) == pytest.approx(0.3752403469169379, abs=1e-14)
    assert float(result.gamma) == pytest.approx(0.018762017345846895, abs=1e-15)
    assert float(result.theta) == pytest.approx(-6.414027546438197 / 365, abs=1e-14)
    assert float(result.rho) == pytest.approx(0.5323248154537634, abs=1e-14)


def test_greeks_price_equals_price():
    S, K, T, r, sigma, is_call, q = wide_grid(24_000.0)
    assert np.array_equal(greeks(S, K, T, r, sigma, is_call, q).price, price(S, K, T, r, sigma, is_call, q))


def test_calls_and_puts_satisfy_parity_in_every_greek():
    S, K, T, r, sigma, _, q = wide_grid(100.0)
    call, put = greeks(S, K, T, r, sigma, True, q), greeks(S, K, T, r, sigma, False, q)
    discounted_spot, discounted_strike = S * np.exp(-q * T), K * np.exp(-r * T)
    assert_close(call.delta - put.delta, np.exp(-q * T), abs_=1e-15)
    assert_close(call.gamma, put.gamma)
    assert_close(call.vega, put.vega)
    # d/dt of C - P = S e^{-qT} - K e^{-rT} with S held, per day; d/dr per point.
    assert_close(call.theta - put.theta, (q * discounted_spot - r * discounted_strike) / 365, abs_=1e-14)
    assert_close(call.rho - put.rho, T * discounted_strike / 100, abs_=1e-14)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize(
    ("S", "K", "T", "r", "sigma", "q"),
    [
        (100.0, 100.0, 0.5, 0.065, 0.2, 0.0),
        (100.0, 120.0, 0.1, 0.05, 0.35, 0.02),
        (24_000.0, 23_500.0, 7 / 365, 0.065, 0.13, 0.065),  # Black-76 on a NIFTY future
        (24_000.0, 25_000.0, 30 / 365, 0.065, 0.18, 0.012),
    ],
)
def test_each_greek_is_the_finite_difference_of_price_in_the_stated_units(S, K, T, r, sigma, q, is_call):
    g = greeks(S, K, T, r, sigma, is_call, q)

    def value(**bumped):
        arguments = {"S": S, "K": K, "T": T, "r": r, "sigma": sigma, "q": q} | bumped
        return float(price(is_call=is_call, **arguments))

    dS, dT, dsigma, dr = S * 1e-5, 1e-7, 1e-6, 1e-6
    delta = (value(S=S + dS) - value(S=S - dS)) / (2 * dS)
    gamma = (value(S=S + dS) - 2 * value() + value(S=S - dS)) / dS**2
    theta_per_day = -(value(T=T + dT) - value(T=T - dT)) / (2 * dT) / 365  # a day passing shortens T
    vega_per_point = (value(sigma=sigma + dsigma) - value(sigma=sigma - dsigma)) / (2 * dsigma) * 0.01
    rho_per_point = (value(r=r + dr) - value(r=r - dr)) / (2 * dr) * 0.01
    # The differences carry truncation and rounding errors of ~1e-7: these check units and signs,
    # the QuantLib comparisons above check the digits.
    assert float(g.delta) == pytest.approx(delta, rel=1e-6)
    assert float(g.gamma) == pytest.approx(gamma, rel=1e-3)
    assert float(g.theta) == pytest.approx(theta_per_day, rel=1e-6)
    assert float(g.vega) == pytest.approx(vega_per_point, rel=1e-6)
    assert float(g.rho) == pytest.approx(rho_per_point, rel=1e-6)
    # and one calendar day of theta is what a day actually costs, to first order
    one_day_later = value(T=T - 1 / 365)
    assert one_day_later - value() == pytest.approx(float(g.theta), rel=0.05)


def test_greeks_agree_with_vollib_in_the_same_units():
    from tests.benchmarks.baselines import vollib_greeks_loop

    rng = np.random.default_rng(7)
    K = rng.uniform(20_000, 28_000, 50)
    T = rng.integers(1, 61, 50) / 365
    sigma = rng.uniform(0.08, 0.6, 50)
    is_call = rng.random(50) < 0.5
    ours = greeks(24_000.0, K, T, 0.065, sigma, is_call, 0.01)
    theirs = vollib_greeks_loop(24_000.0, K, T, 0.065, sigma, is_call, 0.01)
    for name in GREEK_NAMES:
        assert_close(getattr(ours, name), theirs[name], rel=1e-9, abs_=1e-9)


def test_an_expired_option_has_intrinsic_delta_and_no_other_greeks():
    S = np.array([90.0, 100.0, 110.0])
    call = greeks(S, 100.0, 0.0, 0.065, 0.2, True)
    put = greeks(S, 100.0, -1 / 365, 0.065, 0.2, False)  # past expiry too
    assert call.price.tolist() == [0.0, 0.0, 10.0]
    assert put.price.tolist() == [10.0, 0.0, 0.0]
    assert call.delta.tolist() == [0.0, 0.0, 1.0]  # at the money it expires worthless
    assert put.delta.tolist() == [-1.0, 0.0, 0.0]
    for name in ("gamma", "theta", "vega", "rho"):
        assert getattr(call, name).tolist() == [0.0, 0.0, 0.0]
        assert getattr(put, name).tolist() == [0.0, 0.0, 0.0]


def test_zero_volatility_gives_the_limits_of_a_certain_forward():
    S, T, r, q = 100.0, 0.5, 0.065, 0.02
    K = np.array([90.0, 120.0])  # the forward 102.3 is above the first strike, below the second
    call, put = greeks(S, K, T, r, 0.0, True, q), greeks(S, K, T, r, -0.1, False, q)
    discounted_spot, discounted_strike = S * math.exp(-q * T), K * math.exp(-r * T)
    assert call.price.tolist() == pytest.approx([discounted_spot - discounted_strike[0], 0.0])
    assert put.price.tolist() == pytest.approx([0.0, discounted_strike[1] - discounted_spot])
    assert call.delta.tolist() == pytest.approx([math.exp(-q * T), 0.0])
    assert put.delta.tolist() == pytest.approx([0.0, -math.exp(-q * T)])
    assert call.theta[0] == pytest.approx((q * discounted_spot - r * discounted_strike[0]) / 365)
    assert put.theta[1] == pytest.approx(-(q * discounted_spot - r * discounted_strike[1]) / 365)
    assert call.rho.tolist() == pytest.approx([T * discounted_strike[0] / 100, 0.0])
    assert put.rho.tolist() == pytest.approx([0.0, -T * discounted_strike[1] / 100])
    for name in ("gamma", "vega"):
        assert getattr(call, name).tolist() == [0.0, 0.0] and getattr(put, name).tolist() == [0.0, 0.0]
    # the limits are where small volatilities are heading
    nearly = greeks(S, K, T, r, 1e-4, True, q)
    for name in ("price", "delta", "theta", "rho"):
        assert getattr(nearly, name) == pytest.approx(getattr(call, name), rel=1e-6, abs=1e-12)


def test_a_nan_or_edge_entry_spoils_only_itself():
    S = np.array([100.0, np.nan, 100.0, 100.0, 100.0, 100.0])
    T = np.array([0.5, 0.5, 0.0, 0.5, 0.5, 0.5])
    sigma = np.array([0.2, 0.2, np.nan, 0.0, 0.2, 0.2])
    r = np.array([0.05, 0.05, 0.05, 0.05, np.nan, 0.05])
    result = greeks(S, 100.0, T, r, sigma, True)
    clean = greeks(100.0, 100.0, 0.5, 0.05, 0.2, True)
    for name in GREEK_NAMES:
        values = getattr(result, name)
        assert np.isnan(values).tolist() == [False, True, True, False, True, False], name
        assert values[0] == values[5] == float(getattr(clean, name))


def test_long_arrays_are_computed_block_by_block_without_seams():
    rng = np.random.default_rng(3)
    n = 20_011  # several blocks and a ragged last one
    K = rng.uniform(80.0, 120.0, n)
    T = rng.uniform(-0.01, 1.0, n)  # some expired
    sigma = rng.uniform(-0.05, 0.8, n)  # some without volatility
    is_call = rng.random(n) < 0.5
    whole = greeks(100.0, K, T, 0.065, sigma, is_call, 0.01)
    picks = rng.choice(n, 300, replace=False)
    for i in picks:
        one = greeks(100.0, K[i], T[i], 0.065, sigma[i], bool(is_call[i]), 0.01)
        for name in GREEK_NAMES:
            assert getattr(whole, name)[i] == pytest.approx(float(getattr(one, name)), rel=1e-15, abs=1e-300)


def test_scalars_and_arrays_broadcast_together():
    scalar = greeks(100.0, 100.0, 0.5, 0.05, 0.2, True)
    assert all(isinstance(values, np.ndarray) and values.shape == () for values in scalar)
    grid = greeks(np.array([[90.0], [110.0]]), np.array([95.0, 100.0, 105.0]), 0.5, 0.05, 0.2, [True, False, True])
    assert all(values.shape == (2, 3) for values in grid)
    assert grid.delta[1, 1] == float(greeks(110.0, 100.0, 0.5, 0.05, 0.2, False).delta)


def test_shapes_that_do_not_broadcast_raise_naming_the_arguments():
    with pytest.raises(ValueError, match=r"greeks: .*K shape \(4,\) and sigma shape \(3,\)"):
        greeks(100.0, np.ones(4), 0.5, 0.05, np.full(3, 0.2), True)


def test_arrays_longer_than_a_block_have_no_seams_even_with_edge_entries_only_in_a_late_block():
    from marketdata.analytics import black_scholes

    rng = np.random.default_rng(13)
    n = 2 * black_scholes._GREEKS_BLOCK + 17
    K = rng.uniform(80.0, 120.0, n)
    T = rng.uniform(1 / 365, 1.0, n)
    sigma = rng.uniform(0.05, 0.8, n)
    is_call = rng.random(n) < 0.5
    late = n - 5 + np.arange(3)  # the first blocks are all regular, the last one is not
    T[late[0]], sigma[late[1]], sigma[late[2]] = 0.0, -0.1, np.nan
    whole = greeks(100.0, K, T, 0.065, sigma, is_call, 0.01)
    picks = np.concatenate([rng.choice(n, 200, replace=False), late, [0, n - 1]])
    for i in picks:
        one = greeks(100.0, K[i], T[i], 0.065, sigma[i], bool(is_call[i]), 0.01)
        for name in GREEK_NAMES:
            assert getattr(whole, name)[i] == pytest.approx(
                float(getattr(one, name)), rel=1e-15, abs=1e-300, nan_ok=True
            )
    expired = late[0]
    intrinsic = max(100.0 - K[expired], 0.0) if is_call[expired] else max(K[expired] - 100.0, 0.0)
    assert whole.price[expired] == intrinsic
    assert np.isnan(whole.delta[late[2]]) and not np.isnan(whole.delta[late[1]])


def test_each_call_returns_fresh_arrays_that_later_calls_leave_alone():
    K = np.linspace(90.0, 110.0, 7)
    first = greeks(100.0, K, 0.5, 0.05, 0.2, True)
    kept = [values.copy() for values in first]
    second = greeks(100.0, K, 0.25, 0.05, 0.3, False)
    for values, copy in zip(first, kept, strict=True):
        assert np.array_equal(values, copy)
        assert not any(np.shares_memory(values, other) for other in second)
    for name, values in zip(GREEK_NAMES, first, strict=True):
        assert not any(
            np.shares_memory(values, other)
            for other_name, other in zip(GREEK_NAMES, first, strict=True)
            if other_name != name
        )

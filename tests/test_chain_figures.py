"""Option-chain figures: each worked out by hand on a chain of a few strikes, then the edge cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from marketdata.analytics import black_scholes
from marketdata.analytics.chain import ChainQuotes, SideQuotes, compute_chain

NAN = math.nan


def model_chain(
    strikes: list[float],
    vols: list[float] | float,
    *,
    spot: float = 24_000.0,
    T: float = 0.05,
    r: float = 0.0,
    true_dividend_yield: float = 0.0,
    ce_oi: list[float] | None = None,
    pe_oi: list[float] | None = None,
    **scalars,
) -> ChainQuotes:
    """A chain whose last prices are exact model prices: calls by Black-Scholes-Merton at
    ``true_dividend_yield`` (which the chain is not told), puts from the calls by put-call parity."""
    K = np.array(strikes, dtype=float)
    calls = black_scholes.price(spot, K, T, r, vols, True, true_dividend_yield)
    puts = calls - spot * math.exp(-true_dividend_yield * T) + K * math.exp(-r * T)
    return ChainQuotes(
        strikes=K,
        spot=spot,
        time_to_expiry_years=T,
        rate=r,
        ce=SideQuotes(last_price=calls, oi=ce_oi),
        pe=SideQuotes(last_price=puts, oi=pe_oi),
        **scalars,
    )


def last_price_chain(strikes, calls, puts, *, spot=24_000.0, T=0.05, r=0.0, **scalars) -> ChainQuotes:
    return ChainQuotes(
        strikes=strikes,
        spot=spot,
        time_to_expiry_years=T,
        rate=r,
        ce=SideQuotes(last_price=calls),
        pe=SideQuotes(last_price=puts),
        **scalars,
    )


# --- which price an IV comes from ---------------------------------------------------------------


def test_it_takes_the_mid_only_when_the_quote_is_sane_else_the_last_price():
    quotes = ChainQuotes(
        strikes=[23_000, 23_500, 24_000, 24_500, 25_000, 25_500],
        spot=24_000.0,
        time_to_expiry_years=0.05,
        ce=SideQuotes(
            #        sane      tiny spread   wide      no bid    crossed   nothing
            bid=[1_000.0, 0.05, 10.0, 0.0, 20.0, NAN],
            ask=[1_004.0, 0.20, 14.0, 5.0, 19.0, NAN],
            last_price=[1_001.0, 0.10, 11.5, 4.8, 19.5, NAN],
        ),
    )
    figures = compute_chain(quotes)
    # 1,000 / 1,004: spread 4 <= max(25 % of 1,002, 0.20) = 250.5, so the mid 1,002
    # 0.05 / 0.20: spread 0.15 > 25 % of 0.125 = 0.03125 but <= the 0.20 allowance, so the mid 0.125
    # 10 / 14: spread 4 > max(25 % of 12, 0.20) = 3, so the last price 11.5
    # 0 / 5: no bid, so 4.8; 20 / 19: crossed, so 19.5; nothing at all: no price
    np.testing.assert_array_equal(figures.ce.pricing_price, [1_002.0, 0.125, 11.5, 4.8, 19.5, NAN])
    np.testing.assert_array_equal(figures.ce.iv_from_mid, [True, True, False, False, False, False])
    # every IV is the one that reproduces that price, at spot with the implied carry
    expected_iv = black_scholes.implied_vol(
        figures.ce.pricing_price, 24_000.0, quotes.strikes, 0.05, 0.0, True, figures.implied_dividend_yield
    )
    np.testing.assert_allclose(figures.ce.iv, expected_iv, rtol=1e-12)
    sources = [row["ce"]["iv_source"] for row in figures.to_dict()["strikes"]]
    has_iv = (~np.isnan(figures.ce.iv)).tolist()
    assert sources == [
        (("mid" if mid else "ltp") if iv else None) for mid, iv in zip([1, 1, 0, 0, 0, 0], has_iv, strict=True)
    ]


# --- forward and carry --------------------------------------------------------------------------


def test_the_forward_is_the_median_parity_value_at_the_five_strikes_nearest_the_guess():
    # r = 0, so F = K + C - P. The guess is spot (no future, q = 0): 24,000.
    strikes = [23_850, 23_900, 23_950, 24_000, 24_050, 24_100, 24_150]
    calls = [1_300.0, 200.0, 150.0, 100.0, 60.0, 40.0, 900.0]
    puts = [300.0, 82.0, 80.0, 85.0, 88.0, 130.0, 100.0]
    # parity: 24,850  24,018  24,020  24,015  24,022  24,010  24,950
    # nearest five to 24,000: 23,900 ... 24,100 -> sorted 24,010 24,015 24,018 24,020 24,022 -> 24,018
    figures = compute_chain(last_price_chain(strikes, calls, puts))
    assert figures.forward == pytest.approx(24_018.0, abs=1e-9)
    assert figures.forward_source == "parity"
    # without the 24,000 put, the fifth strike is 23,850 or 24,150 (both 150 away: the lower one)
    # -> 24,010 24,018 24,020 24,022 24,850 -> 24,020
    puts[3] = NAN
    assert compute_chain(last_price_chain(strikes, calls, puts)).forward == pytest.approx(24_020.0, abs=1e-9)


def test_the_parity_forward_grows_the_call_minus_put_at_the_rate():
    # F = K + e^{rT} (C - P) = 100 + e^{0.10 x 0.5} x 2 = 100 + 1.0512711 x 2 = 102.1025422
    figures = compute_chain(last_price_chain([100.0], [7.0], [5.0], spot=101.0, T=0.5, r=0.10))
    assert figures.forward == pytest.approx(102.1025422, abs=1e-7)
    # q_implied = r - ln(F / S) / T = 0.10 - ln(102.1025422 / 101) / 0.5 = 0.10 - 0.0108571 / 0.5 = 0.0782858
    assert figures.implied_dividend_yield == pytest.approx(0.0782858, abs=1e-7)


def test_without_parity_the_forward_is_the_future_then_spot_carried_at_r_minus_q():
    only_calls = {"strikes": [23_900, 24_000, 24_100], "calls": [150.0, 100.0, 60.0], "puts": [NAN] * 3}
    with_future = compute_chain(last_price_chain(**only_calls, future_price=24_100.0))
    assert (with_future.forward, with_future.forward_source) == (24_100.0, "future")
    # 24,000 e^{(0.07 - 0.01) x 0.25} = 24,000 e^{0.015} = 24,000 x 1.0151131 = 24,362.71
    carried = compute_chain(last_price_chain(**only_calls, r=0.07, dividend_yield=0.01, T=0.25))
    assert carried.forward_source == "carry"
    assert carried.forward == pytest.approx(24_362.71, abs=0.01)


def test_ce_and_pe_ivs_agree_at_every_strike_of_a_chain_priced_from_one_smile_by_parity():
    # The chain is priced with a 1.5 % dividend yield it is not told about: the parity forward finds it.
    smile = [0.19, 0.17, 0.155, 0.15, 0.148, 0.15, 0.156]
    quotes = model_chain(
        [23_400, 23_600, 23_800, 24_000, 24_200, 24_400, 24_600], smile, r=0.07, true_dividend_yield=0.015
    )
    figures = compute_chain(quotes)
    # F = 24,000 e^{(0.07 - 0.015) x 0.05} = 24,000 e^{0.00275} = 24,066.09
    assert figures.forward == pytest.approx(24_066.09, abs=0.01)
    assert figures.implied_dividend_yield == pytest.approx(0.015, abs=1e-9)
    np.testing.assert_allclose(figures.ce.iv, smile, atol=1e-9)
    np.testing.assert_allclose(figures.pe.iv, figures.ce.iv, atol=1e-9)


def test_greeks_are_black_scholes_at_spot_with_the_implied_carry():
    quotes = model_chain([23_800, 24_000, 24_200], [0.16, 0.15, 0.145], r=0.065, true_dividend_yield=0.012)
    figures = compute_chain(quotes)
    for side, is_call in ((figures.ce, True), (figures.pe, False)):
        expected = black_scholes.greeks(
            24_000.0, quotes.strikes, 0.05, 0.065, side.iv, is_call, figures.implied_dividend_yield
        )
        for name in ("delta", "gamma", "theta", "vega", "rho"):
            np.testing.assert_allclose(getattr(side, name), getattr(expected, name), rtol=1e-12)


# --- at the money, expected move, 25-delta ------------------------------------------------------


def test_atm_strike_iv_straddle_and_expected_move_by_hand():
    # Flat 15 % vol, r = q = 0, so F = spot = 24,000: equidistant from 23,950 and 24,050 -> the lower.
    quotes = model_chain([23_850, 23_950, 24_050, 24_150], 0.15, T=0.04)
    figures = compute_chain(quotes)
    assert figures.atm_strike == 23_950.0
    assert figures.atm_iv == pytest.approx(0.15, abs=1e-9)
    assert figures.atm_straddle == pytest.approx(quotes.ce.last_price[1] + quotes.pe.last_price[1], abs=1e-9)
    # 1 s.d. to expiry: 24,000 x 0.15 x sqrt(0.04) = 24,000 x 0.15 x 0.2 = 720, i.e. 3 % of spot
    assert figures.expected_move == pytest.approx(720.0, abs=1e-5)
    assert figures.expected_move_pct == pytest.approx(3.0, abs=1e-9)
    summary = figures.to_dict()["summary"]
    assert (summary["atm_iv"], summary["expected_move"], summary["expected_move_pct"]) == (15.0, 720.0, 3.0)


def test_atm_iv_is_the_mean_of_both_sides_or_the_one_side_quoted():
    strikes = [23_900, 24_000, 24_100]
    calls = black_scholes.price(24_000.0, np.array(strikes, float), 0.05, 0.0, [0.16, 0.16, 0.15], True)
    puts = black_scholes.price(24_000.0, np.array(strikes, float), 0.05, 0.0, [0.16, 0.14, 0.15], False)
    quotes = last_price_chain(strikes, calls, puts, future_price=24_000.0)
    figures = compute_chain(quotes)
    # Parity at 23,900 and 24,100 (same vol both sides) gives F = 24,000; at 24,000 the sides disagree
    # (16 % vs 14 %) and give 24,000 + C(16 %) - P(14 %) > 24,000. The median: 24,000.
    assert figures.forward == pytest.approx(24_000.0, abs=1e-6)
    assert figures.atm_strike == 24_000.0
    assert figures.atm_iv == pytest.approx((0.16 + 0.14) / 2, abs=1e-9)
    calls[1] = NAN
    one_sided = compute_chain(last_price_chain(strikes, calls, puts, future_price=24_000.0))
    assert one_sided.atm_iv == pytest.approx(0.14, abs=1e-9)
    assert math.isnan(one_sided.atm_straddle)


def test_25_delta_risk_reversal_and_butterfly_by_hand():
    # Spot = F = 24,000 (r = q = 0), T = 0.05, a skewed smile on five strikes 400 apart.
    smile = [0.19, 0.17, 0.15, 0.14, 0.135]
    figures = compute_chain(model_chain([23_200, 23_600, 24_000, 24_400, 24_800], smile))
    # Deltas N(d1), d1 = (ln(S/K) + vol^2 T / 2) / (vol sqrt T), for the strikes around 25 delta:
    #   call 24,400 at 14 %: d1 = (-0.0165293 + 0.00049) / 0.0313050 = -0.512357 -> 0.30420
    #   call 24,800 at 13.5 %: d1 = (-0.0327898 + 0.00045563) / 0.0301869 = -1.071133 -> 0.14205
    #   put 23,600 at 17 %: d1 = (0.0168071 + 0.0007225) / 0.0380132 = 0.461146 -> N(d1) - 1 = -0.32235
    #   put 23,200 at 19 %: d1 = (0.0339016 + 0.0009025) / 0.0424853 = 0.819202 -> N(d1) - 1 = -0.20634
    np.testing.assert_allclose(figures.ce.delta[3:], [0.30420, 0.14205], atol=5e-5)
    np.testing.assert_allclose(figures.pe.delta[:2], [-0.20634, -0.32235], atol=5e-5)
    # call: 14 % + (13.5 % - 14 %) x (0.30420 - 0.25) / (0.30420 - 0.14205) = 14 % - 0.5 % x 0.33426
    iv_25d_call = 0.14 - 0.005 * (0.30420 - 0.25) / (0.30420 - 0.14205)
    # put (delta falls from 23,200 to 23,600): 19 % + (17 % - 19 %) x (-0.20634 + 0.25) / (-0.20634 + 0.32235)
    iv_25d_put = 0.19 - 0.02 * (-0.20634 + 0.25) / (-0.20634 + 0.32235)
    # (the deltas above are rounded to 5 places, hence the tolerance)
    assert figures.iv_25d_call == pytest.approx(iv_25d_call, abs=5e-6)  # 13.8329 %
    assert figures.iv_25d_put == pytest.approx(iv_25d_put, abs=5e-6)  # 18.2473 %
    assert figures.risk_reversal_25d == pytest.approx(iv_25d_call - iv_25d_put, abs=1e-5)  # -4.41 points
    assert figures.butterfly_25d == pytest.approx((iv_25d_call + iv_25d_put) / 2 - 0.15, abs=1e-5)  # +1.04
    summary = figures.to_dict()["summary"]
    assert (summary["risk_reversal_25d"], summary["butterfly_25d"]) == (-4.41, 1.04)


# --- open interest figures -----------------------------------------------------------------------


def test_pcr_walls_and_totals_by_hand():
    quotes = ChainQuotes(
        strikes=[23_900, 24_000, 24_100, 24_200],
        spot=24_000.0,
        time_to_expiry_years=0.05,
        ce=SideQuotes(oi=[100.0, 300.0, 500.0, NAN], volume=[1_000.0, 2_000.0, NAN, 1_000.0]),
        pe=SideQuotes(oi=[600.0, 400.0, 200.0, 100.0], volume=[500.0, 500.0, 1_000.0, 0.0]),
    )
    figures = compute_chain(quotes)
    # CE OI 100 + 300 + 500 (NaN as 0) = 900; PE OI 600 + 400 + 200 + 100 = 1,300 -> PCR 1.4444
    assert (figures.total_ce_oi, figures.total_pe_oi) == (900.0, 1_300.0)
    assert figures.pcr_oi == pytest.approx(1_300 / 900)
    # CE volume 4,000; PE volume 2,000 -> 0.5
    assert (figures.total_ce_volume, figures.total_pe_volume, figures.pcr_volume) == (4_000.0, 2_000.0, 0.5)
    assert (figures.call_wall, figures.put_wall) == (24_100.0, 23_900.0)
    # per strike: 600 / 100 = 6, 400 / 300, 200 / 500 = 0.4, none (no CE OI)
    np.testing.assert_allclose(figures.pcr_oi_by_strike, [6.0, 4 / 3, 0.4, NAN])


def test_max_pain_by_hand():
    strikes = [100.0, 110.0, 120.0, 130.0]
    ce_oi = [10.0, 20.0, 40.0, 10.0]
    pe_oi = [30.0, 30.0, 10.0, 0.0]
    # holders' payout if settled at s = sum CE_OI (s - K)+ + sum PE_OI (K - s)+
    #   s = 100: calls 0;                             puts 30 x 10 + 10 x 20 = 500     -> 500
    #   s = 110: calls 10 x 10 = 100;                 puts 10 x 10 = 100              -> 200
    #   s = 120: calls 10 x 20 + 20 x 10 = 400;       puts 0                          -> 400
    #   s = 130: calls 10 x 30 + 20 x 20 + 40 x 10 = 1,100                           -> 1,100
    quotes = ChainQuotes(strikes, 110.0, 0.05, ce=SideQuotes(oi=ce_oi), pe=SideQuotes(oi=pe_oi))
    assert compute_chain(quotes).max_pain == 110.0


def test_max_pain_agrees_with_the_full_payout_table_on_a_random_chain():
    rng = np.random.default_rng(7)
    strikes = np.arange(21_000.0, 27_000.0, 50.0)
    ce_oi, pe_oi = (rng.integers(0, 200, strikes.size) * 75.0 for _ in range(2))
    settle = strikes[:, None]
    table = np.maximum(settle - strikes, 0) @ ce_oi + np.maximum(strikes - settle, 0) @ pe_oi
    quotes = ChainQuotes(strikes, 24_000.0, 0.05, ce=SideQuotes(oi=ce_oi), pe=SideQuotes(oi=pe_oi))
    assert compute_chain(quotes).max_pain == strikes[np.argmin(table)]


def test_gamma_exposure_per_strike_and_in_total_by_hand():
    quotes = model_chain([23_900, 24_000, 24_100], 0.15, ce_oi=[NAN, 750_000.0, 150_000.0], pe_oi=[600_000.0, 0.0, NAN])
    figures = compute_chain(quotes)
    gamma_ce, gamma_pe = figures.ce.gamma, figures.pe.gamma
    # r = q = 0, flat 15 %: gamma = phi(d1) / (S vol sqrt T) with vol sqrt T = 0.15 x 0.2236068 = 0.0335410
    #   24,000: d1 = 0.5 x 0.0335410 = 0.0167705 -> phi = 0.3988862 -> gamma = 0.3988862 / 804.984 = 0.00049552
    assert gamma_ce[1] == pytest.approx(0.3988862 / 804.984, rel=1e-6)
    np.testing.assert_allclose(gamma_pe, gamma_ce, rtol=1e-9)  # the same for calls and puts
    # GEX = gamma x OI x S^2 x 0.01 = gamma x OI x 5,760,000; calls +, puts -
    assert figures.ce.gex[1] == pytest.approx(gamma_ce[1] * 750_000 * 5_760_000)  # 2.141e9 rupees / 1 %
    assert figures.pe.gex[0] == pytest.approx(-gamma_pe[0] * 600_000 * 5_760_000)
    assert figures.pe.gex[1] == 0.0 and math.isnan(figures.ce.gex[0]) and math.isnan(figures.pe.gex[2])
    # per strike: the known sides summed
    np.testing.assert_allclose(figures.gex, [figures.pe.gex[0], figures.ce.gex[1], figures.ce.gex[2]])
    assert figures.total_gex == pytest.approx(figures.pe.gex[0] + figures.ce.gex[1] + figures.ce.gex[2])


def test_the_gamma_flip_between_a_put_strike_and_a_call_strike_is_where_their_gammas_match():
    # Equal OI: puts at 23,500, calls at 24,500, flat 15 % vol, T = 0.05, r = q = 0. Total GEX at spot s is
    # 0.01 s^2 OI (gamma_24500(s) - gamma_23500(s)): zero where phi(d1) agree, d1(23,500) = -d1(24,500),
    # i.e. ln s = (ln 23,500 + ln 24,500) / 2 - vol^2 T / 2: s = sqrt(23,500 x 24,500) e^{-0.0005625}
    #   = 23,994.79 x 0.99943766 = 23,981.30
    quotes = model_chain([23_500, 24_000, 24_500], 0.15, ce_oi=[0.0, 0.0, 1_000_000.0], pe_oi=[1_000_000.0, 0.0, 0.0])
    figures = compute_chain(quotes)
    expected = math.sqrt(23_500 * 24_500) * math.exp(-(0.15**2) * 0.05 / 2)
    assert expected == pytest.approx(23_981.30, abs=0.01)
    assert figures.gamma_flip == pytest.approx(expected, abs=0.01)
    # spot is above the flip, where the calls' gamma wins
    assert figures.total_gex > 0


def test_there_is_no_gamma_flip_when_total_gex_keeps_its_sign():
    figures = compute_chain(model_chain([23_500, 24_000, 24_500], 0.15, ce_oi=[1e6, 1e6, 1e6], pe_oi=[0.0] * 3))
    assert figures.total_gex > 0
    assert math.isnan(figures.gamma_flip) and figures.to_dict()["summary"]["gamma_flip"] is None


# --- OI change and buildup -----------------------------------------------------------------------


def test_oi_change_buildup_and_its_strength_by_hand():
    quotes = ChainQuotes(
        strikes=[24_000, 24_100],
        spot=24_000.0,
        time_to_expiry_years=0.05,
        # CE 24,000: price +5, OI +300; CE 24,100: price -5, OI +100
        ce=SideQuotes(
            last_price=[105.0, 55.0],
            previous_close=[100.0, 60.0],
            oi=[1_000.0, 900.0],
            reference_oi=[700.0, 800.0],
            volume=[1_000.0, 300.0],
        ),
        # PE 24,000: price +5, OI -300; PE 24,100: price -5, OI -100
        pe=SideQuotes(
            last_price=[85.0, 115.0],
            previous_close=[80.0, 120.0],
            oi=[500.0, 300.0],
            reference_oi=[800.0, 400.0],
            volume=[NAN, 900.0],
        ),
    )
    figures = compute_chain(quotes)
    np.testing.assert_array_equal(figures.ce.oi_change, [300.0, 100.0])
    np.testing.assert_allclose(figures.ce.oi_change_pct, [300 / 700 * 100, 12.5])  # 42.86 %, 12.5 %
    np.testing.assert_allclose(figures.pe.change_pct, [6.25, -5 / 120 * 100])  # 5 / 80, -4.17 %
    rows = figures.to_dict()["strikes"]
    labels = [(row["ce"]["buildup"], row["pe"]["buildup"]) for row in rows]
    assert labels == [("long_buildup", "short_covering"), ("short_buildup", "long_unwinding")]
    # |OI change| 300, 100, 300, 100: mean 200, standard deviation 100, so z = +1, -1, +1, -1
    # and clip((z + 3) / 6, 0, 1) = 4/6 or 2/6. volume / (volume + OI):
    #   CE 24,000 1,000 / 2,000 = 0.5;  CE 24,100 300 / 1,200 = 0.25
    #   PE 24,000 unknown -> 0;          PE 24,100 900 / 1,200 = 0.75
    # strength = 100 x (0.7 x oi_score + 0.3 x activity):
    #   70 x 4/6 + 30 x 0.5 = 61.67;  70 x 2/6 + 30 x 0.25 = 30.83;  70 x 4/6 + 0 = 46.67;  70 x 2/6 + 22.5 = 45.83
    np.testing.assert_allclose(figures.ce.buildup_strength, [70 * 4 / 6 + 15, 70 * 2 / 6 + 7.5])
    np.testing.assert_allclose(figures.pe.buildup_strength, [70 * 4 / 6, 70 * 2 / 6 + 22.5])
    assert [(row["ce"]["buildup_strength"], row["pe"]["buildup_strength"]) for row in rows] == [(62, 47), (31, 46)]


def test_no_buildup_label_when_either_change_is_zero_or_unknown():
    quotes = ChainQuotes(
        strikes=[24_000, 24_100, 24_200],
        spot=24_000.0,
        time_to_expiry_years=0.05,
        ce=SideQuotes(
            last_price=[100.0, 60.0, 40.0],
            previous_close=[100.0, 50.0, NAN],  # unchanged, up, unknown
            oi=[1_000.0, 1_000.0, 1_000.0],
            reference_oi=[900.0, 1_000.0, 900.0],  # up, unchanged, up
        ),
    )
    figures = compute_chain(quotes)
    np.testing.assert_array_equal(figures.ce.buildup, [0, 0, 0])
    assert np.isnan(figures.ce.buildup_strength).all()
    assert [row["ce"]["buildup"] for row in figures.to_dict()["strikes"]] == [None, None, None]
    assert np.isnan(figures.pe.oi_change).all()  # no PE side at all


# --- the JSON --------------------------------------------------------------------------------------

SIDE_KEYS = {
    "ltp", "change", "change_pct", "bid", "ask", "mid", "volume", "oi", "oi_change", "oi_change_pct", "iv",
    "iv_source", "delta", "gamma", "theta", "vega", "rho", "gex", "buildup", "buildup_strength",
}  # fmt: skip
SUMMARY_KEYS = {
    "spot", "future", "forward", "forward_source", "implied_dividend_yield", "time_to_expiry_years",
    "days_to_expiry", "atm_strike", "atm_iv", "atm_straddle", "expected_move", "expected_move_pct",
    "iv_25d_call", "iv_25d_put", "risk_reversal_25d", "butterfly_25d", "pcr_oi", "pcr_volume", "max_pain",
    "call_wall", "put_wall", "total_gex", "gamma_flip", "total_ce_oi", "total_pe_oi", "total_ce_volume",
    "total_pe_volume", "lot_size", "smile",
}  # fmt: skip


def test_to_dict_is_json_safe_with_iv_in_percent_and_display_rounding():
    quotes = model_chain([23_900, 24_000, 24_100], 0.1325, ce_oi=[750.0, 1_500.0, NAN], pe_oi=[NAN] * 3, lot_size=75)
    figures = compute_chain(quotes)
    document = figures.to_dict()
    json.dumps(document, allow_nan=False)  # no NaN, no NumPy types
    assert set(document["summary"]) == SUMMARY_KEYS
    assert all(set(row) == {"strike", "ce", "pe", "gex", "pcr_oi"} for row in document["strikes"])
    assert all(set(row["ce"]) == set(row["pe"]) == SIDE_KEYS for row in document["strikes"])
    middle = document["strikes"][1]
    assert middle["strike"] == 24_000.0
    assert middle["ce"]["iv"] == 13.25 and figures.ce.iv[1] == pytest.approx(0.1325)
    assert middle["ce"]["ltp"] == round(float(quotes.ce.last_price[1]), 2)
    assert middle["ce"]["oi"] == 1_500 and isinstance(middle["ce"]["oi"], int)
    assert middle["ce"]["delta"] == round(float(figures.ce.delta[1]), 4)
    assert middle["ce"]["gamma"] == float(f"{figures.ce.gamma[1]:.5g}")  # five significant digits
    assert document["strikes"][2]["ce"]["oi"] is None and document["strikes"][2]["ce"]["gex"] is None
    assert document["summary"]["lot_size"] == 75 and document["summary"]["future"] is None
    assert document["summary"]["smile"]["ce_iv"] == [13.25, 13.25, 13.25]
    assert document["summary"]["days_to_expiry"] == 18.25  # 0.05 x 365


# --- robustness ----------------------------------------------------------------------------------

DEGENERATE_CHAINS = {
    "no PE side": lambda: ChainQuotes([23_900, 24_000], 24_000.0, 0.05, ce=SideQuotes(last_price=[150.0, 90.0])),
    "zero OI everywhere": lambda: model_chain([23_900, 24_000, 24_100], 0.15, ce_oi=[0.0] * 3, pe_oi=[0.0] * 3),
    "one strike": lambda: model_chain([24_000], 0.15, ce_oi=[100.0], pe_oi=[50.0]),
    "all NaN": lambda: ChainQuotes([23_900, 24_000], NAN, NAN, future_price=NAN),
    "expired": lambda: model_chain([23_900, 24_000], 0.15, T=0.0, ce_oi=[10.0, 10.0], pe_oi=[10.0, 10.0]),
    "past expiry": lambda: last_price_chain([23_900, 24_000], [100.0, 5.0], [5.0, 100.0], T=-0.01),
    "no strikes": lambda: ChainQuotes([], 24_000.0, 0.05),
    "zero spot": lambda: last_price_chain([23_900, 24_000], [100.0, 5.0], [5.0, 100.0], spot=0.0),
}


@pytest.mark.parametrize("name", DEGENERATE_CHAINS)
def test_degenerate_chains_neither_raise_nor_warn(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = compute_chain(DEGENERATE_CHAINS[name]())
        document = figures.to_dict()
    json.dumps(document, allow_nan=False)
    assert len(document["strikes"]) == figures.strikes.size


def test_degenerate_chains_leave_what_cannot_be_computed_empty():
    zero_oi = compute_chain(DEGENERATE_CHAINS["zero OI everywhere"]()).to_dict()["summary"]
    assert [zero_oi[key] for key in ("pcr_oi", "max_pain", "call_wall", "put_wall", "gamma_flip")] == [None] * 5
    assert zero_oi["total_gex"] == 0 and zero_oi["atm_iv"] == 15.0
    expired = compute_chain(DEGENERATE_CHAINS["expired"]())
    assert np.isnan(expired.ce.iv).all() and math.isnan(expired.expected_move)
    # OI figures need no model: payout 10 x 100 at either strike, and a tie goes to the lower
    assert expired.max_pain == 23_900.0
    nothing = compute_chain(DEGENERATE_CHAINS["all NaN"]()).to_dict()["summary"]
    assert nothing["forward"] is None and nothing["atm_strike"] is None and nothing["total_gex"] is None


def test_arrays_of_the_wrong_length_raise_naming_them():
    with pytest.raises(ValueError, match=r"ce\.bid has shape \(2,\).*pe\.oi has shape \(4,\)"):
        ChainQuotes(
            [23_900, 24_000, 24_100], 24_000.0, 0.05, ce=SideQuotes(bid=[1.0, 2.0]), pe=SideQuotes(oi=[1.0] * 4)
        )
    with pytest.raises(ValueError, match="ascending"):
        ChainQuotes([24_000, 23_900], 24_000.0, 0.05)


def test_random_holes_zeros_and_crossed_quotes_never_raise_or_warn():
    rng = np.random.default_rng(11)
    strikes = np.arange(23_000.0, 25_050.0, 50.0)
    calls = black_scholes.price(24_000.0, strikes, 0.02, 0.065, 0.14, True)
    puts = black_scholes.price(24_000.0, strikes, 0.02, 0.065, 0.14, False)
    for _ in range(40):

        def scramble(values: np.ndarray) -> np.ndarray:
            values = values * rng.uniform(0.7, 1.3, values.size)
            values[rng.random(values.size) < 0.2] = NAN
            values[rng.random(values.size) < 0.1] = 0.0
            return values

        sides = [
            SideQuotes(
                last_price=scramble(price),
                bid=scramble(price * 0.99),
                ask=scramble(price * 1.01),
                volume=scramble(np.full(strikes.size, 1e5)),
                oi=scramble(np.full(strikes.size, 1e6)),
                previous_close=scramble(price),
                reference_oi=scramble(np.full(strikes.size, 1e6)),
            )
            for price in (calls, puts)
        ]
        quotes = ChainQuotes(strikes, 24_000.0, 0.02, ce=sides[0], pe=sides[1], rate=0.065)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            document = compute_chain(quotes).to_dict()
        json.dumps(document, allow_nan=False)
        strengths = [row[side]["buildup_strength"] for row in document["strikes"] for side in ("ce", "pe")]
        assert all(strength is None or 0 <= strength <= 100 for strength in strengths)

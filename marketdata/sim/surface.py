"""The volatility surface the simulator prices options on.

ATM implied volatility per underlying (a level that drifts), a term structure on it, and a smile
in standardised log-moneyness ``x = ln(K/F) / (atm_vol * sqrt(T))``: puts below the forward are
richer (skew), both wings lift (curvature). Kept mild enough that call prices fall and put prices
rise with strike, as they must.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ATM implied volatility around which each index's level drifts (India VIX-like calm markets).
DEFAULT_ANNUAL_VOLATILITY = {
    "NIFTY": 0.13,
    "BANKNIFTY": 0.16,
    "FINNIFTY": 0.15,
    "MIDCPNIFTY": 0.18,
    "NIFTYNXT50": 0.17,
    "SENSEX": 0.135,
    "BANKEX": 0.17,
}
FALLBACK_ANNUAL_VOLATILITY = 0.25  # single stocks and anything unlisted

# Near expiry x explodes; the smile is floored at this T (one hour) and x clipped to the wings.
_MIN_SMILE_T = 1.0 / (365 * 24)
_WING = 4.0


def default_annual_volatility(symbol: str) -> float:
    return DEFAULT_ANNUAL_VOLATILITY.get(symbol.upper(), FALLBACK_ANNUAL_VOLATILITY)


@dataclass(frozen=True)
class Smile:
    skew: float = 0.06  # fraction of ATM vol added per standard deviation below the forward
    curvature: float = 0.025  # fraction of ATM vol added per squared standard deviation
    term_slope: float = 0.08  # a month out trades about 5 % (relative) over the expiring week
    floor_fraction: float = 0.4

    def atm_volatility(self, level: float, T: np.ndarray) -> np.ndarray:
        """ATM volatility per expiry: `level` shaded down for the front week, up for later months."""
        return level * (1.0 - 0.5 * self.term_slope - self.term_slope * np.expm1(-np.maximum(T, 0.0) * 365 / 30))

    def moneyness(self, atm: np.ndarray, forward: np.ndarray, strike: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Standardised log-moneyness, clipped to the wings (positive above the forward)."""
        x = np.log(strike / forward) / (atm * np.sqrt(np.maximum(T, _MIN_SMILE_T)))
        return np.minimum(np.maximum(x, -_WING), _WING)  # np.clip costs more on small arrays

    def volatility(self, atm: np.ndarray, x: np.ndarray) -> np.ndarray:
        smile = 1.0 - self.skew * x + self.curvature * x * x
        return atm * np.maximum(smile, self.floor_fraction)


@dataclass
class VolatilityLevel:
    """The underlying's ATM volatility level: mean-reverting in logs, falling as spot rises.

    Moves about 6 % of itself in a day (13 % -> 12.2-13.8 %), half-life a few weeks, spot
    correlation -0.7 (the leverage effect), and jumps up when spot gaps down.
    """

    base: float
    log_level: float
    reversion_per_year: float = 10.0
    vol_of_vol: float = 1.0  # per square-root trading year
    spot_correlation: float = -0.7
    jump_sensitivity: float = -8.0  # a -0.5 % spot jump lifts the level by about 4 %

    @property
    def level(self) -> float:
        return float(np.exp(self.log_level))

    def advance(self, trading_years: float, spot_shock: float, own_shock: float, spot_jump: float) -> None:
        """Move the level over `trading_years`; shocks are standard normals, spot_jump a log return."""
        rho = self.spot_correlation
        shock = rho * spot_shock + np.sqrt(1.0 - rho * rho) * own_shock
        pull = self.reversion_per_year * (np.log(self.base) - self.log_level) * trading_years
        self.log_level += pull + self.vol_of_vol * np.sqrt(trading_years) * shock + self.jump_sensitivity * spot_jump

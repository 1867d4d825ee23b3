"""Pure NumPy/SciPy analytics: option pricing, implied volatility, Greeks and chain figures."""

"""A deterministic market simulator for the live feed (`run_feed --source sim`). No Django here."""

from marketdata.sim.market import MarketSimulator, SimContract, SimUnderlying

__all__ = ["MarketSimulator", "SimContract", "SimUnderlying"]

"""The live feed: state, bars, storage, conflation and the run loop."""

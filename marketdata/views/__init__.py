"""Pages of the marketdata app, one module a page."""

from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    """Kite ticker protocol, the live feed, ticks and bars, and option analytics."""

    name = "marketdata"
    verbose_name = "Market data"

from django.apps import AppConfig


class StrategiesConfig(AppConfig):
    """Strategy registry, configured strategies, signals and backtests."""

    name = "strategies"

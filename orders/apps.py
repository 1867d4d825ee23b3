from django.apps import AppConfig


class OrdersConfig(AppConfig):
    """Brokers (Kite, paper), orders and their audit trail, positions, risk checks."""

    name = "orders"

"""Stored market data: ticks (for replay and audit) and closed 1-minute bars.

Prices are DecimalFields: what is stored is compared and replayed exactly. The feed
works in float64 arrays and converts only when it writes.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from trading_site import clock

PRICE = {"max_digits": 16, "decimal_places": 4, "default": Decimal("0")}


class Tick(models.Model):
    """One tick as Kite sent it, trimmed to what replay and analysis need.

    Depth is kept to the best bid and ask: the full five levels would triple the
    table for little use. Rows are written in bulk by the feed (COPY on PostgreSQL).
    """

    id = models.BigAutoField(primary_key=True)
    instrument_token = models.PositiveBigIntegerField()
    exchange_timestamp = models.DateTimeField()
    mode = models.PositiveSmallIntegerField(default=2, help_text="0 ltp, 1 quote, 2 full.")
    last_price = models.DecimalField(**PRICE)
    last_traded_quantity = models.BigIntegerField(default=0)
    average_traded_price = models.DecimalField(**PRICE)
    volume_traded = models.BigIntegerField(default=0)
    total_buy_quantity = models.BigIntegerField(default=0)
    total_sell_quantity = models.BigIntegerField(default=0)
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    last_trade_time = models.DateTimeField(null=True, blank=True)
    oi = models.BigIntegerField(default=0)
    oi_day_high = models.BigIntegerField(default=0)
    oi_day_low = models.BigIntegerField(default=0)
    bid_price = models.DecimalField(**PRICE)
    bid_quantity = models.BigIntegerField(default=0)
    ask_price = models.DecimalField(**PRICE)
    ask_quantity = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["exchange_timestamp", "id"]
        indexes = [
            # One instrument's history (charts, the API's stored ticks).
            models.Index(fields=["instrument_token", "exchange_timestamp"], name="tick_token_time_idx"),
        ]
        # Replay of a day in order, and retention, use `tick_time_idx` on exchange_timestamp, made by
        # migration 0002: BRIN on PostgreSQL (ticks arrive in time order, so it stays tiny and nearly
        # free to maintain; a B-tree there cost a fifth of COPY throughput), a B-tree elsewhere.

    def __str__(self) -> str:
        return f"{self.instrument_token} {self.last_price} @ {self.exchange_timestamp:%Y-%m-%d %H:%M:%S}"


class Bar(models.Model):
    """A closed 1-minute bar: OHLC of last price, volume traded in the minute, OI at the close."""

    id = models.BigAutoField(primary_key=True)
    instrument_token = models.PositiveBigIntegerField()
    start = models.DateTimeField(help_text="The minute the bar covers, [start, start + 1 min).")
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    volume = models.BigIntegerField(default=0)
    oi = models.BigIntegerField(default=0)
    tick_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["instrument_token", "start"]
        constraints = [
            # A restarted feed re-closes the minute it was in: upsert on this key.
            models.UniqueConstraint(fields=["instrument_token", "start"], name="bar_token_start_uniq"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.instrument_token} {self.start:%Y-%m-%d %H:%M} O{self.open} H{self.high} L{self.low} C{self.close}"
        )


class ChainSnapshot(models.Model):
    """One option chain's figures at one moment, kept for history (intraday PCR, max pain, ATM IV, GEX).

    The refresh task stores one per chain per `CHAIN_SNAPSHOT_SECONDS` (a minute by default), at
    the first refresh of each interval. The headline figures have columns of their own, for
    charts and queries over a day; `summary` and `strikes` hold everything, as the live
    analytics message had it (IV in percent points there).
    """

    id = models.BigAutoField(primary_key=True)
    underlying = models.ForeignKey("instruments.Underlying", on_delete=models.CASCADE, related_name="chain_snapshots")
    expiry = models.DateField()
    taken_at = models.DateTimeField(help_text="Market time of the interval the snapshot stands for.")
    spot = models.FloatField(null=True)
    future = models.FloatField(null=True)
    atm_strike = models.FloatField(null=True)
    atm_iv = models.FloatField(null=True, help_text="Percent points.")
    pcr_oi = models.FloatField(null=True)
    pcr_volume = models.FloatField(null=True)
    max_pain = models.FloatField(null=True)
    total_gex = models.FloatField(null=True, help_text="₹ per 1% move of the underlying.")
    gamma_flip = models.FloatField(null=True)
    summary = models.JSONField(default=dict)
    strikes = models.JSONField(default=list)

    # The figures with columns of their own, named as in the analytics' summary.
    HEADLINE_FIELDS = (
        "spot",
        "future",
        "atm_strike",
        "atm_iv",
        "pcr_oi",
        "pcr_volume",
        "max_pain",
        "total_gex",
        "gamma_flip",
    )

    class Meta:
        ordering = ["underlying", "expiry", "taken_at"]
        constraints = [
            models.UniqueConstraint(fields=["underlying", "expiry", "taken_at"], name="chain_snapshot_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.underlying.symbol} {self.expiry} @ {timezone.localtime(self.taken_at):%Y-%m-%d %H:%M}"


# -- Watchlist --


class WatchlistEntry(models.Model):
    """One instrument on one user's watchlist (the /watchlist/ page streams its quotes).

    It points at the Instrument row, not at a bare token: Kite reuses a token after its contract
    expires, and the entry must keep meaning the contract the user chose.
    """

    # The page's socket joins one group per entry and may join about 100 in all.
    MAX_PER_USER = 50

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlist_entries")
    instrument = models.ForeignKey("instruments.Instrument", on_delete=models.CASCADE, related_name="watchlist_entries")
    added_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        ordering = ["user_id", "added_at", "id"]
        verbose_name_plural = "watchlist entries"
        constraints = [
            # Also serves "this user's entries": user_id leads the index.
            models.UniqueConstraint(
                fields=["user", "instrument"],
                name="watchlistentry_user_instrument_uniq",
                violation_error_message="This instrument is already on the watchlist.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument} on {self.user}'s watchlist"

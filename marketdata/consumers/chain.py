"""/ws/ui/chain/<SYMBOL>/<YYYYMMDD>/?strikes=N: the option chain page's socket.

It joins the chain's group (the analytics task sends every refresh there, at most twice a
second) and the underlying's instrument group (its spot ticks and closed one-minute bars, for
the live candles). Its first message after connecting redraws the whole table and header, so a
page that reconnects after an outage shows the market as it is now; after that it sends only
the cells that changed, and the charts' data at most once a second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from marketdata import selectors
from marketdata.consumers.pages import LivePageConsumer, PageUnavailable
from marketdata.fragments.chain import (
    ChainPageState,
    ChainView,
    build_view,
    chain_view,
    chart_data_fragment,
    strikes_each_side,
)
from marketdata.groups import chain_group, instrument_group

log = logging.getLogger(__name__)

CHART_SECONDS = 1.0


@database_sync_to_async
def _spot_token(symbol: str) -> tuple[str, int | None]:
    underlying = selectors.underlying_by_symbol(symbol)
    if underlying is None:
        raise PageUnavailable(f"no underlying {symbol!r}")
    spot = underlying.spot_instrument
    return underlying.symbol, (spot.instrument_token if spot else None)


async def _latest_figures(symbol: str, expiry: dt.date) -> dict | None:
    try:
        return await asyncio.to_thread(selectors.latest_chain_analytics, symbol=symbol, expiry=expiry)
    except RedisError as error:  # the chain's next refresh draws the page instead
        log.warning("chain socket could not read %s %s's figures: %s", symbol, expiry, error)
        return None


class ChainPageConsumer(LivePageConsumer):
    async def start_page(self) -> list[str]:
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            expiry = dt.datetime.strptime(kwargs["expiry"], "%Y%m%d").date()
        except ValueError:
            raise PageUnavailable(f"bad expiry {kwargs['expiry']!r}; YYYYMMDD") from None
        symbol, self.spot_token = await _spot_token(kwargs["symbol"])
        self.state = ChainPageState(strikes_each_side(self.scope.get("query_string", b"")))
        self.view: ChainView | None = None
        self.view_is_new = False
        self.chart_sent_at = 0.0
        self.charts_due = False
        self.candle: dict | None = None
        # The latest figures now, not at the chain's next refresh: a page reconnecting after an
        # outage, or onto a quiet market, is redrawn at once.
        figures = await _latest_figures(symbol, expiry)
        if figures is not None:
            self.view = build_view({"underlying": symbol, "expiry": expiry.isoformat(), **figures})
            self.view_is_new = self.charts_due = True
        groups = [chain_group(symbol, expiry)]
        if self.spot_token is not None:
            groups.append(instrument_group(self.spot_token))
        return groups

    async def chain_analytics(self, event: dict) -> None:
        self._heard_from_feed()
        self.view = chain_view(event["json"])
        self.view_is_new = self.charts_due = True

    def on_ticks(self, ticks: list[dict]) -> None:
        for tick in ticks:
            if tick.get("instrument_token") == self.spot_token and tick.get("last_price"):
                self._extend_candle(tick["last_price"], tick.get("exchange_timestamp") or int(time.time()))

    def on_bars(self, bars: list[dict]) -> None:
        for bar in bars:
            if bar.get("instrument_token") == self.spot_token:
                # The feed's bar is the whole minute; ours started with the first tick this page saw.
                self.candle = {k: bar[k] for k in ("open", "high", "low", "close")} | {"time": bar["start"]}
                self.charts_due = True

    def _extend_candle(self, last_price: float, at: int) -> None:
        minute = at - at % 60
        candle = self.candle
        if candle is None or candle["time"] != minute:
            self.candle = {
                "time": minute,
                "open": last_price,
                "high": last_price,
                "low": last_price,
                "close": last_price,
            }
        else:
            candle.update(high=max(candle["high"], last_price), low=min(candle["low"], last_price), close=last_price)
        self.charts_due = True

    def changed_fragments(self) -> list[str]:
        fragments = []
        if self.view is not None and self.view_is_new:
            fragments = self.state.fragments(self.view)
            self.view_is_new = False
        now = time.monotonic()
        if self.charts_due and now - self.chart_sent_at >= CHART_SECONDS:
            fragments.append(chart_data_fragment(self.view, self.state.strikes, self.candle))
            self.chart_sent_at, self.charts_due = now, False
        return fragments

"""/ws/ui/dashboard/: the dashboard's live values (feed health, underlying tiles, market state,
OI movers) as out-of-band fragments, only those whose text changed."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import reverse

from marketdata import selectors
from marketdata.consumers.pages import LivePageConsumer
from marketdata.feed.publisher import STATUS_TTL_SECONDS
from marketdata.fragments import dashboard as fragments
from marketdata.fragments.html import SentCells
from marketdata.groups import chain_group, instrument_group
from trading_site import clock


class DashboardPageConsumer(LivePageConsumer):
    """Starts from what the page was drawn with (Redis, read again at connect), then keeps the
    latest status, spot and future ticks, and nearest-expiry chains as the feed sends them."""

    async def start_page(self) -> list[str]:
        tiles, latest, login_url = await database_sync_to_async(_dashboard_start)(self.scope["user"])
        self.tiles = tiles
        self.login_url = login_url
        self.followed_tokens = {t for tile in tiles for t in (tile.spot_token, tile.future_token) if t}
        self.chain_expiries = {tile.symbol: tile.option_expiry.isoformat() for tile in tiles if tile.option_expiry}
        self.status = latest.feed_status
        self.status_at = time.monotonic() if latest.feed_status else None
        self.ticks = {token: tick for token, tick in latest.ticks.items() if token in self.followed_tokens}
        self.chains = dict(latest.chains)
        self.movers_changed = True
        # Empty: the first flush sends every value, which on a reconnect replaces what the page
        # missed while its socket was down (and otherwise repeats the first render, unflashed).
        self.sent = SentCells()
        return [
            *(instrument_group(token) for token in sorted(self.followed_tokens)),
            *(chain_group(tile.symbol, tile.option_expiry) for tile in tiles if tile.option_expiry),
        ]

    def on_status(self, status: dict) -> None:
        self.status, self.status_at = status, time.monotonic()

    def on_ticks(self, ticks: list[dict]) -> None:
        # A chain's group also carries its options' ticks: only the spot and futures are shown.
        for tick in ticks:
            if tick.get("instrument_token") in self.followed_tokens:
                self.ticks[tick["instrument_token"]] = tick

    def on_chain(self, chain: dict) -> None:
        symbol = chain.get("underlying")
        if symbol in self.chain_expiries and chain.get("expiry") == self.chain_expiries[symbol]:
            self.chains[symbol] = chain
            self.movers_changed = True

    def changed_fragments(self) -> list[str]:
        status = self.current_status()
        moment = clock.now()
        session = clock.market_session(moment)
        cells = [
            *fragments.feed_cells(status).values(),
            *fragments.market_cells(moment, is_open=session.is_open, next_change=session.next_change).values(),
        ]
        for tile in self.tiles:
            cells.extend(fragments.followed_tile_cells(tile, self.ticks, self.chains).values())
        updates = self.sent.changed(cells)
        updates += self.sent.changed_element(
            fragments.KITE_LOGIN_ID, fragments.kite_login_link(status, self.login_url, swap=True)
        )
        if self.movers_changed:
            self.movers_changed = False
            gainers, losers = fragments.oi_movers(self.chains.values())
            for element_id, movers in ((fragments.OI_GAINERS_ID, gainers), (fragments.OI_LOSERS_ID, losers)):
                body = fragments.oi_movers_body(element_id, movers, swap=True)
                updates += self.sent.changed_element(element_id, body)
        return updates

    def current_status(self) -> dict | None:
        """The feed's last status while it still reports; None (shown as "—") once it has been
        silent as long as its status key lives in Redis, when the HTTP page shows "—" too."""
        if self.status_at is None or time.monotonic() - self.status_at > STATUS_TTL_SECONDS:
            return None
        return self.status


def _dashboard_start(
    user: AbstractBaseUser | AnonymousUser,
) -> tuple[list[selectors.UnderlyingTile], selectors.DashboardLatest, str | None]:
    tiles = selectors.underlying_tiles()
    account = selectors.data_account_owned_by(user)
    login_url = reverse("kite-login", args=[account.pk]) if account else None
    return tiles, selectors.dashboard_latest(tiles), login_url

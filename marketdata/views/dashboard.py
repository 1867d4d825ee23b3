"""The dashboard: the user's accounts, the feed's health, a tile per underlying, the market's state
and the biggest open-interest moves, live through /ws/ui/dashboard/ (DashboardPageConsumer)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from instruments import selectors as instrument_selectors
from marketdata import selectors
from marketdata.fragments import dashboard as fragments
from trading_site import clock


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The home page, drawn with the fragments its socket sends, from the same values in Redis."""
    tiles = selectors.underlying_tiles()
    latest = selectors.dashboard_latest(tiles)
    gainers, losers = fragments.oi_movers(latest.chains.values())
    login_account = selectors.data_account_owned_by(request.user)
    login_url = reverse("kite-login", args=[login_account.pk]) if login_account else None
    moment = clock.now()
    session = clock.market_session(moment)
    return render(
        request,
        "marketdata/dashboard.html",
        {
            "tiles": [
                {
                    "symbol": tile.symbol,
                    "expiry": tile.option_expiry,
                    "chain_url": reverse("chain", args=[tile.symbol]),
                    "cells": _drawn(fragments.followed_tile_cells(tile, latest.ticks, latest.chains)),
                }
                for tile in tiles
            ],
            "feed": _drawn(fragments.feed_cells(latest.feed_status)),
            "kite_login": mark_safe(fragments.kite_login_link(latest.feed_status, login_url)),
            "market": _drawn(fragments.market_cells(moment, is_open=session.is_open, next_change=session.next_change)),
            "oi_gainers": mark_safe(fragments.oi_movers_body(fragments.OI_GAINERS_ID, gainers)),
            "oi_losers": mark_safe(fragments.oi_movers_body(fragments.OI_LOSERS_ID, losers)),
            "accounts": instrument_selectors.broker_accounts_for_user(request.user),
            "underlyings": instrument_selectors.underlyings_with_contract_counts(),
            "master": instrument_selectors.instrument_master_summary(),
            "data_account": instrument_selectors.data_account(),
            "data_account_login_url": login_url,
        },
    )


def _drawn(cells: dict[str, fragments.LiveCell]) -> dict[str, SafeString]:
    # The fragments escape every text they draw (marketdata.fragments.html.cell).
    return {name: mark_safe(live.html()) for name, live in cells.items()}

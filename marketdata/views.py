"""Pages of the marketdata app."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from instruments import selectors as instrument_selectors
from marketdata import selectors
from trading_site import clock

log = logging.getLogger(__name__)


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """The home page: the user's accounts, the live feed's health, underlyings and the master."""
    return render(
        request,
        "marketdata/dashboard.html",
        {
            "accounts": instrument_selectors.broker_accounts_for_user(request.user),
            "underlyings": instrument_selectors.underlyings_with_contract_counts(),
            "master": instrument_selectors.instrument_master_summary(),
            "data_account": instrument_selectors.data_account(),
            "feed": _feed_status(),
            "now": clock.now(),
        },
    )


def _feed_status() -> dict | None:
    try:
        return selectors.feed_status()
    except Exception as error:  # Redis down: the page still renders and says the feed is not reporting
        log.warning("could not read the feed status: %s", error)
        return None

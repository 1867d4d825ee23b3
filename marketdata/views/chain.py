"""The option chain page: calls, strike, puts, the chain's headline figures and its charts.

The first render reads the chain's latest figures from Redis and draws them through the same
fragment code the page's socket uses afterwards (marketdata.fragments.chain), so a cell reads the
same however it was drawn, and rendering 400 contracts costs string joins, not template loops.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from instruments import selectors as instrument_selectors
from marketdata import selectors
from marketdata.fragments.chain import (
    COLUMNS,
    HEADER_FIGURES,
    HEADING_FIGURES,
    STRIKE_WINDOWS,
    build_view,
    chart_data_fragment,
    header_cells,
    script_json,
    strikes_each_side,
)
from trading_site import clock

log = logging.getLogger(__name__)


@require_GET
def default_chain(request: HttpRequest) -> HttpResponse:
    """/chain/: the first streamed underlying's chain."""
    underlying = instrument_selectors.underlying_list().filter(enabled=True).first()
    if underlying is None:
        messages.info(request, "No underlying is enabled for streaming yet: enable one in the admin.")
        return redirect("home")
    return redirect("chain", symbol=underlying.symbol)


@require_GET
def chain_page(request: HttpRequest, symbol: str) -> HttpResponse:
    underlying = selectors.underlying_by_symbol(symbol)
    if underlying is None:
        raise Http404(f"No underlying {symbol!r}.")
    if underlying.symbol != symbol:
        return redirect(f"{reverse('chain', args=[underlying.symbol])}?{request.GET.urlencode()}")
    today = clock.today()
    expiries = instrument_selectors.underlyings_attach_expiries([underlying], today=today)[0].upcoming_expiries
    if not expiries:
        messages.info(request, f"{underlying.symbol} has no option expiries from today on.")
        return redirect("home")
    chosen = request.GET.get("expiry")
    if chosen:
        try:
            expiry = dt.date.fromisoformat(chosen)
        except ValueError:
            return HttpResponseBadRequest(f"expiry must be a date as YYYY-MM-DD, not {chosen[:40]!r}")
        if expiry not in {e.date for e in expiries}:
            listed = ", ".join(f"{e.date:%Y-%m-%d}" for e in expiries[:8])
            return HttpResponseBadRequest(f"{underlying.symbol} has no expiry {expiry:%Y-%m-%d}; upcoming: {listed}")
    else:
        expiry = expiries[0].date
    window = strikes_each_side(request.META.get("QUERY_STRING", "").encode())
    analytics = _latest_figures(underlying.symbol, expiry)
    view = (
        build_view({"underlying": underlying.symbol, "expiry": expiry.isoformat(), **analytics}) if analytics else None
    )
    strikes = view.window(window) if view else []
    header = view.header if view else header_cells({}, None)
    start_of_day = dt.datetime.combine(today, dt.time(0, 0), tzinfo=clock.IST)
    return render(
        request,
        "marketdata/chain.html",
        {
            "underlying": underlying,
            "expiry": expiry,
            "expiries": expiries,
            "streamed": next(e.streamed for e in expiries if e.date == expiry),
            "window": window,
            "windows": STRIKE_WINDOWS,
            "columns": COLUMNS,
            "header": [
                (f"hdr-{name}", title, mark_safe(header[f"hdr-{name}"].html(f"hdr-{name}", tag="dd")))
                for name, title in HEADER_FIGURES
            ],
            "heading": {
                name.replace("-", "_"): mark_safe(header[f"hdr-{name}"].html(f"hdr-{name}", tag="span"))
                for name in HEADING_FIGURES
            },
            "body": mark_safe(view.body_html(strikes) if view else build_view({}).body_html([])),
            "charts_data": mark_safe(chart_data_fragment(view, strikes, None)),
            "history_json": mark_safe(script_json(_history(underlying.symbol, expiry, start_of_day))),
            "candles_json": mark_safe(script_json(_candles(underlying, start_of_day))),
            "socket": f"/ws/ui/chain/{underlying.symbol}/{expiry:%Y%m%d}/?strikes={window}",
        },
    )


def _latest_figures(symbol: str, expiry: dt.date) -> dict | None:
    try:
        return selectors.latest_chain_analytics(symbol=symbol, expiry=expiry)
    except RedisError as error:  # the page still renders; its socket fills it in when Redis is back
        log.warning("could not read %s %s's figures: %s", symbol, expiry, error)
        return None


def _history(symbol: str, expiry: dt.date, start: dt.datetime) -> list[dict]:
    """The day's stored snapshots as the intraday chart's points."""
    return [
        {"time": int(s.taken_at.timestamp()), "pcr": s.pcr_oi, "max_pain": s.max_pain, "atm_iv": s.atm_iv}
        for s in selectors.chain_history(
            symbol=symbol, expiry=expiry, start=start, end=clock.now() + dt.timedelta(minutes=1)
        )
    ]


def _candles(underlying, start: dt.datetime) -> list[dict]:
    """The day's one-minute candles of the underlying's spot (epoch seconds, as the chart takes them)."""
    if underlying.spot_instrument_id is None:
        return []
    rows = selectors.candles(
        token=underlying.spot_instrument.instrument_token,
        interval="minute",
        start=start,
        end=clock.now() + dt.timedelta(minutes=1),
    )
    return [
        {
            "time": int(dt.datetime.fromisoformat(row["date"]).timestamp()),
            "open": row["open"],
            "high": row["high"],
            "low": row["low"],
            "close": row["close"],
        }
        for row in rows
    ]

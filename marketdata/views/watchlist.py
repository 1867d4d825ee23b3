"""/watchlist/: each user's own list of instruments with live quotes, an instrument search that
adds to it, and the five-level market depth of the instrument picked.

The page works without JavaScript (forms post and redirect back; `?q=` searches, `?select=`
picks the depth panel's instrument). With htmx, the search swaps its results as one types, add
and remove swap the list and say `HX-Trigger: watchlist-changed`, on which the page's socket
(marketdata.consumers.watchlist) reads the list again and joins the new instruments' groups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import redis
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST

from instruments.models import Instrument
from marketdata import selectors, services
from marketdata.fragments.watchlist import Selection, choose_selection, depth_panel, parse_token, quote_cells_html
from marketdata.models import WatchlistEntry

log = logging.getLogger(__name__)

WATCHLIST_CHANGED_EVENT = "watchlist-changed"
MAX_SEARCH_CHARS = 40


@dataclass(frozen=True)
class WatchRow:
    token: int
    instrument: Instrument
    tick: dict | None  # the latest in Redis
    # Drawn by marketdata.fragments.watchlist, which escapes every text it writes.
    quote_cells: SafeString


@require_GET
def watchlist_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_GET
def watchlist_search(request: HttpRequest) -> HttpResponse:
    """The search results as the user types (htmx); the whole page with them otherwise."""
    if not request.htmx:
        return _page(request)
    term = _search_term(request)
    return render(request, "marketdata/_watchlist_results.html", _results_context(request, term))


@require_POST
def watchlist_add(request: HttpRequest) -> HttpResponse:
    token = parse_token(request.POST.get("token", ""))
    try:
        if token is None:
            raise services.WatchlistError("Pick an instrument from the search results to add it.")
        entry = services.watchlist_entry_add(user=request.user, instrument_token=token)
    except services.WatchlistError as error:
        return _refused(request, str(error))
    return _changed(request, f"Added {entry.instrument}.")


@require_POST
def watchlist_remove(request: HttpRequest, token: int) -> HttpResponse:
    try:
        if parse_token(token) is None:
            raise services.WatchlistError(f"The token {token} is not on your watchlist.")
        instrument = services.watchlist_entry_remove(user=request.user, instrument_token=token)
    except services.WatchlistError as error:
        return _refused(request, str(error))
    return _changed(request, f"Removed {instrument}.")


# -- helpers ------------------------------------------------------------------------------------
def _page(request: HttpRequest) -> HttpResponse:
    term = _search_term(request)
    rows = _rows(request)
    tokens = [row.token for row in rows]
    selected = choose_selection(parse_token(request.GET.get("select", "")), tokens)
    row = next((row for row in rows if row.token == selected), None)
    panel = depth_panel(Selection(row.token, str(row.instrument)), row.tick) if row else depth_panel(None, None)
    context = {
        **_list_context(rows),
        **_results_context(request, term, watched=set(tokens)),
        "selected": selected,
        "depth_panel": mark_safe(panel),  # escaped by depth_panel
    }
    return render(request, "marketdata/watchlist.html", context)


def _rows(request: HttpRequest) -> list[WatchRow]:
    instruments = [entry.instrument for entry in selectors.watchlist_entries(request.user)]
    ticks = _latest_ticks([instrument.instrument_token for instrument in instruments])
    rows = []
    for instrument in instruments:
        token = instrument.instrument_token
        tick = ticks.get(token)
        rows.append(WatchRow(token, instrument, tick, mark_safe(quote_cells_html(token, tick))))
    return rows


def _list_context(rows: list[WatchRow], notice: str = "") -> dict:
    return {"rows": rows, "max_entries": WatchlistEntry.MAX_PER_USER, "notice": notice}


def _results_context(request: HttpRequest, term: str, *, watched: set[int] | None = None) -> dict:
    if watched is None:
        watched = {entry.instrument.instrument_token for entry in selectors.watchlist_entries(request.user)}
    results = selectors.watchlist_search(term)
    return {
        "q": term,
        "results": results,
        "results_cut": len(results) >= selectors.WATCHLIST_SEARCH_LIMIT,
        "watched": watched,
    }


def _changed(request: HttpRequest, notice: str) -> HttpResponse:
    if not request.htmx:
        messages.success(request, notice)
        return redirect(_back(request))
    response = render(request, "marketdata/_watchlist_list.html", _list_context(_rows(request), notice))
    response["HX-Trigger"] = WATCHLIST_CHANGED_EVENT  # the page's socket re-reads the list
    return response


def _refused(request: HttpRequest, reason: str) -> HttpResponse:
    """A change that cannot be made: the reason, in the page's message line (htmx) or as a flash."""
    if not request.htmx:
        messages.error(request, reason)
        return redirect(_back(request))
    response = render(request, "marketdata/_watchlist_message.html", {"notice": reason, "refused": True}, status=400)
    # The list stays as it is; only the message line changes (the page lets htmx swap a 400).
    response["HX-Retarget"] = "#wl-message"
    response["HX-Reswap"] = "outerHTML"
    return response


def _back(request: HttpRequest) -> str:
    """The page again, with the search the form came from."""
    term = _search_term(request, request.POST)
    return reverse("watchlist") + (f"?{urlencode({'q': term})}" if term else "")


def _search_term(request: HttpRequest, data: QueryDict | None = None) -> str:
    return (data if data is not None else request.GET).get("q", "").strip()[:MAX_SEARCH_CHARS]


def _latest_ticks(tokens: list[int]) -> dict[int, dict]:
    try:
        return selectors.latest_ticks(tokens)
    except redis.RedisError as error:  # Redis down: the page still renders, with "—", and says nothing false
        log.warning("watchlist: could not read the latest ticks: %s", error)
        return {}

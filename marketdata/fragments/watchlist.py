"""The watchlist page's live cells: one row of quotes per instrument and the market depth panel.

No Django import: the view draws the first render with these functions from the ticks in Redis,
and the page's socket sends the cells again as they change, so a cell reads the same either way.

Ids: the quote row of token T is `wl-T`, its cells `wl-T-ltp`, `-chg`, `-bid`, `-ask`, `-vol`, `-oi`.
The depth panel is `<section id="depth">`; its cells `depth-buy-N-price`, `-quantity`, `-orders`
(and `depth-sell-...`) for levels N = 0..4, best first, and `depth-total-buy`, `depth-total-sell`.

A live cell is a <span> inside its table cell, never the <td> itself: a socket message is parsed as
one fragment, and a <td> next to a <section> or <span> in it is dropped by the HTML parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from marketdata.fragments.html import (
    LiveCell,
    is_number,
    price,
    quantity,
    sign_class,
    signed,
)

DEPTH_ID = "depth"
DEPTH_LEVELS = 5
DEPTH_SIDES = ("buy", "sell")
MAX_TOKEN_DIGITS = 12


@dataclass(frozen=True)
class Selection:
    """The instrument whose depth the panel shows."""

    token: int
    label: str


def row_id(token: int) -> str:
    return f"wl-{int(token)}"


def quote_cell_id(token: int, field: str) -> str:
    return f"{row_id(token)}-{field}"


def depth_cell_id(side: str, level: int, field: str) -> str:
    return f"{DEPTH_ID}-{side}-{level}-{field}"


def _quoted(value: object) -> float | None:
    """A price as quoted: Kite sends 0 for "no bid", "no trade yet" and an empty depth level."""
    return value if is_number(value) and value > 0 else None


def _count(value: object) -> float | None:
    return value if is_number(value) else None


def quote_cells(token: int, tick: dict | None) -> list[LiveCell]:
    """The six quote cells of a row, in column order; "—" for what is not known."""
    tick = tick or {}
    last, bid, ask = _quoted(tick.get("last_price")), _quoted(tick.get("bid")), _quoted(tick.get("ask"))
    # The percent change means nothing before a trade (Kite then sends 0 against the close).
    change = _count(tick.get("change")) if last is not None else None
    volume, oi = _count(tick.get("volume_traded")), _count(tick.get("oi"))
    return [
        LiveCell(quote_cell_id(token, "ltp"), price(last), last),
        LiveCell(quote_cell_id(token, "chg"), signed(change, 2, "%"), change, classes=sign_class(change)),
        LiveCell(quote_cell_id(token, "bid"), price(bid), bid),
        LiveCell(quote_cell_id(token, "ask"), price(ask), ask),
        LiveCell(quote_cell_id(token, "vol"), quantity(volume), volume),
        LiveCell(quote_cell_id(token, "oi"), quantity(oi), oi),
    ]


def quote_cells_html(token: int, tick: dict | None) -> str:
    """A row's quote cells for the page's first render (no swap, no flash)."""
    return "".join(c.td() for c in quote_cells(token, tick))


def depth_levels(tick: dict | None) -> dict[str, list[dict]]:
    """Five levels a side. A tick from the instrument's group carries the full depth; the latest
    tick in Redis carries only the best bid and ask, so that is the one level it can fill."""
    tick = tick or {}
    depth = tick.get("depth")
    if isinstance(depth, dict):
        return {side: _padded([e for e in depth.get(side) or [] if isinstance(e, dict)]) for side in DEPTH_SIDES}
    best = {
        "buy": {"price": tick.get("bid"), "quantity": tick.get("bid_quantity")},
        "sell": {"price": tick.get("ask"), "quantity": tick.get("ask_quantity")},
    }
    return {side: _padded([best[side]]) for side in DEPTH_SIDES}


def _padded(levels: list[dict]) -> list[dict]:
    return [*levels[:DEPTH_LEVELS], *[{}] * (DEPTH_LEVELS - len(levels[:DEPTH_LEVELS]))]


def depth_cells(tick: dict | None) -> list[LiveCell]:
    """Every live cell of the depth panel: 5 levels x 2 sides x (price, quantity, orders), then totals."""
    cells = []
    levels = depth_levels(tick)
    for side in DEPTH_SIDES:
        for level, entry in enumerate(levels[side]):
            at = _quoted(entry.get("price"))
            # An empty level (price 0) is blank across, not "0 orders of 0 at 0.00".
            size = _count(entry.get("quantity")) if at is not None else None
            orders = _count(entry.get("orders")) if at is not None else None
            cells.append(LiveCell(depth_cell_id(side, level, "price"), price(at), at))
            cells.append(LiveCell(depth_cell_id(side, level, "quantity"), quantity(size), size))
            cells.append(LiveCell(depth_cell_id(side, level, "orders"), quantity(orders), orders))
    tick = tick or {}
    for side, key in (("buy", "total_buy_quantity"), ("sell", "total_sell_quantity")):
        total = _count(tick.get(key))
        cells.append(LiveCell(f"{DEPTH_ID}-total-{side}", quantity(total), total))
    return cells


def depth_panel(selection: Selection | None, tick: dict | None, *, swap: bool = False) -> str:
    """The whole depth panel: bids on the left, asks on the right, best level first."""
    oob = ' hx-swap-oob="true"' if swap else ""
    if selection is None:
        return (
            f'<section id="{DEPTH_ID}" class="card depth"{oob}><h2>Market depth</h2>'
            '<p class="muted">Add an instrument to your watchlist, then pick it to see five levels of its '
            "order book.</p></section>"
        )
    by_id = {c.element_id: c for c in depth_cells(tick)}
    rows = []
    for level in range(DEPTH_LEVELS):
        buy = [by_id[depth_cell_id("buy", level, field)] for field in ("orders", "quantity", "price")]
        sell = [by_id[depth_cell_id("sell", level, field)] for field in ("price", "quantity", "orders")]
        rows.append("<tr>" + "".join(_depth_td(c) for c in buy) + "".join(_depth_td(c) for c in sell) + "</tr>")
    total_buy, total_sell = by_id[f"{DEPTH_ID}-total-buy"], by_id[f"{DEPTH_ID}-total-sell"]
    return (
        f'<section id="{DEPTH_ID}" class="card depth" data-token="{int(selection.token)}"{oob}>'
        f'<h2>Market depth <span class="depth-instrument">{escape(selection.label)}</span></h2>'
        '<table class="depth-table"><thead><tr>'
        '<th class="num orders" scope="col">Orders</th><th class="num" scope="col">Qty</th>'
        '<th class="num bid" scope="col">Bid</th><th class="num ask" scope="col">Ask</th>'
        '<th class="num" scope="col">Qty</th><th class="num orders" scope="col">Orders</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody>"
        '<tfoot><tr><td class="orders"></td>'
        + total_buy.td()
        + '<th colspan="2" scope="row" class="depth-total">Total</th>'
        + total_sell.td()
        + '<td class="orders"></td></tr></tfoot></table></section>'
    )


def _depth_td(live: LiveCell) -> str:
    # Orders are hidden on a phone: price and size matter most.
    return live.td("num orders" if live.element_id.endswith("-orders") else "num")


def parse_token(value: object) -> int | None:
    """An instrument token from a form, a URL or a socket message; None for anything else
    ("abc", "²", a list, 20 digits: Kite's tokens fit in 32 bits, the groups' names allow 12 digits)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_TOKEN_DIGITS or int(text) == 0:
        return None
    return int(text)


def choose_selection(requested: int | None, tokens: Sequence[int]) -> int | None:
    """The instrument the depth panel shows: the one asked for if it is on the list, else the first."""
    if requested is not None and requested in tokens:
        return requested
    return tokens[0] if tokens else None

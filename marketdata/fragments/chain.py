"""The option chain page's cells, rows, header and chart data, from one chain analytics message.

Calls on the left, strike in the centre, puts on the right; the last price sits next to the
strike on both sides, as on Kite and Sensibull. Every value has a stable element id,
`<side>-<strike>-<field>` (`ce-24000-ltp`), so an update swaps single cells.

A `ChainView` is built once per analytics message and shared by every socket of the process
showing that chain (`chain_view` caches it on the message's text); each socket then keeps what
it last sent and sends only the cells whose rendering changed (`ChainPageState`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qs

from marketdata.fragments import html
from marketdata.fragments.html import BUILDUP, DASH, fixed, is_number, percent, price, quantity, signed, signed_quantity

SIDES = ("ce", "pe")
STRIKE_WINDOWS = (5, 10, 15, 20, 30)  # strikes each side of ATM; 0 means every strike
DEFAULT_STRIKE_WINDOW = 10
CHART_DATA_ID = "chain-charts-data"
# OI bars move in steps of this many percent, so a small OI change does not resend a whole column.
OI_BAR_STEP = 5


@dataclass(frozen=True)
class Column:
    field: str  # the element id's last part
    key: str  # the side's key in the analytics message
    title: str
    formatter: Callable[[object], str]
    hint: str = ""


COLUMNS: tuple[Column, ...] = (
    Column("ltp", "ltp", "LTP", price, "last traded price"),
    Column("chg", "change_pct", "Chg%", lambda v: signed(v, 1, "%"), "change since the previous close"),
    Column("bid", "bid", "Bid", price),
    Column("ask", "ask", "Ask", price),
    Column("vol", "volume", "Volume", quantity),
    Column("oi", "oi", "OI", quantity, "open interest, with a bar against the largest on screen"),
    Column("oich", "oi_change", "OI chg", signed_quantity, "OI change since the day's first"),
    Column("iv", "iv", "IV", lambda v: fixed(v, 1), "implied volatility, %"),
    Column("delta", "delta", "Delta", lambda v: fixed(v, 2)),
    Column("gamma", "gamma", "Gamma", lambda v: fixed(v, 4)),
    Column("theta", "theta", "Theta", lambda v: fixed(v, 2), "per calendar day"),
    Column("vega", "vega", "Vega", lambda v: fixed(v, 2), "per vol point"),
    Column("buildup", "buildup", "Buildup", lambda v: BUILDUP[v][1] if v in BUILDUP else DASH),
)


@dataclass(frozen=True)
class Cell:
    """One rendered value: what decides whether it must be sent again, and its number for the flash."""

    text: str
    classes: str = ""
    attrs: str = ""
    value: float | None = None

    def html(self, element_id: str, *, moved: int = 0, swap: bool = False, tag: str = "td") -> str:
        return html.cell(element_id, self.text, tag=tag, classes=self.classes, moved=moved, swap=swap, attrs=self.attrs)

    def same_as(self, other: Cell | None) -> bool:
        return other is not None and (self.text, self.classes, self.attrs) == (other.text, other.classes, other.attrs)


def strike_key(strike: float) -> str:
    """24000.0 -> '24000', 112.5 -> '112_5' (ids without dots, which CSS selectors would need escaped)."""
    return f"{strike:g}".replace(".", "_") if strike != int(strike) else str(int(strike))


def cell_id(side: str, strike: float, column: str) -> str:
    return f"{side}-{strike_key(strike)}-{column}"


HEADER_FIGURES: tuple[tuple[str, str], ...] = (
    ("spot", "Spot"),
    ("future", "Future"),
    ("atm-iv", "ATM IV"),
    ("expected-move", "Expected move"),
    ("pcr", "PCR (OI)"),
    ("max-pain", "Max pain"),
    ("gex", "Total GEX"),
    ("flip", "Gamma flip"),
    ("walls", "Call / put wall"),
)
# Shown in the page's heading rather than as boxes: "3.0 days to expiry · figures as of 10:31:02".
HEADING_FIGURES = ("dte", "as-of")


def header_tag(element_id: str) -> str:
    return "span" if element_id.removeprefix("hdr-") in HEADING_FIGURES else "dd"


@dataclass
class ChainView:
    """Everything a page needs from one analytics message, rendered once."""

    underlying: str
    expiry: str
    spot: float | None
    atm_strike: float | None
    strikes: list[float]
    row_classes: dict[float, str]
    cells: dict[str, Cell]  # every side cell of every strike
    header: dict[str, Cell]  # by "hdr-<figure>" id
    summary: dict
    by_strike: dict[float, dict]
    as_of: str | None

    def window(self, strikes_each_side: int) -> list[float]:
        """The strikes shown: N each side of ATM (all of them for 0)."""
        if strikes_each_side <= 0 or self.atm_strike is None or not self.strikes:
            return list(self.strikes)
        centre = bisect.bisect_left(self.strikes, self.atm_strike)
        start = max(centre - strikes_each_side, 0)
        return self.strikes[start : centre + strikes_each_side + 1]

    def row_html(self, strike: float) -> str:
        """A whole row: CE columns mirrored, the strike, PE columns."""
        ce = [self.cells[cell_id("ce", strike, c.field)].html(cell_id("ce", strike, c.field)) for c in COLUMNS]
        pe = [self.cells[cell_id("pe", strike, c.field)].html(cell_id("pe", strike, c.field)) for c in COLUMNS]
        return (
            f'<tr id="row-{strike_key(strike)}" data-strike="{strike:g}">'
            + "".join(reversed(ce))
            + self.strike_html(strike)
            + "".join(pe)
            + "</tr>"
        )

    def strike_html(self, strike: float, *, swap: bool = False) -> str:
        """The strike cell, marked `atm` on the ATM strike (a change of ATM swaps two of these)."""
        label = price(strike, 0 if strike == int(strike) else 2)
        classes = " ".join(["strike", self.row_classes.get(strike, "")]).strip()
        return html.cell(
            f"strike-{strike_key(strike)}", label, tag="th", classes=classes, swap=swap, attrs='scope="row"'
        )

    def body_html(self, strikes: Sequence[float], *, swap: bool = False) -> str:
        rows = "".join(self.row_html(strike) for strike in strikes)
        if not rows:
            rows = f'<tr><td colspan="{2 * len(COLUMNS) + 1}" class="muted">No figures for this chain yet.</td></tr>'
        return '<tbody id="chain-rows"' + (' hx-swap-oob="true"' if swap else "") + f">{rows}</tbody>"

    def chart_data(self, strikes: Sequence[float]) -> dict:
        """What the charts beside the chain draw, for the strikes on screen."""
        rows = [self.by_strike[s] for s in strikes]
        summary = self.summary
        smile = summary.get("smile") or {}
        shown = set(strikes)
        smile_rows = [
            (s, ce, pe)
            for s, ce, pe in zip(smile.get("strikes", []), smile.get("ce_iv", []), smile.get("pe_iv", []), strict=False)
            if s in shown
        ]
        return {
            "underlying": self.underlying,
            "expiry": self.expiry,
            "strikes": list(strikes),
            "ce_oi": [r["ce"].get("oi") for r in rows],
            "pe_oi": [r["pe"].get("oi") for r in rows],
            "ce_oi_change": [r["ce"].get("oi_change") for r in rows],
            "pe_oi_change": [r["pe"].get("oi_change") for r in rows],
            "gex": [r.get("gex") for r in rows],
            "gamma_flip": summary.get("gamma_flip"),
            "spot": summary.get("spot"),
            "atm_strike": summary.get("atm_strike"),
            "smile": {
                "strikes": [s for s, _, _ in smile_rows],
                "ce_iv": [ce for _, ce, _ in smile_rows],
                "pe_iv": [pe for _, _, pe in smile_rows],
            },
            "point": history_point(self.as_of, summary),
        }


def history_point(as_of: str | None, summary: dict) -> dict | None:
    """One point of the intraday PCR / max pain / ATM IV series (time in epoch seconds)."""
    if not as_of:
        return None
    moment = dt.datetime.fromisoformat(as_of)
    return {
        "time": int(moment.timestamp()),
        "pcr": summary.get("pcr_oi"),
        "max_pain": summary.get("max_pain"),
        "atm_iv": summary.get("atm_iv"),
    }


def build_view(chain: dict) -> ChainView:
    summary = chain.get("summary") or {}
    spot = summary.get("spot") if is_number(summary.get("spot")) else None
    atm = summary.get("atm_strike") if is_number(summary.get("atm_strike")) else None
    by_strike = {float(row["strike"]): row for row in chain.get("strikes", [])}
    strikes = sorted(by_strike)
    largest_oi = max(
        (row[side].get("oi") or 0 for row in by_strike.values() for side in SIDES if is_number(row[side].get("oi"))),
        default=0,
    )
    cells: dict[str, Cell] = {}
    row_classes: dict[float, str] = {}
    for strike, row in by_strike.items():
        row_classes[strike] = "atm" if strike == atm else ""
        for side in SIDES:
            values = row.get(side) or {}
            itm = _in_the_money(side, strike, spot)
            for column in COLUMNS:
                cells[cell_id(side, strike, column.field)] = _side_cell(column, values.get(column.key), largest_oi, itm)
    return ChainView(
        underlying=str(chain.get("underlying", "")),
        expiry=str(chain.get("expiry", "")),
        spot=spot,
        atm_strike=atm,
        strikes=strikes,
        row_classes=row_classes,
        cells=cells,
        header=header_cells(summary, chain.get("as_of")),
        summary=summary,
        by_strike=by_strike,
        as_of=chain.get("as_of"),
    )


@lru_cache(maxsize=16)  # a message reaches every socket of the process as the same string
def chain_view(message_json: str) -> ChainView:
    """The view of a chain analytics group message (`{"type": "chain", "chain": {...}}`). Shared."""
    return build_view(json.loads(message_json)["chain"])


def _in_the_money(side: str, strike: float, spot: float | None) -> bool:
    if spot is None:
        return False
    return strike < spot if side == "ce" else strike > spot


def _side_cell(column: Column, value: object, largest_oi: float, itm: bool) -> Cell:
    """A side's cell. The in-the-money shading is a class of each cell, not of the row: when the
    spot crosses a strike, that row's cells are resent, and the browser restyles only them."""
    number = value if is_number(value) else None
    text = column.formatter(value)
    classes, attrs = "", ""
    if column.field in ("chg", "oich"):
        classes = html.sign_class(value)
    elif column.field == "buildup":
        classes = BUILDUP[value][2] if value in BUILDUP else ""
        number = None
    elif column.field == "oi":
        share = 0 if not number or largest_oi <= 0 else round(100 * number / largest_oi / OI_BAR_STEP) * OI_BAR_STEP
        classes, attrs = "oi", f'style="--bar:{share}%"'
    if itm:
        classes = f"{classes} itm" if classes else "itm"
    return Cell(text, classes, attrs, value=number)


def header_cells(summary: dict, as_of: str | None) -> dict[str, Cell]:
    def number(key: str) -> float | None:
        value = summary.get(key)
        return value if is_number(value) else None

    move, move_pct = number("expected_move"), number("expected_move_pct")
    expected = DASH if move is None else f"±{price(move)}" + (f" ({move_pct:.2f}%)" if move_pct is not None else "")
    gex = number("total_gex")
    walls = f"{price(number('call_wall'), 0)} / {price(number('put_wall'), 0)}"
    moment = dt.datetime.fromisoformat(as_of) if as_of else None
    figures = {
        "spot": Cell(price(number("spot")), value=number("spot")),
        "future": Cell(price(number("future")), value=number("future")),
        "atm-iv": Cell(percent(number("atm_iv"), 2), value=number("atm_iv")),
        "expected-move": Cell(expected, value=move),
        "pcr": Cell(fixed(number("pcr_oi"), 2), value=number("pcr_oi")),
        "max-pain": Cell(price(number("max_pain"), 0), value=number("max_pain")),
        "gex": Cell(crores(gex), html.sign_class(gex), value=gex),
        "flip": Cell(price(number("gamma_flip"), 0), value=number("gamma_flip")),
        "walls": Cell(walls),
        "dte": Cell(fixed(number("days_to_expiry"), 1)),
        "as-of": Cell(f"{moment:%H:%M:%S}" if moment else DASH),
    }
    return {f"hdr-{name}": cell for name, cell in figures.items()}


def crores(rupees: float | None) -> str:
    """Rupees in crores with a sign: -3.2e7 -> MINUS + '3.20Cr'."""
    if rupees is None or not math.isfinite(rupees):
        return DASH
    return signed(rupees / 1e7, 2, "Cr")


@dataclass
class ChainPageState:
    """What one socket has sent: it sends the next view's differences only."""

    strikes_each_side: int
    strikes: list[float] = field(default_factory=list)
    sent: dict[str, Cell] = field(default_factory=dict)
    row_classes: dict[float, str] = field(default_factory=dict)
    centre: float | None = None

    def fragments(self, view: ChainView) -> list[str]:
        """The fragments that bring the page from what was sent to `view`."""
        strikes = view.window(self.strikes_each_side)
        if self._needs_new_body(view, strikes):
            self.strikes, self.centre = strikes, view.atm_strike
            self.row_classes = {s: view.row_classes[s] for s in strikes}
            self.sent = {
                cell_id(side, s, c.field): view.cells[cell_id(side, s, c.field)]
                for s in strikes
                for side in SIDES
                for c in COLUMNS
            }
            return [view.body_html(strikes, swap=True), *self._header(view, force=True)]
        fragments = []
        for strike in self.strikes:
            if view.row_classes[strike] != self.row_classes.get(strike):
                self.row_classes[strike] = view.row_classes[strike]
                fragments.append(view.strike_html(strike, swap=True))
            for side in SIDES:
                for column in COLUMNS:
                    key = cell_id(side, strike, column.field)
                    new, old = view.cells[key], self.sent.get(key)
                    if not new.same_as(old):
                        moved = html.direction(new.value, old.value if old else None)
                        fragments.append(new.html(key, moved=moved, swap=True))
                        self.sent[key] = new
        return fragments + self._header(view)

    def _needs_new_body(self, view: ChainView, strikes: list[float]) -> bool:
        """The first view, a strike gone from the chain, or ATM two strikes away from the centre."""
        if not self.strikes or any(s not in view.by_strike for s in self.strikes):
            return True
        if self.strikes_each_side <= 0:
            return strikes != self.strikes
        if view.atm_strike is None or self.centre is None:
            return False
        steps = abs(bisect.bisect_left(view.strikes, view.atm_strike) - bisect.bisect_left(view.strikes, self.centre))
        return steps >= 2

    def _header(self, view: ChainView, *, force: bool = False) -> list[str]:
        fragments = []
        for key, new in view.header.items():
            old = self.sent.get(key)
            if force or not new.same_as(old):
                moved = 0 if force else html.direction(new.value, old.value if old else None)
                fragments.append(new.html(key, moved=moved, swap=True, tag=header_tag(key)))
                self.sent[key] = new
        return fragments


def strikes_each_side(query_string: bytes) -> int:
    """The page's strike window from `?strikes=`: one of STRIKE_WINDOWS, 0 for all, else the default."""
    values = parse_qs(query_string.decode(errors="replace")).get("strikes", [])
    try:
        wanted = int(values[0]) if values else DEFAULT_STRIKE_WINDOW
    except ValueError:
        return DEFAULT_STRIKE_WINDOW
    return wanted if wanted == 0 or wanted in STRIKE_WINDOWS else DEFAULT_STRIKE_WINDOW


def chart_data_fragment(view: ChainView | None, strikes: list[float], candle: dict | None) -> str:
    data = view.chart_data(strikes) if view is not None else {}
    data["candle"] = candle
    return f'<script type="application/json" id="{CHART_DATA_ID}" hx-swap-oob="true">' + script_json(data) + "</script>"


def script_json(data: object) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' to end the element early (as Django's json_script)."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

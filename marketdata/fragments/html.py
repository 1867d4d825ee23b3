"""Numbers as a trader reads them, and the HTML cells the live pages swap by id.

No Django import: the same functions format a page's first render (the view) and every update
the page's socket sends (the consumer), so a cell reads the same however it was drawn.

A live cell is one element with a stable id. An update is the element again with
`hx-swap-oob="true"`; htmx swaps each top-level element of a socket message by its id. A cell
that changed carries `up` or `dn`: the stylesheet flashes it and draws an arrow, so that colour
is never the only cue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

DASH = "—"
# A real minus sign (U+2212): as wide as "+", so signed columns line up.
MINUS = "\u2212"


# The OI buildup codes of marketdata.analytics.chain_json: a label, a short one for narrow
# columns, and the colour class (price and OI rising together, or not, reads bullish or bearish).
BUILDUP = {
    "long_buildup": ("Long buildup", "Long build", "pos"),
    "short_covering": ("Short covering", "Short cover", "pos"),
    "short_buildup": ("Short buildup", "Short build", "neg"),
    "long_unwinding": ("Long unwinding", "Long unwind", "neg"),
}


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def price(value: object, decimals: int = 2) -> str:
    """12345.6 -> '12,345.60' (Indian grouping)."""
    if not is_number(value):
        return DASH
    return indian_grouping(f"{value:.{decimals}f}")


def signed(value: object, decimals: int = 2, suffix: str = "") -> str:
    """A change, always with its sign: '+12.50', MINUS + '3.20', '0.00'."""
    if not is_number(value):
        return DASH
    text = indian_grouping(f"{abs(value):.{decimals}f}")
    if round(value, decimals) == 0:
        return text + suffix
    return ("+" if value > 0 else MINUS) + text + suffix


def quantity(value: object) -> str:
    """A count of shares or contracts in lakhs and crores past a lakh: 1,25,000 -> '1.25L'."""
    if not is_number(value):
        return DASH
    magnitude = abs(value)
    sign = MINUS if value < 0 else ""
    if magnitude >= 1e7:
        return f"{sign}{magnitude / 1e7:.2f}Cr"
    if magnitude >= 1e5:
        return f"{sign}{magnitude / 1e5:.2f}L"
    return sign + indian_grouping(f"{magnitude:.0f}")


def signed_quantity(value: object) -> str:
    if not is_number(value):
        return DASH
    text = quantity(abs(value))
    return text if value == 0 else ("+" if value > 0 else MINUS) + text


def percent(value: object, decimals: int = 1) -> str:
    """Percent points as given (IV 14.23 -> '14.2%')."""
    if not is_number(value):
        return DASH
    return f"{value:.{decimals}f}%"


def fixed(value: object, decimals: int) -> str:
    if not is_number(value):
        return DASH
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text.replace("-", MINUS)


def indian_grouping(number: str) -> str:
    """'1234567.50' -> '12,34,567.50': the last three digits, then pairs."""
    sign, number = ("-", number[1:]) if number.startswith("-") else ("", number)
    whole, dot, fraction = number.partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        pairs = [head[max(i - 2, 0) : i] for i in range(len(head), 0, -2)][::-1]
        whole = ",".join([*pairs, tail])
    return sign + whole + dot + fraction


def direction(new: object, old: object) -> int:
    """+1 up, -1 down, 0 unchanged or not comparable."""
    if not (is_number(new) and is_number(old)) or new == old:
        return 0
    return 1 if new > old else -1


_DIRECTION_CLASS = {1: "up", -1: "dn", 0: ""}


def cell(
    element_id: str,
    text: str,
    *,
    tag: str = "td",
    classes: str = "",
    moved: int = 0,
    swap: bool = False,
    attrs: str = "",
) -> str:
    """One live element. `moved` (+1/-1) flashes it; `swap` makes it an out-of-band update."""
    names = " ".join(c for c in (classes, _DIRECTION_CLASS[moved]) if c)
    return (
        f'<{tag} id="{element_id}"'
        + (' hx-swap-oob="true"' if swap else "")
        + (f' class="{names}"' if names else "")
        + (f" {attrs}" if attrs else "")
        + f">{escape(text, quote=False)}</{tag}>"
    )


def sign_class(value: object) -> str:
    """'pos' or 'neg' for a change's colour; the text carries the sign as well."""
    if not is_number(value) or value == 0:
        return ""
    return "pos" if value > 0 else "neg"


_SECTIONS = ("<tbody", "<thead", "<tfoot", "<tr")
_CELLS = ("<td", "<th ", "<th>")


def socket_messages(fragments: list[str]) -> list[str]:
    """Fragments joined into as few socket messages as the browser can parse whole.

    htmx parses a message inside a <template>, where the first element sets the parser's mode:
    cells (<td>, <th>) are kept only when they come before any other element, and a whole table
    section (<tbody>) cannot share a message with cells or rows. So cells go first, sections get
    a message of their own, and rows (never sent on their own by our pages) one more.
    """
    cells = [f for f in fragments if f.startswith(_CELLS)]
    sections = [f for f in fragments if f.startswith(_SECTIONS) and not f.startswith("<tr")]
    rows = [f for f in fragments if f.startswith("<tr")]
    others = [f for f in fragments if not f.startswith(_CELLS) and not f.startswith(_SECTIONS)]
    messages = ["".join(sections + others)] if sections else []
    if cells or (others and not sections):
        messages.append("".join(cells + ([] if sections else others)))
    if rows:
        messages.append("".join(rows))
    return messages


@dataclass(frozen=True)
class LiveCell:
    """One live element before it is drawn: its id, its text, and the number behind the text
    (which way it moved decides its flash; None for values that should not flash)."""

    element_id: str
    text: str
    value: float | None = None
    tag: str = "span"
    classes: str = ""

    def html(self, *, moved: int = 0, swap: bool = False) -> str:
        return cell(self.element_id, self.text, tag=self.tag, classes=self.classes, moved=moved, swap=swap)

    def td(self, classes: str = "num") -> str:
        """The live element inside its table cell, as the page draws it first."""
        return f'<td class="{classes}">{self.html()}</td>'


class SentCells:
    """What one socket last sent of each element, so that it sends only what changed, flashing a
    cell up or down by how its number moved."""

    def __init__(self) -> None:
        self._text: dict[str, str] = {}
        self._value: dict[str, float | None] = {}

    def changed(self, cells: Iterable[LiveCell]) -> list[str]:
        """The out-of-band elements of the cells whose text differs from the last sent."""
        fragments = []
        for live in cells:
            if self._text.get(live.element_id) == live.text:
                continue
            moved = direction(live.value, self._value.get(live.element_id))
            fragments.append(live.html(moved=moved, swap=True))
            self.remember([live])
        return fragments

    def changed_element(self, element_id: str, html: str) -> list[str]:
        """A whole element (a table body, a link) when its HTML differs from the last sent."""
        if self._text.get(element_id) == html:
            return []
        self._text[element_id] = html
        return [html]

    def remember(self, cells: Iterable[LiveCell]) -> None:
        """Note cells as sent (they went out inside a bigger fragment)."""
        for live in cells:
            self._text[live.element_id] = live.text
            self._value[live.element_id] = live.value

    def forget_texts(self, prefix: str = "") -> None:
        """Send these cells again at their next change or flush (the page may have redrawn them).
        Their numbers stay, so the next one still flashes the way it moved."""
        for element_id in [i for i in self._text if i.startswith(prefix)]:
            del self._text[element_id]

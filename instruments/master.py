"""Kite's instrument master: reading and validating its CSV.

Pure Python, no Django: the sync service feeds the result to the database. A row
that does not parse is reported with its line number and the reason, and skipped;
it never stops the rest from loading. Only a file that is not Kite's format at all
(no header, missing columns) raises MasterFormatError.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

# Kite's column order. Readers map by header name, so a reordered file still loads.
MASTER_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)
INSTRUMENT_TYPES = frozenset({"EQ", "FUT", "CE", "PE"})
DERIVATIVE_TYPES = frozenset({"FUT", "CE", "PE"})

# (decimal places, largest magnitude) matching the Instrument model's DecimalFields,
# so that every parsed value fits its column exactly.
_DECIMAL_LIMITS = {
    "last_price": (Decimal("0.0001"), Decimal("1e12")),
    "strike": (Decimal("0.0001"), Decimal("1e10")),
    "tick_size": (Decimal("0.000001"), Decimal("1e6")),
}
_TEXT_LIMITS = {"tradingsymbol": 64, "name": 128, "segment": 16, "exchange": 8}
# Largest values of the integer columns (PostgreSQL integer and bigint).
_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EXCHANGE_CODE = re.compile(r"[A-Z][A-Z0-9]{1,7}")
_GZIP_MAGIC = b"\x1f\x8b"


class MasterFormatError(ValueError):
    """The input is not an instrument master at all (empty, not CSV, wrong header)."""


@dataclass(frozen=True, slots=True)
class MasterRow:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    last_price: Decimal
    expiry: dt.date | None
    strike: Decimal
    tick_size: Decimal
    lot_size: int
    instrument_type: str
    segment: str
    exchange: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.exchange, self.tradingsymbol)


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(slots=True)
class MasterParse:
    rows: list[MasterRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


class _BadValue(Exception):
    pass


def decode_master(data: bytes) -> str:
    """Bytes of a master file (gzipped or not, as Kite serves it) to text."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise MasterFormatError(f"the file looks gzipped but does not decompress: {error}") from None
    try:
        # utf-8-sig drops a byte-order mark that spreadsheet tools like to add.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MasterFormatError(
            f"the file is not UTF-8 text (byte {error.start} is {data[error.start]:#04x})"
        ) from None


def parse_master(text: str | Iterable[str]) -> MasterParse:
    """Parse a whole master; see `iter_master` for the rules."""
    result = MasterParse()
    for item in iter_master(text):
        (result.errors if isinstance(item, RowError) else result.rows).append(item)
    return result


def iter_master(text: str | Iterable[str]) -> Iterator[MasterRow | RowError]:
    """Yield a MasterRow or a RowError for each data line, in file order.

    Line numbers are the file's own (the header is line 1). A (exchange,
    tradingsymbol) seen twice keeps its first row; the repeat is an error.
    """
    lines = iter(io.StringIO(text) if isinstance(text, str) else text)
    header_line = next(lines, None)
    if header_line is None or not header_line.strip():
        raise MasterFormatError("the file is empty: expected Kite's header line")
    try:
        header = [column.strip().lower() for column in _split(header_line)]
    except csv.Error as error:
        raise MasterFormatError(f"line 1 is not CSV: {error}") from None
    missing = [column for column in MASTER_COLUMNS if column not in header]
    if missing:
        raise MasterFormatError(
            f"the header lacks column(s) {', '.join(missing)}; Kite's header is {','.join(MASTER_COLUMNS)}"
        )
    positions = [header.index(column) for column in MASTER_COLUMNS]
    width = len(header)
    first_line_of: dict[tuple[str, str], int] = {}

    for line, text_line in enumerate(lines, start=2):
        if not text_line.strip():
            continue  # blank line
        try:
            values = _split(text_line)
        except csv.Error as error:
            yield RowError(line, f"not valid CSV: {error}")
            continue
        if len(values) != width:
            yield RowError(line, f"has {len(values)} fields, expected {width}")
            continue
        try:
            row = _row_from_values([values[position].strip() for position in positions])
        except _BadValue as error:
            yield RowError(line, str(error))
            continue
        first = first_line_of.setdefault(row.key, line)
        if first != line:
            yield RowError(line, f"{row.exchange}:{row.tradingsymbol} repeats line {first}; the first is kept")
            continue
        yield row


def _split(line: str) -> list[str]:
    # One physical line at a time: Kite's master has no multi-line fields, and a stray
    # quote must cost its own row, not swallow every line after it. Kite quotes almost
    # nothing, so a plain split serves nearly every line; the csv module takes the rest.
    if '"' not in line:
        return line.rstrip("\r\n").split(",")
    return next(csv.reader((line,), strict=True))


def _row_from_values(values: list[str]) -> MasterRow:
    (token, exchange_token, symbol, name, last_price, expiry, strike, tick, lot, kind, segment, exchange) = values
    if kind not in INSTRUMENT_TYPES:
        raise _BadValue(f"instrument_type {kind!r} is not one of {', '.join(sorted(INSTRUMENT_TYPES))}")
    row = MasterRow(
        instrument_token=_whole("instrument_token", token, minimum=1),
        exchange_token=_whole("exchange_token", exchange_token, minimum=0),
        tradingsymbol=_text("tradingsymbol", symbol, required=True),
        name=_text("name", name, required=False),
        last_price=_decimal("last_price", last_price),
        expiry=_date("expiry", expiry),
        strike=_decimal("strike", strike),
        tick_size=_decimal("tick_size", tick),
        lot_size=_whole("lot_size", lot, minimum=0, maximum=_MAX_INT32),
        instrument_type=kind,
        segment=_text("segment", segment, required=True),
        exchange=_exchange(exchange),
    )
    if kind in DERIVATIVE_TYPES and row.expiry is None:
        raise _BadValue(f"a {kind} contract needs an expiry")
    if kind in ("CE", "PE") and row.strike <= 0:
        raise _BadValue(f"an option needs a positive strike, got {strike!r}")
    return row


def _whole(column: str, raw: str, *, minimum: int, maximum: int = _MAX_INT64) -> int:
    try:
        value = int(raw)
    except ValueError:
        # Some exports write whole numbers as "75.0".
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise _BadValue(f"{column} {raw!r} is not a whole number") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise _BadValue(f"{column} {raw!r} is not a whole number") from None
        value = int(number)
    if value < minimum:
        raise _BadValue(f"{column} {raw!r} is below {minimum}")
    if value > maximum:
        raise _BadValue(f"{column} {raw!r} is too large")
    return value


def _decimal(column: str, raw: str) -> Decimal:
    if raw == "":
        return Decimal("0")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _BadValue(f"{column} {raw!r} is not a number") from None
    places, ceiling = _DECIMAL_LIMITS[column]
    if not value.is_finite() or value < 0:
        raise _BadValue(f"{column} {raw!r} must be a finite number, zero or more")
    if value >= ceiling:
        raise _BadValue(f"{column} {raw!r} is too large")
    value = value.quantize(places)
    if value >= ceiling:  # rounding can carry a value just under the limit over it
        raise _BadValue(f"{column} {raw!r} is too large")
    return value


def _date(column: str, raw: str) -> dt.date | None:
    if raw == "":
        return None
    if not _ISO_DATE.fullmatch(raw):  # fromisoformat would also take 20251230 or 2025-W01-1
        raise _BadValue(f"{column} {raw!r} is not a date (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _BadValue(f"{column} {raw!r} is not a date (YYYY-MM-DD)") from None


def _text(column: str, raw: str, *, required: bool) -> str:
    if required and not raw:
        raise _BadValue(f"{column} is empty")
    if len(raw) > _TEXT_LIMITS[column]:
        raise _BadValue(f"{column} is longer than {_TEXT_LIMITS[column]} characters")
    return raw


def _exchange(raw: str) -> str:
    if not _EXCHANGE_CODE.fullmatch(raw):
        raise _BadValue(f"exchange {raw!r} is not an exchange code such as NSE or NFO")
    return raw


def format_master(rows: Iterable[MasterRow]) -> str:
    """Write rows back out in Kite's exact CSV format (used by load_demo and the tests)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MASTER_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.instrument_token,
                row.exchange_token,
                row.tradingsymbol,
                row.name,
                _plain(row.last_price),
                row.expiry.isoformat() if row.expiry else "",
                _plain(row.strike),
                _plain(row.tick_size),
                row.lot_size,
                row.instrument_type,
                row.segment,
                row.exchange,
            ]
        )
    return out.getvalue()


def _plain(value: Decimal) -> str:
    """Kite writes 24000.0 and 0.05, not 24000.0000 or 5E-2."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"

"""Kite's instrument-master CSV: parsing, error reporting, decoding and writing back."""

import datetime as dt
import gzip
from decimal import Decimal

import pytest

from instruments.master import (
    MASTER_COLUMNS,
    MasterFormatError,
    MasterRow,
    RowError,
    decode_master,
    format_master,
    iter_master,
    parse_master,
)

HEADER = ",".join(MASTER_COLUMNS)
INDEX = "256265,1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE"
OPTION = "12345602,48225,NIFTY25DEC26000CE,NIFTY,0,2025-12-30,26000,0.05,75,CE,NFO-OPT,NFO"
FUTURE = "13238786,51714,NIFTY25DECFUT,NIFTY,26150.5,2025-12-30,0,0.1,75,FUT,NFO-FUT,NFO"
STOCK = "738561,2885,RELIANCE,RELIANCE INDUSTRIES,1543.35,,0,0.1,1,EQ,NSE,NSE"


def master(*lines, newline="\n"):
    return newline.join([HEADER, *lines]) + newline


def option_with(**changes):
    values = dict(zip(MASTER_COLUMNS, OPTION.split(","), strict=True))
    values.update(changes)
    return ",".join(values[column] for column in MASTER_COLUMNS)


def only_row(text):
    parsed = parse_master(text)
    assert parsed.errors == []
    assert len(parsed.rows) == 1
    return parsed.rows[0]


def test_it_parses_kites_index_row_to_typed_values():
    row = only_row(master(INDEX))

    assert row == MasterRow(
        instrument_token=256265,
        exchange_token=1001,
        tradingsymbol="NIFTY 50",
        name="NIFTY 50",
        last_price=Decimal("0"),
        expiry=None,
        strike=Decimal("0"),
        tick_size=Decimal("0"),
        lot_size=0,
        instrument_type="EQ",
        segment="INDICES",
        exchange="NSE",
    )
    assert row.key == ("NSE", "NIFTY 50")


def test_it_parses_an_nfo_option_row_with_quantized_decimals():
    row = only_row(master(OPTION))

    assert (row.instrument_token, row.exchange_token) == (12345602, 48225)
    assert (row.tradingsymbol, row.name) == ("NIFTY25DEC26000CE", "NIFTY")
    assert row.expiry == dt.date(2025, 12, 30)
    assert str(row.strike) == "26000.0000"
    assert str(row.tick_size) == "0.050000"
    assert str(row.last_price) == "0.0000"
    assert row.lot_size == 75
    assert (row.instrument_type, row.segment, row.exchange) == ("CE", "NFO-OPT", "NFO")


def test_it_parses_a_future_with_a_last_price_and_no_strike():
    row = only_row(master(FUTURE))

    assert row.instrument_type == "FUT"
    assert row.expiry == dt.date(2025, 12, 30)
    assert str(row.last_price) == "26150.5000"
    assert str(row.strike) == "0.0000"
    assert str(row.tick_size) == "0.100000"
    assert row.key == ("NFO", "NIFTY25DECFUT")


def test_it_parses_an_equity_with_an_empty_expiry_and_a_long_name():
    row = only_row(master(STOCK))

    assert (row.tradingsymbol, row.name, row.segment) == ("RELIANCE", "RELIANCE INDUSTRIES", "NSE")
    assert row.expiry is None
    assert str(row.last_price) == "1543.3500"


def test_it_accepts_a_lot_size_written_as_75_point_0():
    row = only_row(master(option_with(lot_size="75.0")))

    assert row.lot_size == 75
    assert type(row.lot_size) is int


@pytest.mark.parametrize(
    ("changes", "expected_in_reason"),
    [
        ({"instrument_token": "12x4"}, ["instrument_token", "'12x4'", "whole number"]),
        ({"instrument_token": "0"}, ["instrument_token", "'0'", "below 1"]),
        ({"exchange_token": "-1"}, ["exchange_token", "'-1'", "below 0"]),
        ({"expiry": "2025-12-32"}, ["expiry", "'2025-12-32'", "not a date"]),
        ({"expiry": "30-12-2025"}, ["expiry", "'30-12-2025'", "not a date"]),
        ({"instrument_type": "XX"}, ["instrument_type", "'XX'"]),
        ({"instrument_type": "ce"}, ["instrument_type", "'ce'"]),
        ({"expiry": ""}, ["CE", "expiry"]),
        ({"instrument_type": "FUT", "expiry": "", "strike": "0"}, ["FUT", "expiry"]),
        ({"strike": "0"}, ["strike", "'0'", "positive"]),
        ({"instrument_type": "PE", "strike": ""}, ["strike", "''", "positive"]),
        ({"strike": "abc"}, ["strike", "'abc'", "not a number"]),
        ({"strike": "-100"}, ["strike", "'-100'"]),
        ({"last_price": "NaN"}, ["last_price", "'NaN'"]),
        ({"lot_size": "-75"}, ["lot_size", "'-75'", "below 0"]),
        ({"lot_size": "75.5"}, ["lot_size", "'75.5'", "whole number"]),
        ({"tradingsymbol": ""}, ["tradingsymbol", "empty"]),
        ({"tradingsymbol": "X" * 65}, ["tradingsymbol", "64"]),
        ({"segment": ""}, ["segment", "empty"]),
        ({"exchange": "nfo"}, ["exchange", "'nfo'"]),
        ({"exchange": "N"}, ["exchange", "'N'"]),
        ({"instrument_token": str(2**63)}, ["instrument_token", f"'{2**63}'", "too large"]),
        ({"strike": "1e10"}, ["strike", "'1e10'", "too large"]),
        ({"last_price": "1000000000000"}, ["last_price", "'1000000000000'", "too large"]),
    ],
)
def test_it_reports_a_bad_row_with_its_file_line_number_and_keeps_the_rows_around_it(changes, expected_in_reason):
    # Line 1 header, 2 index, 3 blank, 4 the bad row, 5 a good option.
    text = master(INDEX, "", option_with(**changes), FUTURE)

    parsed = parse_master(text)

    assert [row.tradingsymbol for row in parsed.rows] == ["NIFTY 50", "NIFTY25DECFUT"]
    assert [error.line for error in parsed.errors] == [4]
    for part in expected_in_reason:
        assert part in parsed.errors[0].reason


def test_it_rejects_a_lot_size_too_large_for_the_instrument_tables_integer_column():
    # Instrument.lot_size is a PositiveIntegerField (at most 2**31 - 1 on PostgreSQL).
    parsed = parse_master(master(option_with(lot_size=str(2**31))))

    assert parsed.rows == []
    assert [error.line for error in parsed.errors] == [2]
    assert "lot_size" in parsed.errors[0].reason


def test_it_never_rounds_a_strike_up_past_the_largest_value_its_column_holds():
    # 9999999999.99995 is below the 1e10 ceiling but rounds to 10000000000.0000 (15 digits).
    parsed = parse_master(master(option_with(strike="9999999999.99995")))

    assert all(row.strike < Decimal("1e10") for row in parsed.rows)
    assert [error.line for error in parsed.errors] == [2]
    assert "strike" in parsed.errors[0].reason


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_count_in_the_line_numbers(newline):
    text = master("", "", INDEX, "   ", option_with(strike="zero"), newline=newline)

    parsed = parse_master(text)

    assert [row.tradingsymbol for row in parsed.rows] == ["NIFTY 50"]
    assert parsed.errors == [RowError(6, "strike 'zero' is not a number")]
    assert str(parsed.errors[0]) == "line 6: strike 'zero' is not a number"


@pytest.mark.parametrize(
    ("line", "count"),
    [(OPTION.rsplit(",", 1)[0], 11), (OPTION + ",extra", 13), ("just one field", 1)],
)
def test_it_reports_a_row_with_the_wrong_number_of_fields(line, count):
    parsed = parse_master(master(INDEX, line, FUTURE))

    assert [row.tradingsymbol for row in parsed.rows] == ["NIFTY 50", "NIFTY25DECFUT"]
    assert parsed.errors == [RowError(3, f"has {count} fields, expected 12")]


def test_a_repeated_exchange_and_tradingsymbol_keeps_the_first_and_names_its_line():
    repeat = option_with(instrument_token="99999902", exchange_token="390624")

    parsed = parse_master(master(OPTION, INDEX, repeat))

    assert [(row.tradingsymbol, row.instrument_token) for row in parsed.rows] == [
        ("NIFTY25DEC26000CE", 12345602),
        ("NIFTY 50", 256265),
    ]
    assert [error.line for error in parsed.errors] == [4]
    assert "NFO:NIFTY25DEC26000CE" in parsed.errors[0].reason
    assert "line 2" in parsed.errors[0].reason


def test_the_same_tradingsymbol_on_two_exchanges_is_not_a_repeat():
    on_bse = option_with(exchange="BFO", segment="BFO-OPT", instrument_token="12345605")

    parsed = parse_master(master(OPTION, on_bse))

    assert parsed.errors == []
    assert [row.key for row in parsed.rows] == [("NFO", "NIFTY25DEC26000CE"), ("BFO", "NIFTY25DEC26000CE")]


def test_a_bad_first_row_does_not_count_as_the_first_of_a_repeat():
    parsed = parse_master(master(option_with(lot_size="x"), OPTION))

    assert [row.tradingsymbol for row in parsed.rows] == ["NIFTY25DEC26000CE"]
    assert [error.line for error in parsed.errors] == [2]


@pytest.mark.parametrize("column", ["lot_size", "instrument_token", "exchange"])
def test_a_header_missing_a_column_raises_naming_the_column(column):
    header = ",".join(name for name in MASTER_COLUMNS if name != column)

    with pytest.raises(MasterFormatError, match=f"lacks column\\(s\\) {column};"):
        parse_master(header + "\n" + INDEX + "\n")


@pytest.mark.parametrize("text", ["", []])
def test_empty_input_raises_a_format_error(text):
    with pytest.raises(MasterFormatError, match="empty"):
        parse_master(text)


def test_columns_in_another_order_and_case_parse_to_the_same_rows():
    reordered_header = ",".join(f" {name.upper()} " for name in reversed(MASTER_COLUMNS))
    lines = [",".join(reversed(line.split(","))) for line in (INDEX, OPTION, FUTURE)]

    reordered = parse_master("\n".join([reordered_header, *lines]) + "\n")

    assert reordered.errors == []
    assert reordered.rows == parse_master(master(INDEX, OPTION, FUTURE)).rows
    assert reordered.rows[1].strike == Decimal("26000")


def test_iter_master_takes_lines_and_yields_rows_and_errors_in_file_order():
    lines = master(INDEX, option_with(expiry="soon"), OPTION).splitlines(keepends=True)

    items = list(iter_master(lines))

    assert [type(item) for item in items] == [MasterRow, RowError, MasterRow]
    assert items[1] == RowError(3, "expiry 'soon' is not a date (YYYY-MM-DD)")
    assert items[2].tradingsymbol == "NIFTY25DEC26000CE"


def test_it_decodes_gzipped_bytes():
    text = master(INDEX, OPTION)

    assert decode_master(gzip.compress(text.encode())) == text


def test_it_decodes_plain_utf8_and_drops_a_byte_order_mark():
    text = master(INDEX, option_with(name="NIFTY ₹"))

    decoded = decode_master(b"\xef\xbb\xbf" + text.encode())

    assert decoded == text
    assert parse_master(decoded).rows[1].name == "NIFTY ₹"
    assert decode_master(gzip.compress(b"\xef\xbb\xbf" + text.encode())) == text


def test_non_utf8_bytes_raise_a_format_error_naming_the_byte():
    data = master(INDEX).encode() + "café".encode("latin-1")

    with pytest.raises(MasterFormatError, match=r"not UTF-8.*0xe9"):
        decode_master(data)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-12], id="truncated"),
        pytest.param(lambda data: data[:10] + b"\xff" * 20 + data[30:], id="corrupt-body"),
        pytest.param(lambda data: data[:2] + b"\x63" + data[3:], id="bad-method"),
    ],
)
def test_corrupt_gzip_raises_a_format_error(damage):
    data = gzip.compress(master(INDEX, OPTION, FUTURE).encode())

    with pytest.raises(MasterFormatError, match="gzipped but does not decompress"):
        decode_master(damage(data))


def test_format_master_round_trips_through_parse_master():
    text = master(INDEX, OPTION, FUTURE, STOCK, option_with(tradingsymbol="NIFTY25DEC24000PE", strike="24000"))
    rows = parse_master(text).rows

    again = parse_master(format_master(rows))

    assert again.errors == []
    assert again.rows == rows
    assert [str(row.strike) for row in again.rows] == [str(row.strike) for row in rows]


def test_format_master_writes_kites_plain_numbers():
    rows = parse_master(master(INDEX, option_with(strike="24000.0000", tick_size="0.0500"), FUTURE)).rows

    lines = format_master(rows).splitlines()

    assert lines[0] == HEADER
    assert lines[1] == "256265,1001,NIFTY 50,NIFTY 50,0.0,,0.0,0.0,0,EQ,INDICES,NSE"
    assert lines[2] == "12345602,48225,NIFTY25DEC26000CE,NIFTY,0.0,2025-12-30,24000.0,0.05,75,CE,NFO-OPT,NFO"
    assert lines[3] == "13238786,51714,NIFTY25DECFUT,NIFTY,26150.5,2025-12-30,0.0,0.1,75,FUT,NFO-FUT,NFO"


def test_format_master_quotes_a_name_with_a_comma_so_it_parses_back():
    rows = parse_master(master(option_with(name='"NIFTY, ""50"""'))).rows
    assert rows[0].name == 'NIFTY, "50"'

    out = format_master(rows)

    assert '"NIFTY, ""50"""' in out
    assert parse_master(out).rows == rows


def test_a_stray_quote_costs_only_its_own_row():
    text = master(OPTION, STOCK.replace("RELIANCE INDUSTRIES", '"RELIANCE INDUSTRIES'), INDEX, FUTURE)
    parsed = parse_master(text)
    assert [error.line for error in parsed.errors] == [3]
    assert "not valid CSV" in parsed.errors[0].reason
    assert [row.tradingsymbol for row in parsed.rows] == ["NIFTY25DEC26000CE", "NIFTY 50", "NIFTY25DECFUT"]


@pytest.mark.parametrize("raw", ["20251230", "2025-W01-1"])
def test_only_dashed_iso_dates_are_expiries(raw):
    errors = parse_master(master(option_with(expiry=raw))).errors
    assert [str(error) for error in errors] == [f"line 2: expiry {raw!r} is not a date (YYYY-MM-DD)"]

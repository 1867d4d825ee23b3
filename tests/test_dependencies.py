"""The install did not silently fall back to an old daphne or an old kiteconnect (see requirements.txt)."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version


def test_the_asgi_stack_is_the_one_we_pinned():
    assert Version(version("django")).release[:2] == (5, 2)
    assert Version(version("daphne")) >= Version("4.2")
    assert Version(version("channels")) >= Version("4.3")
    assert Version(version("autobahn")) >= Version("22.4.2")


def test_kiteconnect_is_5_2_2_and_its_ticker_parser_imports_over_the_newer_autobahn():
    assert version("kiteconnect") == "5.2.2"
    from kiteconnect import KiteTicker  # imports autobahn.twisted

    assert callable(KiteTicker._parse_binary)

"""python manage.py sync_instruments [--file PATH] [--exchange NFO ...]"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from instruments import services
from instruments.master import MasterFormatError, decode_master

# Enough bad rows to see the pattern without burying the summary.
ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Load Kite's instrument master, from Kite through the data account's session or from a CSV "
        "file in Kite's format (gzipped or not). Upserts in bulk, marks instruments that left the "
        "master inactive, and links futures and options to their underlyings. Bad rows are reported "
        "and skipped; the command fails only when nothing could be loaded."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--file", type=Path, help="A CSV in Kite's instruments() format; '-' reads stdin.")
        parser.add_argument(
            "--exchange",
            action="append",
            dest="exchanges",
            metavar="EXCHANGE",
            help="Limit to this exchange (NSE, NFO, BFO, MCX...). Repeat for more. Others are left alone.",
        )
        parser.add_argument(
            "--name",
            action="append",
            dest="names",
            metavar="NAME",
            help="Limit to rows with this Kite `name` (e.g. NIFTY). Repeat for more.",
        )

    def handle(self, *args, file: Path | None, exchanges: list[str] | None, names: list[str] | None, **options):
        exchanges = [exchange.upper() for exchange in exchanges] if exchanges else None
        progress = self._progress if self.stdout.isatty() else None
        try:
            if file is None:
                report = services.instrument_sync_from_kite(exchanges=exchanges, names=names, progress=progress)
            else:
                report = services.instrument_sync_from_text(
                    text=decode_master(self._read(file)), exchanges=exchanges, names=names, progress=progress
                )
        except (MasterFormatError, services.KiteSessionError) as error:
            raise CommandError(str(error)) from None
        if progress:
            self.stdout.write("")  # end the progress line

        for error in report.errors[:ERRORS_SHOWN]:
            self.stderr.write(f"skipped {error}")
        if len(report.errors) > ERRORS_SHOWN:
            self.stderr.write(f"... and {len(report.errors) - ERRORS_SHOWN} more bad rows")
        if report.loaded == 0:
            raise CommandError(f"Nothing could be loaded: {report.summary()}.")
        self.stdout.write(self.style.SUCCESS(f"Instrument master synced: {report.summary()}."))

    def _read(self, file: Path) -> bytes:
        if str(file) == "-":
            return sys.stdin.buffer.read()
        try:
            return file.read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from None

    def _progress(self, stage: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        self.stdout.write(f"\r{stage}: {done:,}/{total:,} ({percent}%)", ending="")
        self.stdout.flush()

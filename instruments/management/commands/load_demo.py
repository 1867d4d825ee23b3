"""python manage.py load_demo: a demo master, underlyings, a user and a paper account."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from instruments import selectors, services
from instruments.demo import DEMO_UNDERLYINGS, demo_master
from instruments.master import format_master
from trading_site import clock


class Command(BaseCommand):
    help = (
        "Write a realistic demo instrument master (NIFTY, BANKNIFTY, FINNIFTY) in Kite's CSV format, "
        "load it through sync_instruments, and create the demo underlyings, a demo user and a paper "
        "account. Safe to run again: it changes only what is missing or out of date."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo", help="The demo user (created if missing).")
        parser.add_argument(
            "--password", default="demo", help="Password for a newly created demo user; an existing one keeps theirs."
        )

    def handle(self, *args, username: str, password: str, **options) -> None:
        today = clock.today()
        master_file = settings.VAR_DIR / "demo" / f"instruments-{today:%Y-%m-%d}.csv"
        master_file.parent.mkdir(parents=True, exist_ok=True)
        master_file.write_text(format_master(demo_master(today)))
        self.stdout.write(f"Demo master written to {master_file}")

        # Only the demo's own names are in scope, so a real master loaded beside it is left alone.
        names = [u.symbol for u in DEMO_UNDERLYINGS] + [u.index_symbol for u in DEMO_UNDERLYINGS]
        call_command("sync_instruments", file=master_file, names=names, stdout=self.stdout, stderr=self.stderr)

        for demo in DEMO_UNDERLYINGS:
            underlying = services.underlying_ensure(
                symbol=demo.symbol,
                defaults={
                    "derivatives_exchange": "NFO",
                    "strike_step": Decimal(demo.strike_step),
                    "strikes_each_side": 10,
                    "expiries_to_stream": 2,
                    # NIFTY's ticks are stored so that `run_feed --source replay` has a day to play.
                    "store_ticks": demo.symbol == "NIFTY",
                },
                spot_instrument=selectors.instrument_by_token(demo.index_token),
            )
            self.stdout.write(f"Underlying {underlying.symbol}: {underlying.instruments.active().count()} contracts")

        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save()
            self.stdout.write(f"Created user {username!r} (staff) with password {password!r}: change it for real use.")
        services.broker_account_paper_ensure(user=user)
        self.stdout.write(self.style.SUCCESS("Demo ready."))

"""`make run`'s SQLite database takes writes from several processes at once: the feed (bars,
ticks), the worker (chain snapshots) and the web. Transactions that read before they write must
wait for the lock, not fail with "database is locked"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Three writers on their own connections, each reading then writing inside a transaction, as
# update_or_create does. With SQLite's default deferred transactions the read lock cannot be
# upgraded while another writer holds the lock, and SQLite gives up at once.
WRITERS = """
import threading
import django
django.setup()
from django.core.management import call_command
from django.db import connections, transaction
from instruments.models import Underlying
call_command("migrate", verbosity=0)
errors = []
def write(symbol):
    try:
        for i in range(150):
            with transaction.atomic():
                list(Underlying.objects.filter(symbol=symbol))
                defaults = {"strike_step": 50, "strikes_each_side": i % 50 + 1}
                Underlying.objects.update_or_create(symbol=symbol, defaults=defaults)
    except Exception as error:
        errors.append(repr(error))
    finally:
        connections.close_all()
threads = [threading.Thread(target=write, args=(f"S{n}",)) for n in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors[0] if errors else Underlying.objects.count())
"""


def test_concurrent_writers_on_the_demo_sqlite_database_wait_for_each_other(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/desk.sqlite3",
        "DJANGO_SETTINGS_MODULE": "trading_site.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", WRITERS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3"

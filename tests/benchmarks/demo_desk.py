"""The demo desk the page benchmarks run on: the bench database migrated and the demo loaded into
it, with the bench's Redis database emptied. Django must already be set up (by the caller)."""

from __future__ import annotations

import sys
from pathlib import Path

import redis
from django.conf import settings
from django.core.management import call_command


def load_demo_desk(scratch: Path) -> None:
    settings.VAR_DIR = scratch
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("migrate", verbosity=0)
    call_command("load_demo", stdout=sys.stderr)

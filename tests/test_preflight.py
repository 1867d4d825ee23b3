"""A stopped PostgreSQL or Redis stops the run at once with one clear line, not tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "127.0.0.1:9"  # the discard port: nothing listens there


def run_suite(**env_overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_dependencies.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "url", "expected"),
    [
        ("TEST_REDIS_URL", f"redis://{CLOSED}/0", f"Redis is not reachable at redis://{CLOSED}/0"),
        (
            "TEST_DATABASE_URL",
            f"postgres://tester:hunter2@{CLOSED}/desk",
            f"PostgreSQL is not reachable at postgres://tester:***@{CLOSED}/desk (TEST_DATABASE_URL)",
        ),
    ],
)
def test_the_suite_stops_naming_the_missing_service(variable, url, expected):
    completed = run_suite(**{variable: url})
    output = completed.stdout + completed.stderr
    assert completed.returncode == 3
    assert expected in output and "Start it with:" in output
    assert "hunter2" not in output
    assert "Traceback" not in output


def test_make_runs_preflight_names_a_stopped_redis():
    completed = subprocess.run(
        [sys.executable, "-m", "trading_site.preflight"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": f"redis://{CLOSED}/0", "DATABASE_URL": "sqlite:///var/db.sqlite3"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert f"Redis is not reachable at redis://{CLOSED}/0" in completed.stderr

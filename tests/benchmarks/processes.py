"""Process helpers for benchmarks that run servers beside themselves.

Holds the generic pieces: picking a free port, starting daphne on a database and waiting until it
answers HTTP, stopping a child process, reading the tail of a child's log, and the CPU used by a
process, by Redis and by the whole machine (from /proc and Redis's INFO). No Django import at
module level: `start_daphne` reads the caller's settings when called.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[2]
DAPHNE_START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_daphne(database_url: str, port: int, log_file: IO[bytes]) -> subprocess.Popen:
    from django.conf import settings

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        # The session is signed with SECRET_KEY: daphne must use this process's key.
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEY": settings.FIELD_ENCRYPTION_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "trading_site.settings",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "trading_site.asgi:application"]
    try:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    except OSError as error:
        raise RuntimeError(f"could not start daphne ({' '.join(command)}): {error}") from error


def wait_for_http(daphne: subprocess.Popen, port: int, log_file: IO[bytes]) -> None:
    deadline = time.monotonic() + DAPHNE_START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if daphne.poll() is not None:
            raise RuntimeError(f"daphne exited with code {daphne.returncode} at start:\n{tail(log_file)}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()  # any HTTP answer (a redirect to the login page) means it is up
            return
        except OSError as error:
            last_error = error
            time.sleep(0.1)
        finally:
            connection.close()
    raise RuntimeError(
        f"daphne did not answer HTTP on 127.0.0.1:{port} within {DAPHNE_START_TIMEOUT:.0f} s "
        f"(last error: {last_error}):\n{tail(log_file)}"
    )


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def tail(log_file: IO[bytes], limit: int = 4000) -> str:
    with contextlib.suppress(Exception):
        log_file.flush()
        log_file.seek(0)
        return log_file.read().decode(errors="replace")[-limit:] or "(no output)"
    return "(no output)"


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process, from /proc (nan where unavailable)."""
    try:
        stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores together, from /proc/stat (nan where unavailable)."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


async def redis_cpu_seconds(redis: aioredis.Redis) -> float:
    """User + system CPU seconds of the Redis server behind an asyncio client (nan where unavailable)."""
    try:
        info = await redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    except Exception:
        return float("nan")

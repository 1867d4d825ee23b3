"""The desk's real stack as child processes, as `make run` has it: daphne, the simulated feed and a
Celery worker, on real Redis and PostgreSQL (the test database). Each writes its log to a file
under tests/artifacts/logs/, which the browser tests show when one of them fails."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.daphne import free_port

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "artifacts" / "logs"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
LOG_TAIL_CHARS = 3000
ACCESS_LINE = re.compile(r"127\.0\.0\.1:\d+ - - \[")
# One task at a time on the default queue; no chatter with other workers (there are none).
WORKER_OPTIONS = (
    *("--pool", "solo", "--concurrency", "1", "-Q", "celery", "--loglevel", "INFO"),
    *("--without-heartbeat", "--without-gossip", "--without-mingle"),
)


class Process:
    """One child process, its output appended to `log_path`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            # A file, not a pipe: a chatty process can never fill a pipe and stall.
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: sockets drop without a close frame (browsers see 1006), as when a server dies."""
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if not self.running:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the log, less daphne's access lines (the whole log is in its file)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines(keepends=True)
        except FileNotFoundError:
            return "(no log)"
        return "".join(line for line in lines if not ACCESS_LINE.match(line))[-chars:]

    def describe(self) -> str:
        if self.popen is None:
            state = "not started"
        elif self.running:
            state = f"running (pid {self.popen.pid})"
        else:
            state = f"exited with {self.popen.returncode}"
        return f"--- {self.name}: {state}; log {self.log_path}\n{self.log_tail()}"


class Web(Process):
    """daphne serving the ASGI app on its own port, which it keeps across restarts."""

    def __init__(self, env: dict[str, str], name: str = "daphne", port: int | None = None) -> None:
        self.port = port or free_port()
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        super().__init__(name, [*argv, "trading_site.asgi:application"], env, LOG_DIR / f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                requests.get(self.url + "/login/", timeout=5)  # the first request imports the views
                return
            except requests.RequestException:
                if not self.running or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start\n{self.describe()}") from None
                time.sleep(0.1)

    def restart(self) -> None:
        self.kill()
        self.start()


FEED_ARGV = [sys.executable, "manage.py", "run_feed", "--source", "sim", "--no-store", "--underlyings", "NIFTY"]


class Stack:
    """daphne, `run_feed --source sim` and a Celery worker sharing `env` (the test database and Redis)."""

    def __init__(self, env: dict[str, str]) -> None:
        # Snapshots every few seconds, so the chain's intraday chart has points within a test.
        self.env = {**env, "CHAIN_SNAPSHOT_SECONDS": "5", "PYTHONUNBUFFERED": "1"}
        for old in LOG_DIR.glob("*.log"):
            old.unlink()
        self.web = Web(self.env)
        self.worker = Process(
            "worker",
            # The default queue: trading_site/celery.py and the settings route nothing elsewhere.
            [sys.executable, "-m", "celery", "-A", "trading_site", "worker", *WORKER_OPTIONS],
            self.env,
            LOG_DIR / "worker.log",
        )
        self.feed = Process("feed", FEED_ARGV, self.env, LOG_DIR / "feed.log")
        self.extra: list[Process] = []

    @property
    def processes(self) -> list[Process]:
        return [self.web, self.worker, self.feed, *self.extra]

    def start(self) -> None:
        try:
            self.worker.start()
            self.feed.start()
            self.web.start()
            self.wait_until_streaming()
        except BaseException:
            self.stop()
            raise

    def wait_until_streaming(self) -> None:
        """The worker has said it is ready, and the feed's status is in Redis: the pages can go live."""
        import redis

        from marketdata.groups import FEED_STATUS_KEY

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not (client.get(FEED_STATUS_KEY) and " ready." in self.worker.log_path.read_text(errors="replace")):
                dead = [p.name for p in self.processes if not p.running]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the stack did not start ({', '.join(dead) or 'timed out'})\n{self.logs()}")
                time.sleep(0.2)
        finally:
            client.close()

    def own_web(self, name: str) -> Web:
        """Another daphne on its own port (for a test that kills it), stopped with the stack."""
        web = Web(self.env, name=name)
        self.extra.append(web)
        web.start()
        return web

    def own_feed(self, name: str) -> tuple[Web, Process]:
        """A feed and a daphne of their own (for a test that stops the feed), stopped with the stack.

        They share the stack's database and Redis database but not its channel layer: a prefix of
        their own keeps the two feeds' group messages apart (Redis pub/sub ignores the database
        number). The feed asks no worker for chain analytics, which the shared worker would publish
        to the shared groups. The feed boots while daphne starts; a page on this daphne goes live
        once the feed reports running.
        """
        prefix = self.env.get("CHANNEL_LAYER_PREFIX", "desk:channels")
        env = {**self.env, "CHANNEL_LAYER_PREFIX": f"{prefix}:{name}"}
        feed = Process(f"feed-{name}", [*FEED_ARGV, "--chain-refresh-ms", "0"], env, LOG_DIR / f"feed-{name}.log")
        web = Web(env, name=f"daphne-{name}")
        self.extra += [feed, web]
        feed.start()
        web.start()
        return web, feed

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()

    def logs(self) -> str:
        return "\n".join(process.describe() for process in self.processes)


def child_environment(database: dict, redis_url: str) -> dict[str, str]:
    """The test process's environment with the test database's name (pytest-django's, not the URL's)."""
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    url = f"postgres://{database['USER']}{password}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url}

"""Logging filters used by settings.LOGGING."""

from __future__ import annotations

import logging


class FrequentTasksFilter(logging.Filter):
    """Drops Celery's per-task "received" and "succeeded" INFO lines for the tasks named.

    The feed asks for a chain refresh twice a second per chain: a dozen lines a second that
    would bury every other worker line. Their warnings and errors (a failure, a retry) still log.
    """

    def __init__(self, tasks: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        # Celery's worker and tracer log these with a mapping of the task's fields as the arguments.
        arguments = record.args
        return not (isinstance(arguments, dict) and arguments.get("name") in self.tasks)

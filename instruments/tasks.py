from __future__ import annotations

import logging

from celery import shared_task

from instruments import services

log = logging.getLogger(__name__)


@shared_task(name="instruments.tasks.sync_instruments_from_kite", acks_late=True)
def sync_instruments_from_kite(exchanges: list[str] | None = None) -> dict:
    """The daily 08:30 IST refresh of the master from Kite.

    Idempotent (a second run changes nothing), so a redelivery after a worker
    crash is harmless. Without a usable Kite session it reports why and stops:
    retrying cannot help until someone logs in.
    """
    try:
        report = services.instrument_sync_from_kite(exchanges=exchanges)
    except services.KiteSessionError as error:
        log.warning("instrument sync skipped: %s", error)
        return {"status": "skipped", "reason": str(error)}
    return {
        "status": "synced",
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "deactivated": report.deactivated,
        "errors": len(report.errors),
    }

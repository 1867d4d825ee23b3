"""Celery tasks of the marketdata app."""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task

from marketdata import services

log = logging.getLogger(__name__)


@shared_task(name="marketdata.tasks.refresh_chain", ignore_result=True)
def refresh_chain(symbol: str, expiry: str) -> dict | None:
    """One chain's analytics, asked for by the feed while the chain changes (see feed.chains).

    No result is kept: the figures go to Redis and the chain's group, and two refreshes a
    second per chain would fill the result backend with values nobody reads.
    """
    analytics = services.chain_refresh(symbol=symbol, expiry=dt.date.fromisoformat(expiry))
    if analytics is None:
        log.info("chain %s %s: no layout from the feed yet, nothing to compute", symbol, expiry)
        return None
    return {"underlying": symbol, "expiry": expiry, "as_of": analytics["as_of"]}


@shared_task(name="marketdata.tasks.prune_chain_snapshots")
def prune_chain_snapshots() -> dict:
    """The daily clean-up of chain history older than CHAIN_SNAPSHOT_RETENTION_DAYS."""
    return {"deleted": services.chain_snapshots_prune()}

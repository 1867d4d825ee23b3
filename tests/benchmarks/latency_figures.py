"""The result arithmetic of the latency benchmark (tests/benchmarks/latency.py), and its reference.

`figures` turns what the feed published (`Published`, in the measured `Window`) and what the
clients' process reported receiving into the benchmark's result dict: the latency percentiles, where
the time goes, whether the run kept up, and the CPU used. `channel_layer_floor` measures the
reference those figures are set against: group_send -> receive() of a small message on one bare
channel, in the feed's process.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import numpy as np

from tests.benchmarks.latency_clients import now

REFERENCE_SENDS = 200
REFERENCE_GROUP = "bench.latency.floor"
# Median latency rising faster than this over the window means a queue is growing somewhere.
KEEPING_UP_MS_PER_S = 25.0


@dataclass
class Published:
    """One ticks message the feed sent to GROUP."""

    seq: int
    sent_at: float
    send_seconds: float  # how long group_send took (serialising, Redis)
    emitted: np.ndarray  # emit time of each tick in it, in order
    checksum: int


@dataclass
class Window:
    start: float = float("inf")
    end: float = float("inf")


def figures(
    *,
    report: dict,
    published: dict[tuple[int, int], Published],
    order: list[Published],
    window: Window,
    reference: tuple[float, float],
    clients: int,
    ticks_per_second: int,
    fed: float,
    frames: float,
    elapsed: float,
    conflation_ms: int,
    instruments: int,
    ticks_skipped: int,
    cpu: list[float],
    other_members: int,
) -> dict:
    def in_window(entry: Published) -> np.ndarray:
        return (entry.emitted >= window.start) & (entry.emitted < window.end)

    latencies, parsed, emit_times, delivery = [], [], [], []
    received: dict[int, list[float]] = {}
    foreign = corrupt = 0
    for client in report["clients"]:
        for token, paise, at, parsed_at, count, checksum in client["messages"]:
            entry = published.get((token, paise))
            if entry is None:
                foreign += 1  # not this run's feed (another feed on the same group?)
                continue
            if checksum != entry.checksum or count != entry.emitted.size:
                corrupt += 1
                continue
            received.setdefault(entry.seq, []).append(at)
            mask = in_window(entry)
            if mask.any():
                latencies.append(at - entry.emitted[mask])
                parsed.append(parsed_at - entry.emitted[mask])
                emit_times.append(entry.emitted[mask])
                delivery.append(at - entry.sent_at)
    if corrupt:
        raise RuntimeError(f"{corrupt} messages reached a client with other ticks than the feed published")
    if not latencies:
        raise RuntimeError(
            f"no samples: the clients received {sum(len(c['messages']) for c in report['clients'])} ticks "
            f"messages ({foreign} not from this run), the feed published {len(order)}"
        )
    samples = np.concatenate(latencies) * 1000
    after_parse = np.concatenate(parsed) * 1000
    emit_at = np.concatenate(emit_times)
    carrying = [entry for entry in order if in_window(entry).any()]
    waits = np.concatenate([entry.sent_at - entry.emitted[in_window(entry)] for entry in carrying]) * 1000
    spread = [max(times) - min(times) for entry in carrying if len(times := received.get(entry.seq, [])) > 1]
    first = [min(received[entry.seq]) - entry.sent_at for entry in carrying if entry.seq in received]
    sends = np.array([entry.send_seconds for entry in carrying]) * 1000
    missed = sum(clients - len(received.get(entry.seq, [])) for entry in carrying)
    seconds_in = ((emit_at - window.start) // 1).astype(int)
    p50, p99 = np.percentile(samples, [50, 99])
    by_second = [samples[seconds_in == second] for second in range(int(seconds_in.max()) + 1)]
    by_second = [values for values in by_second if values.size]
    # A server that keeps up has a flat latency; one that does not queues more every second.
    growth = (
        float(np.polyfit(np.arange(len(by_second)), [np.median(v) for v in by_second], 1)[0])
        if len(by_second) > 2
        else 0.0
    )
    return {
        "clients": clients,
        "clients_connected": report["connected"],
        "clients_receiving": sum(1 for client in report["clients"] if client["messages"]),
        "ticks_per_second_offered": ticks_per_second,
        "ticks_per_second_fed": round(fed, 1),
        "frames_per_second_fed": round(frames, 1),
        "ticks_skipped": ticks_skipped,
        "instruments": instruments,
        "seconds": round(elapsed, 2),
        "conflation_ms": conflation_ms,
        "samples": int(samples.size),
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(samples.max()), 1),
        "target_p99_ms": conflation_ms + 50,
        "reference_p50_ms": round(reference[0], 2),
        "reference_p99_ms": round(reference[1], 2),
        "reference": f"channel-layer floor: group_send -> receive() of a small message on one channel, "
        f"{REFERENCE_SENDS} sends",
        "measured_from": "the feed receiving the frame",
        # Where the time goes.
        "messages_published": len(carrying),
        "ticks_per_message": round(float(np.mean([entry.emitted.size for entry in carrying])), 1),
        "messages_missed": missed,
        "drained": report["drained"],
        "conflation_wait_p50_ms": _percentile(waits, 50),
        "conflation_wait_p99_ms": _percentile(waits, 99),
        "group_send_p50_ms": _percentile(sends, 50),
        "group_send_p99_ms": _percentile(sends, 99),
        "first_client_delivery_p50_ms": _percentile(np.asarray(first) * 1000, 50),
        "first_client_delivery_p99_ms": _percentile(np.asarray(first) * 1000, 99),
        "delivery_p50_ms": _percentile(np.asarray(delivery) * 1000, 50),
        "delivery_p99_ms": _percentile(np.asarray(delivery) * 1000, 99),
        "fanout_spread_p50_ms": _percentile(np.asarray(spread) * 1000, 50),
        "fanout_spread_p99_ms": _percentile(np.asarray(spread) * 1000, 99),
        "within_target": bool(p99 <= conflation_ms + 50),
        "p50_growth_ms_per_s": round(growth, 1),
        "keeping_up": abs(growth) < KEEPING_UP_MS_PER_S,
        "p99_ms_by_second": [_percentile(values, 99) for values in by_second],
        "cpu_percent": {
            "daphne": round(cpu[0], 1),
            "feed_process": round(cpu[1], 1),
            "clients_process": round(cpu[2], 1),
            "redis": round(cpu[3], 1),
            "whole_machine": round(cpu[4], 1),
            "cores": os.cpu_count(),
        },
        "client_parsing": "every copy" if report["parse_every_copy"] else "once per distinct message",
        "client_parses": report["parses"],
        "client_parse_ms_per_message": round(report["busy"] / max(1, report["messages"]) * 1000, 2),
        "client_parse_backlog_max": report["backlog_max"],
        "p99_after_client_parse_ms": _percentile(after_parse, 99),
        "foreign_messages": foreign,
        "other_group_members": other_members,
    }


async def channel_layer_floor(layer) -> tuple[float, float]:
    """p50/p99 ms of group_send -> receive() on one bare channel, in this process."""
    channel = await layer.new_channel()
    await layer.group_add(REFERENCE_GROUP, channel)
    samples = []
    try:
        for number in range(REFERENCE_SENDS + 20):
            sent = now()
            await layer.group_send(REFERENCE_GROUP, {"type": "bench.ping", "n": number})
            message = await asyncio.wait_for(layer.receive(channel), timeout=5)
            if message.get("n") != number:
                raise RuntimeError(f"the channel layer returned {message!r} for ping {number}")
            if number >= 20:  # the first sends warm the connections
                samples.append(now() - sent)
    finally:
        await layer.group_discard(REFERENCE_GROUP, channel)
    p50, p99 = np.percentile(np.asarray(samples) * 1000, [50, 99])
    return float(p50), float(p99)


def _percentile(values: np.ndarray, percentile: float) -> float | None:
    return round(float(np.percentile(values, percentile)), 1) if len(values) else None

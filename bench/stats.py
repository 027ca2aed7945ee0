"""Latency summaries shared by every benchmark: one `percentile`."""

from __future__ import annotations

import math
import statistics


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def read_summary(latencies_ms: list[float]) -> dict[str, float]:
    """Post→read latencies: what the driver's own reading adds (see Subscriber)."""
    return {
        "read_p50_ms": statistics.median(latencies_ms) if latencies_ms else math.nan,
        "read_p99_ms": percentile(latencies_ms, 0.99),
    }


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies_ms),
        "p50_ms": statistics.median(latencies_ms) if latencies_ms else math.nan,
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": max(latencies_ms, default=math.nan),
    }

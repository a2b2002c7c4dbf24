"""The ingestor's counters: cheap to bump on the hot path, exported to Prometheus and logs.

Inputs: counter increments from the read loop, acknowledgement latencies from the Kafka
poll thread. Outputs: a private Prometheus registry (``ingest_*_total``,
``ingest_kafka_in_flight``, the ``ingest_receive_to_ack_seconds`` histogram) and the
one-line summary the ingestor logs periodically.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    5.0,
    30.0,
    120.0,
)
COUNTERS = {
    "messages": "Frames received.",
    "tickers": "Ticker frames accepted (stored, unless counted in unstored).",
    "heartbeats": "Heartbeat frames (counted, not stored).",
    "acks": "Subscriptions acknowledgements (logged, not stored).",
    "invalid": "Frames rejected to the dead-letter topic and quarantine.",
    "exchange_errors": "Exchange error messages (also dead-lettered).",
    "gaps": "Messages missing according to sequence_num.",
    "repeats": "Frames whose sequence_num was not new (still forwarded).",
    "reconnects": "Connections lost and re-established.",
    "oversized": "Messages over WS_MAX_MESSAGE_BYTES: refused unread, connection re-opened.",
    "stored": "Records (tickers and dead letters) written to the NDJSON files; only these go to Kafka.",
    "unstored": "Records the NDJSON files could not take (disk full, read-only): not sent to Kafka either.",
    "resent": "Records a previous run stored but Kafka lacked, re-sent on start.",
    "delivered": "Records acknowledged by Kafka (stored or re-sent).",
    "failed": "Records Kafka did not take; re-send them from the NDJSON.",
}


class Stats:
    """Plain counters (cheap on the hot path), exported by a collector at scrape time."""

    # One per COUNTERS entry, set to 0 in __init__ (declared for the type checker; a unit test keeps both equal).
    messages: int
    tickers: int
    heartbeats: int
    acks: int
    invalid: int
    exchange_errors: int
    gaps: int
    repeats: int
    reconnects: int
    oversized: int
    stored: int
    unstored: int
    resent: int
    delivered: int
    failed: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.ack_latency_ns: collections.deque[int] = collections.deque(maxlen=100_000)
        # The latency histogram, kept by hand: prometheus_client's Histogram takes a lock per
        # bucket per observation, too slow at 30k acks/s. Only the poll thread writes here.
        self.ack_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.ack_seconds_sum = 0.0

    def snapshot(self) -> dict[str, int]:
        """Every counter's current value."""
        return {name: getattr(self, name) for name in COUNTERS}

    def latency_ms(self, q: float) -> float | None:
        """Percentile ``q`` of the recent receive-to-ack latencies, in milliseconds."""
        sample = list(self.ack_latency_ns)
        return float(np.percentile(sample, q)) / 1e6 if sample else None


class _Collector:
    """Reads the plain counters at scrape time."""

    def __init__(self, stats: Stats, in_flight: Callable[[], int]) -> None:
        self.stats, self.in_flight = stats, in_flight

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"ingest_{name}", doc, value=getattr(stats, name))
        yield GaugeMetricFamily("ingest_kafka_in_flight", "Records produced, not yet acknowledged.", self.in_flight())
        cumulative, buckets = 0, []
        for bound, count in zip((*map(repr, LATENCY_BUCKETS), "+Inf"), list(stats.ack_buckets), strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "ingest_receive_to_ack_seconds",
            "From reading a frame to Kafka's acknowledgement of its record.",
            buckets=buckets,
            sum_value=stats.ack_seconds_sum,
        )


class Metrics:
    """The counters, the latency histogram and their registry.

    Args:
        in_flight: Returns the number of records produced but not yet acknowledged.
    """

    def __init__(self, in_flight: Callable[[], int]) -> None:
        self.stats = Stats()
        self.in_flight = in_flight
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self.stats, in_flight))

    def delivered(self, latency_ns: int) -> None:
        """Counts one acknowledged record (called from the Kafka poll thread)."""
        stats = self.stats
        stats.delivered += 1
        stats.ack_latency_ns.append(latency_ns)
        seconds = latency_ns / 1e9
        stats.ack_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        stats.ack_seconds_sum += seconds

    def summary(self) -> str:
        """``name=value`` for every counter, in-flight records and recent ack p50/p99."""
        parts = [f"{name}={value}" for name, value in self.stats.snapshot().items()]
        parts.append(f"in_flight={self.in_flight()}")
        for q in (50, 99):
            value = self.stats.latency_ms(q)
            parts.append(f"ack_p{q}_ms={value:.2f}" if value is not None else f"ack_p{q}_ms=na")
        return " ".join(parts)

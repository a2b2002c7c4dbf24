"""The ingestor's counters: cheap to bump on the hot path, exported to Prometheus and logs.

Inputs: counter increments from the read loop, acknowledgement latencies from the Kafka
poll thread. Outputs: a private Prometheus registry (``ingest_*_total``,
``ingest_kafka_in_flight``, the ``ingest_receive_to_ack_seconds`` histogram) and the
one-line summary the ingestor logs periodically.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

COUNTERS = {
    "messages": "Frames received.",
    "tickers": "Ticker frames accepted and stored.",
    "heartbeats": "Heartbeat frames (counted, not stored).",
    "acks": "Subscriptions acknowledgements (logged, not stored).",
    "invalid": "Frames rejected to the dead-letter topic and quarantine.",
    "exchange_errors": "Exchange error messages (also dead-lettered).",
    "gaps": "Messages missing according to sequence_num.",
    "repeats": "Frames whose sequence_num was not new (still forwarded).",
    "reconnects": "Connections lost and re-established.",
    "delivered": "Records acknowledged by Kafka.",
    "failed": "Records Kafka did not take; re-send them from the NDJSON.",
}


class Stats:
    """Plain counters (cheap on the hot path), exported by a collector at scrape time."""

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.ack_latency_ns: collections.deque[int] = collections.deque(maxlen=100_000)

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
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"ingest_{name}", doc, value=getattr(self.stats, name))
        yield GaugeMetricFamily("ingest_kafka_in_flight", "Records produced, not yet acknowledged.", self.in_flight())


class Metrics:
    """The counters, the latency histogram and their registry.

    Args:
        in_flight: Returns the number of records produced but not yet acknowledged.
    """

    def __init__(self, in_flight: Callable[[], int]) -> None:
        self.stats = Stats()
        self.in_flight = in_flight
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "ingest_receive_to_ack_seconds",
            "From reading a frame to Kafka's acknowledgement of its record.",
            buckets=(0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015,
                     0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120),
            registry=self.registry,
        )
        self.registry.register(_Collector(self.stats, in_flight))

    def delivered(self, latency_ns: int) -> None:
        """Counts one acknowledged record (called from the Kafka poll thread)."""
        self.stats.delivered += 1
        self.stats.ack_latency_ns.append(latency_ns)
        self.latency.observe(latency_ns / 1e9)

    def summary(self) -> str:
        """``name=value`` for every counter, in-flight records and recent ack p50/p99."""
        parts = [f"{name}={value}" for name, value in self.stats.snapshot().items()]
        parts.append(f"in_flight={self.in_flight()}")
        for q in (50, 99):
            value = self.stats.latency_ms(q)
            parts.append(f"ack_p{q}_ms={value:.2f}" if value is not None else f"ack_p{q}_ms=na")
        return " ".join(parts)

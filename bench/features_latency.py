"""End-to-end latency: exchange timestamp -> row readable in Kafka ``ticks.features`` and ``ticks.predictions``.

Starts its own Kafka broker (and, with ``--scoring``, the default, an MLflow server and a
champion trained first), runs the real features stream (trigger as fast as possible), and a
producer that emits synthetic ticker frames stamped with the current time at a fixed rate,
wrapped as raw records like the ingestor does. One consumer per topic; latency = consumer
receive time - ``exchange_ts_ns``. Prints p50/p90/p99/max of each topic after a warm-up.

    .venv/bin/python bench/features_latency.py --rate 100 --seconds 600
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

import numpy as np
from bench_args import add_scoring_flag, live_champion
from bench_kafka import consume_latencies, produce_live

from spark_jobs import features_stream
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import KAFKA, running
from volpipe.spark import add_conf_flag, build_spark_session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="ticks per second")
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to produce")
    parser.add_argument("--warmup-seconds", type=float, default=30.0, help="ignored at the start")
    add_conf_flag(parser)
    add_scoring_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("spark_jobs").setLevel(logging.INFO)
    stop = threading.Event()
    with scratch_settings("bench-latency-") as settings, running(settings, KAFKA):
        topics = [settings.kafka_output_topic] + ([settings.kafka_predictions_topic] if args.scoring else [])
        latencies: dict[str, list[tuple[int, int]]] = {topic: [] for topic in topics}
        try:
            spark = build_spark_session(settings, "bench-latency", extra_conf=dict(args.conf))
            with live_champion(settings, spark, enabled=args.scoring) as scoring:
                query = features_stream.start(spark, settings, scoring=scoring)
                consumers = [
                    threading.Thread(target=consume_latencies, args=(settings, topic, stop, out), daemon=True)
                    for topic, out in latencies.items()
                ]
                for consumer in consumers:
                    consumer.start()
                began_ns = time.time_ns()
                sent = produce_live(settings, args.rate, args.seconds, stop)
                time.sleep(10)  # let the last batches through
                stop.set()
                for consumer in consumers:
                    consumer.join(10)
                phases = [p["durationMs"] for p in query.recentProgress if p["numInputRows"]]
                query.stop()
                spark.stop()
        finally:
            stop.set()
    cutoff = began_ns + int(args.warmup_seconds * 1e9)
    code = 0
    for topic, values in latencies.items():
        lat_ms = np.array([lat for ts, lat in values if ts >= cutoff]) / 1e6
        if not lat_ms.size:  # a cold stream on a loaded machine can miss a short run entirely
            print(
                f"latency exchange->{topic}: no row after the first {args.warmup_seconds:.0f} s "
                f"({len(values)} in all, {sent} ticks sent): run longer",
                file=sys.stderr,
            )
            code = 1
            continue
        p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
        print(
            f"latency exchange->{topic} over {lat_ms.size} rows ({sent} ticks sent at {args.rate}/s for "
            f"{args.seconds:.0f} s, first {args.warmup_seconds:.0f} s ignored): p50={p50:.0f} ms p90={p90:.0f} ms "
            f"p99={p99:.0f} ms max={lat_ms.max():.0f} ms"
        )
    if phases:
        durations = [phase["triggerExecution"] for phase in phases]
        print(
            f"micro-batch duration (last {len(durations)} with data): median={np.median(durations):.0f} ms "
            f"max={max(durations)} ms"
        )
        # Spark's own split of a batch (StreamingQueryProgress.durationMs): where a cycle goes.
        split = {key: np.median([phase.get(key, 0) for phase in phases]) for key in sorted(phases[0])}
        print("micro-batch phases, median ms: " + " ".join(f"{key}={value:.0f}" for key, value in split.items()))
    return code


if __name__ == "__main__":
    sys.exit(main())

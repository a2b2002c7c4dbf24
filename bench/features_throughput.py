"""Catch-up throughput of the features stream: a backlog of N ticks in Kafka through both sinks.

With ``--scoring`` (the default) the stream also scores every feature row with a champion
trained first (MLflow started for the run), as it does in production; ``--no-scoring`` gives
the features-only figure to compare with.

Starts its own Kafka broker (under a temp dir, free ports) unless --bootstrap-servers is given,
produces N synthetic raw records, then runs the real query (read -> transform -> foreachBatch
to Delta ticks/features/quarantine and Kafka ticks.features) until the backlog is consumed.
Prints ticks/s and the per-batch durations Spark reports.

    .venv/bin/python bench/features_throughput.py --ticks 1000000
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from datetime import datetime

from bench_args import add_scoring_flag, live_champion, synthetic_data_parser
from bench_kafka import produce_backlog

from spark_jobs import features_stream
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import KAFKA, running
from volpipe.ops.services.kafka import create_topics
from volpipe.spark import add_conf_flag, build_spark_session
from volpipe.tables import PREDICTIONS_LIVE, TICKS


def main(argv: list[str] | None = None) -> int:
    parser = synthetic_data_parser(__doc__)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=500_000)
    parser.add_argument("--bootstrap-servers", help="use this broker instead of starting one")
    add_conf_flag(parser)
    add_scoring_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("spark_jobs").setLevel(logging.INFO)
    env = {"KAFKA_BOOTSTRAP_SERVERS": args.bootstrap_servers} if args.bootstrap_servers else {}
    with scratch_settings("bench-features-", **env) as scratch, contextlib.ExitStack() as stack:
        settings = dataclasses.replace(scratch, stream_max_offsets_per_trigger=args.max_offsets_per_trigger)
        if args.bootstrap_servers is None:
            stack.enter_context(running(settings, KAFKA))
        create_topics(settings)
        seconds = produce_backlog(settings, args.ticks, args.products)
        print(f"produced {args.ticks} records in {seconds:.1f} s")
        spark = build_spark_session(settings, "bench-features", extra_conf=dict(args.conf))
        scoring = stack.enter_context(live_champion(settings, spark, enabled=args.scoring))
        began, began_at = time.perf_counter(), time.time()
        query = features_stream.start(spark, settings, scoring=scoring)
        started = time.perf_counter() - began
        query.processAllAvailable()
        elapsed = time.perf_counter() - began
        progress = query.recentProgress
        query.stop()
        rows = spark.read.format("delta").load(str(settings.delta_table(TICKS))).count()
        first_trigger = datetime.fromisoformat(progress[0]["timestamp"]).timestamp() - began_at
        print(f"query started in {started:.1f} s, first trigger at {first_trigger:.1f} s")
        for p in progress:
            if p["numInputRows"]:
                print(f"batch {p['batchId']}: Kafka offsets {p['sources'][0]['startOffset']} -> "
                      f"{p['sources'][0]['endOffset']}")
                d = p["durationMs"]
                print(f"batch {p['batchId']}: durations {d}")
                print(f"batch {p['batchId']}: rows={p['numInputRows']} total={d.get('triggerExecution')}ms "
                      f"addBatch={d.get('addBatch')}ms rows/s={p['processedRowsPerSecond']:.0f}")
        scored = (spark.read.format("delta").load(str(settings.delta_table(PREDICTIONS_LIVE))).count()
                  if args.scoring else 0)
        print(f"catch-up: {rows} ticks in {elapsed:.1f} s = {rows / elapsed:,.0f} ticks/s "
              f"(query start to backlog consumed, both sinks, {settings.spark_master}, "
              f"scoring {'on: ' + str(scored) + ' predictions' if args.scoring else 'off'})")
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

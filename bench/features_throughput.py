"""Catch-up throughput of the features stream: a backlog of N ticks in Kafka through both sinks.

With ``--scoring`` (the default) the stream also scores every feature row with a champion
trained first (MLflow started for the run), as it does in production; ``--no-scoring`` gives
the features-only figure to compare with.

Starts its own Kafka broker (under a temp dir, free ports) unless --bootstrap-servers is given,
produces N synthetic raw records, then runs the real query (read -> transform -> foreachBatch
to Delta ticks/features/quarantine and Kafka ticks.features) until the backlog is consumed.
Prints ticks/s and the per-batch durations Spark reports.

    .venv/bin/python bench/features_throughput.py --ticks 1000000
    .venv/bin/python bench/features_throughput.py --ticks 1000000 --compare-scoring 2   # scoring on/off ratio
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import re
import statistics
import subprocess
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
    parser.add_argument("--input-topic", help="read this topic, which already holds the backlog (no produce)")
    parser.add_argument(
        "--compare-scoring",
        type=int,
        metavar="ROUNDS",
        default=0,
        help="run ROUNDS pairs of fresh jobs, without and with scoring, on one backlog; print the ratio",
    )
    add_conf_flag(parser)
    add_scoring_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("spark_jobs").setLevel(logging.INFO)
    if args.compare_scoring:
        return compare_scoring(args, argv or sys.argv[1:])
    env = {"KAFKA_BOOTSTRAP_SERVERS": args.bootstrap_servers} if args.bootstrap_servers else {}
    if args.input_topic:
        env["KAFKA_INPUT_TOPIC"] = args.input_topic
    with scratch_settings("bench-features-", **env) as scratch, contextlib.ExitStack() as stack:
        settings = dataclasses.replace(scratch, stream_max_offsets_per_trigger=args.max_offsets_per_trigger)
        if args.bootstrap_servers is None:
            stack.enter_context(running(settings, KAFKA))
        create_topics(settings)
        if not args.input_topic:
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
                print(
                    f"batch {p['batchId']}: Kafka offsets {p['sources'][0]['startOffset']} -> "
                    f"{p['sources'][0]['endOffset']}"
                )
                d = p["durationMs"]
                print(f"batch {p['batchId']}: durations {d}")
                print(
                    f"batch {p['batchId']}: rows={p['numInputRows']} total={d.get('triggerExecution')}ms "
                    f"addBatch={d.get('addBatch')}ms rows/s={p['processedRowsPerSecond']:.0f}"
                )
        scored = (
            spark.read.format("delta").load(str(settings.delta_table(PREDICTIONS_LIVE))).count() if args.scoring else 0
        )
        print(
            f"catch-up: {rows} ticks in {elapsed:.1f} s = {rows / elapsed:,.0f} ticks/s "
            f"(query start to backlog consumed, both sinks, {settings.spark_master}, "
            f"scoring {'on: ' + str(scored) + ' predictions' if args.scoring else 'off'})"
        )
        spark.stop()
    return 0


def compare_scoring(args: argparse.Namespace, argv: list[str]) -> int:
    """One broker and backlog; then each job in its own process (a cold JVM, as in production),
    alternately without and with scoring, so that both see the same machine state. The order
    flips every round (off-on, on-off, ...): a machine that speeds up or slows down over the
    run then favours neither side."""
    rate = re.compile(r"^catch-up: .* = ([\d,]+) ticks/s")
    passed = _without(argv, "--compare-scoring")
    results: dict[bool, list[float]] = {False: [], True: []}
    with scratch_settings("bench-features-compare-") as settings, running(settings, KAFKA):
        create_topics(settings)
        seconds = produce_backlog(settings, args.ticks, args.products)
        print(f"produced {args.ticks} records in {seconds:.1f} s", flush=True)
        for round_ in range(args.compare_scoring):
            for scoring in (False, True) if round_ % 2 == 0 else (True, False):
                command = [
                    sys.executable,
                    __file__,
                    *passed,
                    "--bootstrap-servers",
                    settings.kafka_bootstrap_servers,
                    "--input-topic",
                    settings.kafka_input_topic,
                    "--scoring" if scoring else "--no-scoring",
                ]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                found = next(float(m.group(1).replace(",", "")) for line in out.splitlines() if (m := rate.match(line)))
                results[scoring].append(found)
                print(f"round {round_ + 1} scoring {'on ' if scoring else 'off'}: {found:,.0f} ticks/s", flush=True)
    ratios = [on / off for off, on in zip(results[False], results[True], strict=True)]
    for off, on, ratio in zip(results[False], results[True], ratios, strict=True):
        print(f"pair: off {off:,.0f}, on {on:,.0f}: on/off = {ratio:.3f}")
    for scoring, rates in results.items():
        print(
            f"catch-up scoring {'on ' if scoring else 'off'}: median {statistics.median(rates):,.0f} ticks/s over "
            f"{len(rates)} runs ({min(rates):,.0f}-{max(rates):,.0f})"
        )
    print(
        f"catch-up with scoring / without, {args.compare_scoring} pairs: "
        f"{sum(results[True]) / sum(results[False]):.3f} of the summed rates, "
        f"pairs {min(ratios):.3f}-{max(ratios):.3f} "
        f"(off {min(results[False]):,.0f}-{max(results[False]):,.0f}, "
        f"on {min(results[True]):,.0f}-{max(results[True]):,.0f} ticks/s)"
    )
    return 0


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag N`` or ``--flag=N``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())

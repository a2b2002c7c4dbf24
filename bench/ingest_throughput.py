"""Benchmark: the local exchange at full speed -> the ingestor -> Kafka + NDJSON, with zero loss.

Starts a private Kafka broker (free ports, temp dir), then the local exchange and the
ingestor as subprocesses, exactly as a user runs them (``volpipe.ops.harness``):

1. throughput: the exchange replays ``--ticks`` pre-generated synthetic ticks (two
   products) as fast as the ingestor reads (after a warm-up of the fresh broker with the
   same data on another topic). Rate = ticks / (last Kafka ack - first receipt). It only
   counts when the exchange's sent count, the NDJSON lines, the Kafka records and the
   ingestor's acknowledged deliveries all equal ``--ticks``.
2. latency: a fresh ingestor fed ``--latency-rate`` msg/s by the synthetic market;
   receive-to-Kafka-ack p50/p99 over ``--latency-seconds`` after a warm-up, from the
   ingestor's histogram (bucket bounds interpolated) and its exact recent sample.

    .venv/bin/python bench/ingest_throughput.py --ticks 300000
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

import orjson

from volpipe.config import Settings, parse_products
from volpipe.market import synthetic_raw_records
from volpipe.ops.harness import (
    ExchangeProcess,
    IngestorProcess,
    ingestor_env,
    ndjson_records,
    topic_records,
    wait_until,
)
from volpipe.ops.sandbox import scratch_settings
from volpipe.ops.services import KAFKA, running
from volpipe.ops.services.process import free_port

PRODUCTS = "BTC-USD,ETH-USD"


def scrape(port: int) -> dict[str, float]:
    """The ingestor's Prometheus metrics as {name{labels}: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        lines = answer.read().decode().splitlines()
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if line and not line.startswith("#"))}


def histogram_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """Quantile ``q`` (0-1) of the ack-latency observations between two scrapes, in ms."""
    name = "ingest_receive_to_ack_seconds_bucket"
    buckets = sorted(
        (float(key.split('le="')[1].rstrip('"}')), after[key] - before.get(key, 0.0))
        for key in after
        if key.startswith(name)
    )
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            share = (rank - below) / (count - below) if count > below else 1.0
            return (lower + (bound - lower) * share) * 1000
        lower, below = bound, count
    return float("inf")


def warm_up(settings: Settings, tape: Path) -> None:
    """Pushes the tape once through a bare producer into the (unused) output topic, so the
    fresh broker's JIT and log segments are warm, like a broker that has been running."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    with open(tape, "rb") as lines:
        for line in lines:
            producer.produce(settings.kafka_output_topic, line)
            producer.poll(0)
    producer.flush(120)


def throughput(settings: Settings, work: Path, ticks: int) -> None:
    tape = work / "tape.ndjson"
    with open(tape, "wb") as out:
        for _, value in synthetic_raw_records(ticks, parse_products(PRODUCTS), seed=11):
            out.write(value + b"\n")
    warm_up(settings, tape)
    exchange = ExchangeProcess("--source", "replay", "--replay-file", str(tape), "--speed", "0")
    metrics_port = free_port()
    data = settings.data_dir / "throughput"
    env = ingestor_env(
        settings,
        exchange.url,
        PIPELINE_DATA_DIR=str(data),
        METRICS_PORT=str(metrics_port),
        METRICS_LOG_SECONDS="5",
        LOG_LEVEL="WARNING",
    )
    ingestor = IngestorProcess(env, work / "throughput.log")
    try:
        wait_until(lambda: _delivered(metrics_port) >= ticks, 900, f"{ticks} deliveries", interval=0.05)
        done_ns = time.time_ns()
        final = ingestor.stop()
        served = exchange.stats()["tickers_sent"]
    finally:
        exchange.stop()
    lines = ndjson_records(data / "raw")
    in_kafka = len(topic_records(settings, settings.kafka_input_topic, ticks, timeout=120))
    first_ns, last_ns = orjson.loads(lines[0])["recv_ns"], orjson.loads(lines[-1])["recv_ns"]
    seconds = (done_ns - first_ns) / 1e9
    lossless = served == len(lines) == in_kafka == final["tickers"] == final["delivered"] == ticks
    print(
        f"throughput: ticks={ticks} served={served} ndjson={len(lines)} kafka={in_kafka} "
        f"delivered={final['delivered']} failed={final['failed']} gaps={final['gaps']} seconds={seconds:.2f} "
        f"rate_msg_s={ticks / seconds:,.0f} (receive-only rate {ticks / ((last_ns - first_ns) / 1e9):,.0f}) "
        f"zero_loss={lossless and final['failed'] == 0}",
        flush=True,
    )


def _delivered(port: int) -> float:
    try:
        return scrape(port).get("ingest_delivered_total", 0.0)
    except OSError:
        return 0.0


def latency(settings: Settings, work: Path, rate: float, seconds: float, warmup: float) -> None:
    exchange = ExchangeProcess("--speed", "1", "--rate", str(rate), "--products", PRODUCTS)
    metrics_port = free_port()
    env = ingestor_env(
        settings,
        exchange.url,
        PIPELINE_DATA_DIR=str(settings.data_dir / "latency"),
        METRICS_PORT=str(metrics_port),
        LOG_LEVEL="WARNING",
    )
    ingestor = IngestorProcess(env, work / "latency.log")
    try:
        wait_until(lambda: _delivered(metrics_port) > 0, 60, "first delivery")
        time.sleep(warmup)
        before = scrape(metrics_port)
        time.sleep(seconds)
        after = scrape(metrics_port)
        final = ingestor.stop()
    finally:
        exchange.stop()
    count = after["ingest_receive_to_ack_seconds_count"] - before["ingest_receive_to_ack_seconds_count"]
    print(
        f"latency: target_rate={rate:g}/s measured_rate={count / seconds:.0f}/s acks={count:.0f} "
        f"p50_ms~{histogram_quantile(before, after, 0.5):.2f} p99_ms~{histogram_quantile(before, after, 0.99):.2f} "
        f"(histogram) | whole run incl. warm-up: p50_ms={final['ack_p50_ms']:.2f} p99_ms={final['ack_p99_ms']:.2f} "
        f"max_ms={final['ack_max_ms']:.2f} failed={final['failed']}",
        flush=True,
    )


def baseline(settings: Settings, rate: float, seconds: float) -> None:
    """A bare producer (same config, no WebSocket, no files) at ``rate``: what the broker and
    this machine's load allow, to read the ingestor's latency against."""
    from ingest.sinks import KafkaSink, Record

    latencies: list[int] = []
    sink = KafkaSink(settings, lambda recv_ns: latencies.append(time.time_ns() - recv_ns), lambda *failure: None)
    value = next(synthetic_raw_records(1))[1]
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        now = time.time_ns()
        sink.produce(Record(False, b"BTC-USD", value, seq, now, now))
        seq += 1
        time.sleep(1 / rate)
    sink.close(10)
    sample = sorted(latencies[int(rate) :])  # skip the first second (producer start)

    def pick(q: float) -> float:
        return sample[min(len(sample) - 1, int(q * len(sample)))] / 1e6

    print(
        f"baseline (bare producer, same broker and config): rate={rate:g}/s acks={len(sample)} "
        f"p50_ms={pick(0.5):.2f} p99_ms={pick(0.99):.2f} max_ms={pick(1.0):.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Runs both phases against one private broker and prints one line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=300_000, help="ticks of the throughput phase (300000)")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="msg/s of the latency phase (100)")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="measured part of the latency phase")
    parser.add_argument("--warmup-seconds", type=float, default=5.0, help="unmeasured start of the latency phase")
    parser.add_argument("--skip-throughput", action="store_true", help="run the latency phase only")
    parser.add_argument("--skip-latency", action="store_true", help="run the throughput phase only")
    args = parser.parse_args(argv)
    with scratch_settings("ingest-bench-", PRODUCT_IDS=PRODUCTS) as settings, running(settings, KAFKA):
        if not args.skip_throughput:
            throughput(settings, settings.data_dir, args.ticks)
        if not args.skip_latency:
            latency(settings, settings.data_dir, args.latency_rate, args.latency_seconds, args.warmup_seconds)
            baseline(settings, args.latency_rate, args.latency_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

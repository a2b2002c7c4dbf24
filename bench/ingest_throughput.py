"""Benchmark: the local exchange at full speed -> the ingestor -> Kafka + NDJSON, no loss.

Starts a private Kafka broker (free ports, temp dir), the local exchange and the ingestor
as subprocesses, exactly as a user would run them, then:

1. throughput: the exchange serves ``--ticks`` synthetic ticks as fast as the ingestor
   reads; the rate is ticks / (last Kafka ack - first receipt), and it counts only if
   the exchange's sent count, the NDJSON lines and the Kafka records all equal ``--ticks``;
2. latency: a fresh ingestor at ``--latency-rate`` msg/s for ``--latency-seconds``;
   receive-to-Kafka-ack p50/p99 from the ingestor's final counts.

    .venv/bin/python bench/ingest_throughput.py --ticks 300000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.services import kafka
from volpipe.services.process import free_port, port_open


def broker_settings(data_dir: Path) -> Settings:
    """Settings of a private broker under ``data_dir``."""
    return Settings.from_env(
        {
            "PIPELINE_DATA_DIR": str(data_dir),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "KAFKA_CONTROLLER_PORT": str(free_port()),
        }
    )


def start_exchange(port: int, *args: str) -> subprocess.Popen:
    """The local exchange as a subprocess; returns once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.exchange", "--port", str(port), *args],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("exchange did not start")
        time.sleep(0.1)
    return proc


def start_ingestor(settings: Settings, url: str, data_dir: Path, metrics_port: int) -> subprocess.Popen:
    """The ingestor as a subprocess (``python -m ingest``)."""
    env = {
        **os.environ,
        "PIPELINE_DATA_DIR": str(data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "COINBASE_WS_URL": url,
        "METRICS_PORT": str(metrics_port),
        "METRICS_LOG_SECONDS": "5",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ingest"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=sys.stderr
    )


def stop_ingestor(proc: subprocess.Popen) -> dict:
    """SIGTERM, then the final counts it prints."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"ingestor exited with {proc.returncode}")
    return orjson.loads(out.strip().splitlines()[-1])["final"]


def metric(port: int, name: str) -> float:
    """One value from the ingestor's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def topic_count(settings: Settings, topic: str) -> int:
    """Records in ``topic`` (sum of partition high watermarks; the topic is fresh)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"bench-{uuid.uuid4()}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def ndjson_lines(data_dir: Path) -> list[bytes]:
    """Every raw record line written by the ingestor."""
    return [line for path in sorted((data_dir / "raw").glob("*.ndjson")) for line in path.read_bytes().splitlines()]


def throughput(settings: Settings, work: Path, ticks: int) -> None:
    port, metrics_port = free_port(), free_port()
    exchange = start_exchange(port, "--speed", "0", "--max-ticks", str(ticks), "--products", "BTC-USD,ETH-USD")
    data_dir = work / "throughput"
    ingestor = start_ingestor(settings, f"ws://127.0.0.1:{port}", data_dir, metrics_port)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                if metric(metrics_port, "ingest_delivered_total") >= ticks:
                    break
            except OSError:
                continue
        done_ns = time.time_ns()
        final = stop_ingestor(ingestor)
    finally:
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(30)
    lines = ndjson_lines(data_dir)
    first_ns = orjson.loads(lines[0])["recv_ns"]
    in_kafka = topic_count(settings, settings.kafka_input_topic)
    seconds = (done_ns - first_ns) / 1e9
    lossless = len(lines) == in_kafka == final["tickers"] == final["delivered"] == ticks and final["failed"] == 0
    print(f"throughput: ticks={ticks} ndjson={len(lines)} kafka={in_kafka} delivered={final['delivered']} "
          f"failed={final['failed']} gaps={final['gaps']} seconds={seconds:.2f} "
          f"rate_msg_s={ticks / seconds:,.0f} zero_loss={lossless}")


def latency(settings: Settings, work: Path, rate: float, seconds: float) -> None:
    port = free_port()
    exchange = start_exchange(port, "--speed", "1", "--rate", str(rate))
    ingestor = start_ingestor(settings, f"ws://127.0.0.1:{port}", work / "latency", 0)
    try:
        time.sleep(seconds)
        final = stop_ingestor(ingestor)
    finally:
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(30)
    print(f"latency: rate={rate:g}/s seconds={seconds:g} tickers={final['tickers']} delivered={final['delivered']} "
          f"ack_p50_ms={final['ack_p50_ms']:.2f} ack_p99_ms={final['ack_p99_ms']:.2f} ack_max_ms={final['ack_max_ms']:.2f}")


def main(argv: list[str] | None = None) -> int:
    """Runs both phases against one private broker and prints one line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=300_000, help="ticks of the throughput phase")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="msg/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="length of the latency phase")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        settings = broker_settings(work / "broker")
        kafka.start(settings)
        try:
            if not args.skip_throughput:
                throughput(settings, work, args.ticks)
            latency(settings, work, args.latency_rate, args.latency_seconds)
        finally:
            kafka.stop(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

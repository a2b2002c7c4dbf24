"""The stream SIGKILLed (whole process group) three times in one run, at chosen moments of a
micro-batch, and restarted each time (issue 14, faults 1 and 8).

Delta ends equal to the reference bit for bit, with no duplicate and no gap. Kafka
``ticks.features`` and ``ticks.predictions`` hold repeats, at most one batch per kill, and
``python -m volpipe.consume`` reads each row from them exactly once.

Each moment is caught deterministically: the test polls the checkpoint (``offsets/`` and
``commits/``), each table's ``_delta_log`` and the topic's end offsets; when the wanted moment
shows, it freezes the job's process group (SIGSTOP), checks on disk that the moment really
holds, and SIGKILLs it; if the job moved on meanwhile, it lets it go on (SIGCONT) to the next
batch.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable

from tests.spark.pipeline_helpers import (
    consume,
    pipeline_settings,
    produce,
    reference_features,
    register_versions,
    same_bits,
)
from volpipe.config import PROJECT_ROOT
from volpipe.features import FEATURE_COLUMNS
from volpipe.market import synthetic_raw_records
from volpipe.ops.services.live import program_env, stream_command
from volpipe.tables import ROW_KEYS

pytestmark = [pytest.mark.integration, pytest.mark.spark]

RECORDS = 2000
PER_TRIGGER = 100  # Kafka records per micro-batch; one ticker each, so at most 100 feature rows a batch
# Every batch after the first writes these (each has rows: the window is ready after a few ticks).
TABLES = ("ticks", "features", "predictions_live")


def _last(folder: Path) -> int:
    return max((int(p.name) for p in folder.glob("[0-9]*") if p.name.isdigit()), default=-1)


def _version(table_dir: Path) -> int:
    return max((int(p.name[:20]) for p in (table_dir / "_delta_log").glob("[0-9]*.json")), default=-1)


def _newest_batch(table_dir: Path) -> int:
    """The batch id in the newest commit's marker (``<app id> batch <id>``); -1 without one."""
    version = _version(table_dir)
    if version < 0:
        return -1
    for line in (table_dir / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
        info = json.loads(line).get("commitInfo")
        if info and info.get("userMetadata"):
            return int(info["userMetadata"].rsplit(" ", 1)[1])
    return -1


class Job:
    """One run of the stream as `make stream` starts it, and what it has written so far."""

    def __init__(self, settings, log_path: Path) -> None:
        self.settings = settings
        checkpoint = settings.checkpoint("features")
        self.offsets, self.commits = checkpoint / "offsets", checkpoint / "commits"
        self.tables = {name: settings.delta_table(name) for name in TABLES}
        self.log_path = log_path
        self.planned_before = _last(self.offsets)  # a batch planned by an earlier run is not a target
        env = {**os.environ, **program_env(settings), "SPARK_DRIVER_MEMORY": "1g"}
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                stream_command(settings),
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._consumer = Consumer({**settings.kafka_client_config(), "group.id": "fault-probe"})
        topic = settings.kafka_output_topic
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._partitions = [TopicPartition(topic, p) for p in partitions]

    def published(self) -> int:
        """Messages in ``ticks.features`` now."""
        return sum(self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in self._partitions)

    def snapshot(self) -> dict:
        """The batch in flight and how far it got: read while the job is frozen or dead."""
        return {
            "planned": _last(self.offsets),
            "committed": _last(self.commits),
            "batches": {name: _newest_batch(path) for name, path in self.tables.items()},
            "published": self.published(),
        }

    def kill_when(self, moment: str, wanted, timeout: float = 240.0) -> dict:
        """Polls until ``wanted(batch, base, versions)`` holds for a batch this run planned, then
        freezes the job, checks the moment on disk and kills it. Returns the snapshot at the kill."""
        base: dict = {}  # per batch in flight: table versions and published count when first seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            batch = _last(self.offsets)
            if batch > self.planned_before and _last(self.commits) < batch:
                versions = {name: _version(path) for name, path in self.tables.items()}
                if batch not in base:
                    base[batch] = (versions, self.published())
                elif wanted(batch, base[batch], versions, self):
                    os.killpg(self.proc.pid, signal.SIGSTOP)
                    state = self.snapshot()
                    if _moment(state) == moment:
                        return self.kill(state)
                    os.killpg(self.proc.pid, signal.SIGCONT)  # it moved on: try the next batch
            time.sleep(0.01)
        pytest.fail(f"moment {moment!r} not caught (exit={self.proc.poll()}); log:\n{self.tail()}")

    def kill(self, state: dict) -> dict:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.close()
        return state

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._consumer.close()

    def tail(self) -> str:
        return self.log_path.read_text()[-4000:]


def _moment(state: dict) -> str:
    """Where a batch stood: what its Delta tables and the commit log say."""
    batch = state["planned"]
    if state["committed"] >= batch:
        return "between batches"
    done = [name for name, last in state["batches"].items() if last >= batch]
    if not done:
        return "computing or publishing, before any Delta commit"
    if len(done) < len(TABLES):
        return "between the Delta commits"
    return "after the Delta commits, before the commit log"


def _publishing(batch, base, versions, job) -> bool:
    """Rows of the batch are in Kafka, none in Delta yet."""
    return versions == base[0] and job.published() > base[1]


def _some_tables(batch, base, versions, job) -> bool:
    moved = [name for name in TABLES if versions[name] > base[0][name]]
    return 0 < len(moved) < len(TABLES)


def _all_tables(batch, base, versions, job) -> bool:
    return all(versions[name] > base[0][name] for name in TABLES)


def _delta(settings, table: str) -> pd.DataFrame:
    return DeltaTable(str(settings.delta_table(table))).to_pandas()


def _count(settings, table: str) -> int:
    path = settings.delta_table(table)
    return DeltaTable(str(path)).to_pyarrow_dataset().count_rows() if (path / "_delta_log").exists() else 0


def _once(settings, topic: str, *args: str) -> tuple[list[dict], str]:
    """``python -m volpipe.consume`` over ``topic``: its rows and its log."""
    done = subprocess.run(
        [sys.executable, "-m", "volpipe.consume", "--topic", topic, "--timeout", "5", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **program_env(settings)},
        capture_output=True,
        timeout=120,
        check=True,
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()], done.stderr.decode()


def _reruns(rows: list[dict]) -> dict[str, list[int]]:
    """Per product, the repeats of each re-run: a re-run starts where a key is not above the one before it."""
    last: dict[str, tuple] = {}
    highest: dict[str, tuple] = {}
    runs: dict[str, list[int]] = collections.defaultdict(list)
    for row in rows:
        product, key = row["product_id"], (row["ingest_seq"], row["ticker_idx"])
        if product in last and key <= last[product]:
            runs[product].append(0)
        if product in highest and key <= highest[product]:
            runs[product][-1] += 1
        last[product], highest[product] = key, max(key, highest.get(product, key))
    return dict(runs)


def _keys(frame: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, frame[list(ROW_KEYS)].itertuples(index=False)))


def test_three_sigkills_at_chosen_moments_leave_delta_exact_and_kafka_repeats_bounded(
    kafka_broker, mlflow_server, tmp_path
):
    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, tmp_path, window=5),
        mlflow_tracking_uri=mlflow_server.mlflow_tracking_uri,
        model_name="faults-live",
        stream_max_offsets_per_trigger=PER_TRIGGER,
    )
    (version,) = register_versions(settings, 1)  # a champion: every feature row is scored live
    records = list(synthetic_raw_records(RECORDS, ("BTC-USD", "ETH-USD"), seed=14))
    produce(settings, records)
    log_path = tmp_path / "stream.log"
    began = time.monotonic()

    kills = []
    for moment, wanted in [
        ("computing or publishing, before any Delta commit", _publishing),
        ("between the Delta commits", _some_tables),
        ("after the Delta commits, before the commit log", _all_tables),
    ]:
        job = Job(settings, log_path)
        try:
            kills.append(job.kill_when(moment, wanted))
        finally:
            job.close()
        print(f"\nkilled in batch {kills[-1]['planned']} ({moment}) at {time.monotonic() - began:.0f} s", flush=True)
    assert kills[-1]["committed"] < RECORDS // PER_TRIGGER - 1, "the stream was done before the last kill"

    expected = reference_features(records, window=5)
    # The last run catches up in big batches: repeats come from killed batches only.
    job = Job(dataclasses.replace(settings, stream_max_offsets_per_trigger=RECORDS), log_path)
    try:
        deadline = time.monotonic() + 300
        while _count(settings, "ticks") < RECORDS or _count(settings, "features") < len(expected):
            assert time.monotonic() < deadline and job.proc.poll() is None, job.tail()
            time.sleep(1)
        job.proc.send_signal(signal.SIGTERM)  # the polite stop (to spark-submit's JVM)
        assert job.proc.wait(120) == 0, job.tail()
    finally:
        job.close()
    print(f"caught up at {time.monotonic() - began:.0f} s", flush=True)

    # Delta: every tick and feature row once, equal to the reference bit for bit.
    ticks = _delta(settings, "ticks")
    assert sorted(ticks["ingest_seq"]) == list(range(RECORDS))
    features = _delta(settings, "features").sort_values(["product_id", "ingest_seq"]).reset_index(drop=True)
    assert _keys(features) == _keys(expected) and features["ingest_seq"].tolist() == expected["ingest_seq"].tolist()
    for column in FEATURE_COLUMNS:
        assert same_bits(features[column].astype(float), expected[column].astype(float)), column
    predictions = _delta(settings, "predictions_live")
    assert _keys(predictions) == _keys(features) and set(predictions["model_version"]) == {version}
    for name in TABLES:  # one append per table and batch, the killed batches included
        markers = [
            int(e["userMetadata"].rsplit(" ", 1)[1])
            for e in DeltaTable(str(settings.delta_table(name))).history()
            if e.get("userMetadata")
        ]
        assert len(markers) == len(set(markers)) and all(k["planned"] in markers for k in kills), name

    # Kafka: every row at least once; the repeats are re-runs of the killed batches, at most one batch a kill.
    published = {}
    for topic, table in [(settings.kafka_output_topic, features), (settings.kafka_predictions_topic, predictions)]:
        counter = Consumer({**settings.kafka_client_config(), "group.id": "fault-count"})
        partitions = counter.list_topics(topic, timeout=10).topics[topic].partitions
        total = sum(counter.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in partitions)
        counter.close()
        rows = consume(settings, topic, total)
        assert len(rows) == total
        distinct = {tuple(row[k] for k in ROW_KEYS) for row in rows}
        assert sorted(distinct) == _keys(table), topic
        repeats = total - len(distinct)
        assert 0 < repeats <= len(kills) * PER_TRIGGER, (topic, repeats)
        # Per product, keys only go down where a re-run starts over: at most once a kill.
        reruns = _reruns(rows)
        assert all(len(runs) <= len(kills) for runs in reruns.values()) and sum(map(sum, reruns.values())) == repeats
        published[topic] = (total, len(distinct), repeats, reruns)

        # The shipped consumer reads each row exactly once, with the stream's values.
        once, log = _once(settings, topic)
        assert _keys(pd.DataFrame(once)) == _keys(table) and len(once) == len(table), topic
        assert f"repeats_dropped={repeats}" in log, log
        assert len(_once(settings, topic, "--max-messages", "3")[0]) == 3
        ordered = pd.DataFrame(once).sort_values(list(ROW_KEYS)).reset_index(drop=True)
        stored = table.sort_values(list(ROW_KEYS)).reset_index(drop=True)
        for column in FEATURE_COLUMNS if table is features else ("probability",):
            assert same_bits(ordered[column].astype(float), stored[column].astype(float)), (topic, column)

    print(f"\nfault 8 (batches of at most {PER_TRIGGER} records, {len(kills)} kills):")
    written = dict(re.findall(r"batch written batch_id=(\d+) ticks=\d+ features=(\d+)", log_path.read_text()))
    for kill in kills:
        print(
            f"  killed in batch {kill['planned']} ({written[str(kill['planned'])]} feature rows): {_moment(kill)}; "
            f"newest batch per table {kill['batches']}"
        )
    for topic, (total, distinct, repeats, reruns) in published.items():
        print(f"  {topic}: published {total}, distinct keys {distinct}, repeats {repeats}, per re-run {reruns}")

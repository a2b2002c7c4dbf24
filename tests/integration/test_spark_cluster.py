"""The jobs on a real Spark standalone cluster (a master and one worker from the pyspark package),
submitted with the same spark-submit commands as in local mode, only SPARK_MASTER changed: the
stream over Kafka and the replay over NDJSON give the kernel's bits. (`compare`, a batch job like
the replay, ran on the cluster when this test was written; it is left out to keep CI short.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
from collections.abc import Iterator

import pandas as pd
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tests.spark.pipeline_helpers import pipeline_settings, produce, reference_features, same_bits, write_raw_files
from volpipe.config import PROJECT_ROOT, Settings
from volpipe.dates import DateRange
from volpipe.features import FEATURE_COLUMNS
from volpipe.market import DEFAULT_START_NS, synthetic_raw_records
from volpipe.ops.harness import wait_until
from volpipe.ops.services.live import program_env
from volpipe.ops.spark_cluster import StandaloneCluster, running_cluster
from volpipe.spark import submit_command

pytestmark = [pytest.mark.integration, pytest.mark.spark]

DAY2 = dt.date(2026, 1, 1)


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """A master and one worker (1 core, 1 GB: the machine is shared), on free loopback ports."""
    with running_cluster(tmp_path_factory.mktemp("spark-cluster"), cores=1, memory="1g") as cluster:
        yield cluster


def _env(settings: Settings) -> dict[str, str]:
    # The driver listens on and advertises the loopback, where the worker's executor reaches it.
    return {**os.environ, **program_env(settings), "SPARK_LOCAL_IP": "127.0.0.1"}


def _submit(settings: Settings, log_path, job: str, *args: str) -> subprocess.CompletedProcess:
    with log_path.open("ab") as log:
        return subprocess.run(
            submit_command(settings, job, *args),
            cwd=PROJECT_ROOT,
            env=_env(settings),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=600,
        )


def _table(settings: Settings, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    return DeltaTable(str(settings.delta_table(name))).to_pandas(columns=columns)


def _rows(settings: Settings, name: str) -> int:
    try:
        return len(_table(settings, name, ["ingest_seq"]))
    except TableNotFoundError:
        return 0


def _assert_same_features(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got.sort_values(["product_id", "ingest_seq"]).reset_index(drop=True)
    assert got["ingest_seq"].tolist() == expected["ingest_seq"].tolist()
    for column in FEATURE_COLUMNS:
        assert same_bits(got[column].astype(float), expected[column].astype(float)), column


def test_stream_and_replay_on_a_standalone_cluster(kafka_broker, spark_cluster, tmp_path):
    settings = dataclasses.replace(
        pipeline_settings(kafka_broker, tmp_path, window=5),
        spark_master=spark_cluster.master_url,
        spark_driver_memory="1g",
        stream_scoring=False,
        stream_max_offsets_per_trigger=800,
    )
    # 100 s before midnight onwards: two daily files, two products; the stream sees several micro-batches.
    records = list(synthetic_raw_records(2000, ("BTC-USD", "ETH-USD"), seed=7, start_ns=DEFAULT_START_NS - 100 * 10**9))
    write_raw_files(settings, records)
    assert sorted(p.name for p in settings.raw_dir.iterdir()) == ["20251231.ndjson", "20260101.ndjson"]
    produce(settings, records)
    expected = reference_features(records, window=5)

    log_path = tmp_path / "jobs.log"
    with log_path.open("ab") as log:
        stream = subprocess.Popen(
            submit_command(settings, "features_stream"),
            cwd=PROJECT_ROOT,
            env=_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: _rows(settings, "features") >= len(expected) or stream.poll() is not None,
            480,
            "the stream's features of every tick",
        )
        assert stream.poll() is None, log_path.read_text()[-4000:]
        stream.send_signal(signal.SIGTERM)  # the polite stop: the batch in flight commits, exit 0
        assert stream.wait(150) == 0, log_path.read_text()[-4000:]
    finally:
        if stream.poll() is None:
            os.killpg(stream.pid, signal.SIGKILL)
            stream.wait()
    ticks = _table(settings, "ticks")
    assert sorted(ticks["ingest_seq"]) == list(range(2000))
    _assert_same_features(_table(settings, "features"), expected)

    replay = _submit(settings, log_path, "replay", "--start", str(DAY2), "--end", str(DAY2))
    assert replay.returncode == 0, log_path.read_text()[-4000:]
    day2 = expected[expected["recv_ns"] >= DateRange(DAY2, DAY2).bounds_ns[0]].reset_index(drop=True)
    assert 0 < len(day2) < len(expected)
    _assert_same_features(_table(settings, "features_replay"), day2)

    # Each job ran as an application of the cluster, its tasks on the worker's executor.
    apps = {app["name"] for app in spark_cluster.state()["completedapps"]}
    assert {"volpipe-features-stream", "volpipe-replay"} <= apps

"""The batch side under faults: training and batch inference SIGKILLed mid-run and re-run, and
the MLflow server stopped while a training runs (docs/reliability.md, "Batch side").

Each job runs as the command Airflow runs, in a process group of its own. To hit a moment
that lasts seconds, the test runs the job in short slices and freezes it between them (SIGSTOP
of the group), reading the real state (MLflow, the Delta log) while it is frozen: a frozen
process writes nothing more, so what the test reads then is what a SIGKILL at that moment
leaves. A moment between two MLflow calls lasts milliseconds, too short to hit with slices on
a busy machine: there the training talks to MLflow through a gate that holds the next call
unanswered (tests/mlflow_gate.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.mlflow_gate import MlflowGate
from tests.model.skill import skilled_rows
from tests.model.test_training import register_champion
from volpipe.config import PROJECT_ROOT, Settings
from volpipe.modeling import label as L
from volpipe.modeling import registry, train
from volpipe.modeling.synthetic import write_features
from volpipe.modeling.tracking import KILLED_TRAINING_TAG, close_abandoned_runs
from volpipe.ops.sandbox import isolated_settings
from volpipe.tables import FEATURES, PREDICTION_KEYS, PREDICTIONS

pytestmark = pytest.mark.integration
DAY = "2026-01-01"  # the synthetic market's first day
# Long enough for a request to MLflow sent just before a freeze to be answered.
MLFLOW_SETTLE_SECONDS = 0.1
CHILDREN = ("baseline", "logistic_regression", "hist_gradient_boosting")
# mlflow.register_model's first request (it creates the registered model if missing, then the version).
REGISTERING = ("/registered-models/create", "/model-versions/create")


@pytest.fixture(scope="module")
def rows():
    """Rows a model predicts by construction: the trainings here pass the promotion gate."""
    return skilled_rows()


def _launch(settings: Settings, module: str, *args: str, log_path: Path, **env: str) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, **settings.as_env(), "PYTHONPATH": str(PROJECT_ROOT), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _freeze(proc: subprocess.Popen, settle: float) -> None:
    os.killpg(proc.pid, signal.SIGSTOP)
    time.sleep(settle)


def _thaw(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGCONT)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _freeze_when(
    proc: subprocess.Popen,
    reached: Callable[[], bool],
    what: str,
    log_path: Path,
    slice_seconds: float,
    settle: float = MLFLOW_SETTLE_SECONDS,
    timeout: float = 400,
) -> None:
    """Runs ``proc`` in slices, frozen between them, and returns frozen once ``reached()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        _freeze(proc, settle)
        if reached():
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                _kill(proc)
            pytest.fail(f"{what} not reached (exit={proc.returncode}); log:\n{log_path.read_text()[-4000:]}")
        _thaw(proc)
        time.sleep(slice_seconds)


def _wait_held(gate: MlflowGate, proc: subprocess.Popen, what: str, log_path: Path, timeout: float = 400) -> None:
    """Returns once the job is blocked in the request the gate holds."""
    deadline = time.monotonic() + timeout
    while not gate.held.wait(1):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} not reached (exit={proc.poll()}); log:\n{log_path.read_text()[-4000:]}")


def _finish(proc: subprocess.Popen, log_path: Path, timeout: float = 400) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        pytest.fail(f"job did not end in {timeout}s; log:\n{log_path.read_text()[-4000:]}")


# --- training ---------------------------------------------------------------------------------


def _search_runs(settings: Settings) -> list:
    client = registry.client(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


def _runs(settings: Settings) -> dict[str, str]:
    """Run name -> status in the test's experiment (before a retry, run names are unique)."""
    return {run.info.run_name: run.info.status for run in _search_runs(settings)}


def _retry_closes_the_killed_runs(settings: Settings, log_path: Path) -> None:
    """The same command again (what Airflow's retry runs): it ends, and the runs the killed
    training left RUNNING are KILLED now (its process is gone)."""
    left_open = {run.info.run_id for run in _search_runs(settings) if run.info.status == "RUNNING"}
    assert left_open, "the killed training left no run open: nothing to check"
    assert _finish(_launch(settings, "volpipe.modeling.train", log_path=log_path), log_path) == 0
    statuses = {run.info.run_id: run.info.status for run in _search_runs(settings)}
    assert {statuses[run_id] for run_id in left_open} == {"KILLED"}
    assert "RUNNING" not in statuses.values()


def _ending(settings: Settings, run_name: str):
    """Matches the request that ends run ``run_name`` (MLflow's UpdateRun with status FINISHED)."""

    def match(method: str, path: str, body) -> bool:
        if method != "POST" or not path.endswith("/runs/update") or not isinstance(body, dict):
            return False
        run_id = body.get("run_id") or body.get("run_uuid")
        return (
            body.get("status") == "FINISHED"
            and registry.client(settings.mlflow_tracking_uri).get_run(run_id).info.run_name == run_name
        )

    return match


def _versions(settings: Settings) -> list:
    client = registry.client(settings.mlflow_tracking_uri)
    return sorted(client.search_model_versions(f"name = '{settings.model_name}'"), key=lambda v: int(v.version))


def _champion(settings: Settings) -> str:
    return registry.champion(settings.mlflow_tracking_uri, settings.model_name).version


def _assert_complete(settings: Settings, version) -> None:
    """A trained version carries its decision, its run's metrics and threshold, and loads from the registry."""
    assert {
        "promotion.decision",
        "promotion.gain",
        "promotion.gain_ci_low",
        "promotion.candidate_test_pr_auc",
        "promotion.champion_version_before",
    } <= set(version.tags), version.tags
    metrics = registry.client(settings.mlflow_tracking_uri).get_run(version.run_id).data.metrics
    assert {"validation_pr_auc", "test_pr_auc", "test_roc_auc"} <= set(metrics)
    model = registry.scoring_model(settings.mlflow_tracking_uri, settings.model_name, version.version)
    assert hasattr(registry.load_estimator(settings.mlflow_tracking_uri, model), "predict_proba")


def test_training_killed_at_each_step_then_rerun_registers_only_complete_versions(mlflow_server, rows, tmp_path):
    settings = dataclasses.replace(
        mlflow_server,
        delta_dir=tmp_path / "delta",
        model_name="faults-training",
        mlflow_experiment="faults-training",
        train_min_rows=1000,
    )
    write_features(settings.delta_table(FEATURES), rows)
    # A weak champion that any trained candidate beats: the killed training means to move the alias.
    from sklearn.linear_model import LogisticRegression

    fit_rows = train.prepare(L.order_rows(rows), L.label_spec(settings), settings.train_min_rows).splits["train"]
    noise = np.random.default_rng(0).integers(0, 2, len(fit_rows))
    weak = register_champion(
        settings, LogisticRegression().fit(fit_rows[["midprice_return"]], noise), ["midprice_return"], fit_rows
    )
    log_path = tmp_path / "train-killed.log"
    with MlflowGate(settings.mlflow_tracking_uri).running() as gate:
        proc = _launch(
            dataclasses.replace(settings, mlflow_tracking_uri=gate.url), "volpipe.modeling.train", log_path=log_path
        )
        try:
            # 1. Fitting: the baseline is fitted, the learned models are being fitted.
            _freeze_when(proc, lambda: "model trained name=baseline" in log_path.read_text(), "fitting", log_path, 0.2)
            assert set(_runs(settings)) == {"hand-made champion"} and len(_versions(settings)) == 1
            # 2. Logging: a learned model's child run logged, not closed yet: held at the request closing it.
            gate.hold(_ending(settings, "logistic_regression"))
            _thaw(proc)
            _wait_held(gate, proc, "closing a child run", log_path)
            assert _runs(settings)["logistic_regression"] == "RUNNING"
            assert len(_versions(settings)) == 1 and _champion(settings) == weak
            # 3. Every child run logged, nothing registered yet: held at the registration's first request.
            gate.hold(lambda method, path, _: method == "POST" and path.endswith(REGISTERING))
            _thaw(proc)
            _wait_held(gate, proc, "registration", log_path)
            assert all(_runs(settings).get(name) == "FINISHED" for name in CHILDREN)
            assert len(_versions(settings)) == 1 and _champion(settings) == weak
            # 4. The candidate registered, the alias not moved yet: killed here.
            gate.hold(lambda method, path, _: method == "POST" and path.endswith("/registered-models/alias"))
            _wait_held(gate, proc, "moving the alias", log_path)
            assert len(_versions(settings)) == 2 and _champion(settings) == weak
            # A training whose process lives (blocked here) keeps its runs open: only a dead one's are closed.
            experiment = registry.client(settings.mlflow_tracking_uri).get_experiment_by_name(
                settings.mlflow_experiment
            )
            assert close_abandoned_runs(settings.mlflow_tracking_uri, experiment.experiment_id) == []
            _kill(proc)
        finally:
            if proc.poll() is None:
                _kill(proc)
    orphan = _versions(settings)[1]
    _assert_complete(settings, orphan)
    assert orphan.tags["promotion.decision"] == "promoted" and _champion(settings) == weak
    assert _runs(settings)["train-relative"] == "RUNNING"  # MLflow was never told

    _retry_closes_the_killed_runs(settings, tmp_path / "train-retry.log")
    versions = _versions(settings)
    assert [v.version for v in versions] == [weak, orphan.version, str(int(orphan.version) + 1)]
    for version in versions[1:]:
        _assert_complete(settings, version)
    assert _champion(settings) == versions[-1].version
    # The killed training's version is marked, with its parent run; the retry's is not.
    assert (
        versions[1].tags[KILLED_TRAINING_TAG]
        == registry.client(settings.mlflow_tracking_uri).get_run(orphan.run_id).data.tags["mlflow.parentRunId"]
    )
    assert KILLED_TRAINING_TAG not in versions[2].tags
    assert versions[-1].tags["promotion.champion_version_before"] == weak  # compared with the same champion


def test_mlflow_down_while_training_fails_clearly_and_registers_nothing(rows, tmp_path):
    from volpipe.ops.services import MLFLOW

    settings = dataclasses.replace(isolated_settings(tmp_path / "own"), model_name="faults-outage", train_min_rows=1000)
    write_features(settings.delta_table(FEATURES), rows)
    log_path = tmp_path / "train.log"
    MLFLOW.start(settings)
    try:
        # MLflow's HTTP retries (7, backoff up to minutes) would wait for the server: not here.
        proc = _launch(settings, "volpipe.modeling.train", log_path=log_path, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        try:
            _freeze_when(
                proc, lambda: _runs(settings).get("logistic_regression") == "RUNNING", "logging", log_path, 0.2
            )
            MLFLOW.stop(settings)
            _thaw(proc)
            code = _finish(proc, log_path)
        finally:
            if proc.poll() is None:
                _kill(proc)
        output = log_path.read_text()
        assert code == 1, output[-4000:]
        last = output.strip().splitlines()[-1]
        assert f"training failed: MLflow tracking server {settings.mlflow_tracking_uri} is unreachable" in last
        assert "Traceback" not in output, output[-4000:]

        MLFLOW.start(settings)
        assert _versions(settings) == []
        assert registry.champion(settings.mlflow_tracking_uri, settings.model_name) is None
        runs = _runs(settings)
        assert runs["baseline"] == "FINISHED" and runs["train-relative"] == "RUNNING"  # MLflow was never told
        _retry_closes_the_killed_runs(settings, tmp_path / "train-retry.log")
        (version,) = _versions(settings)
        _assert_complete(settings, version)
        assert _champion(settings) == version.version
    finally:
        MLFLOW.stop(settings)


# --- batch inference ----------------------------------------------------------------------------


def _files_on_disk(table: Path) -> set[str]:
    return {str(path) for path in table.rglob("*.parquet") if "_delta_log" not in path.parts}


def _table_version(table: Path) -> int | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(str(table)).version()
    except TableNotFoundError:
        return None


def _writing(table: Path, old_files: set[str]) -> bool:
    """New data files on disk that no commit references: a write is under way."""
    from deltalake import DeltaTable

    if not table.exists():
        return False
    committed = set(DeltaTable(str(table)).file_uris()) if _table_version(table) is not None else set()
    return bool(_files_on_disk(table) - old_files - committed)


def _predictions_per_key(table: Path):
    from deltalake import DeltaTable

    return DeltaTable(str(table)).to_pandas().groupby(list(PREDICTION_KEYS)).size()


@pytest.mark.spark
def test_batch_inference_killed_mid_write_then_rerun_leaves_one_prediction_per_row(mlflow_server, rows, tmp_path):
    settings = dataclasses.replace(
        mlflow_server, delta_dir=tmp_path / "delta", model_name="faults-inference", train_min_rows=1000
    )
    write_features(settings.delta_table(FEATURES), rows)
    train.run(settings)
    table = settings.delta_table(PREDICTIONS)
    keys = set(map(tuple, rows[list(PREDICTION_KEYS)].itertuples(index=False)))
    days = {dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).date().isoformat() for ns in rows["exchange_ts_ns"]}
    assert days == {DAY}  # one day: the job's range covers every row

    def kill_mid_write(log_path: Path) -> int | None:
        old_files = _files_on_disk(table) if table.exists() else set()
        proc = _launch(
            settings,
            "spark_jobs.batch_inference",
            "--start",
            DAY,
            "--end",
            DAY,
            log_path=log_path,
            SPARK_DRIVER_MEMORY="1g",
        )
        before = None
        try:
            # Files on disk are final once frozen: no settling; the write lasts seconds, slices are short.
            _freeze_when(proc, lambda: _writing(table, old_files), "a write under way", log_path, 0.2, settle=0)
            before = _table_version(table)
            _kill(proc)
        finally:
            if proc.poll() is None:
                _kill(proc)
        assert _table_version(table) == before  # nothing committed after the freeze
        return before

    # Killed during the first write: the table holds no prediction (created empty, or absent).
    kill_mid_write(tmp_path / "killed-1.log")
    assert not table.exists() or _predictions_per_key(table).empty
    # The retry writes every row once; the killed run's files are ignored (no commit names them).
    retry_log = tmp_path / "retry.log"
    assert (
        _finish(
            _launch(
                settings,
                "spark_jobs.batch_inference",
                "--start",
                DAY,
                "--end",
                DAY,
                log_path=retry_log,
                SPARK_DRIVER_MEMORY="1g",
            ),
            retry_log,
        )
        == 0
    )
    counts = _predictions_per_key(table)
    assert (counts == 1).all() and set(counts.index) == keys
    # Killed while replacing the day: the day still holds the retry's predictions, once each.
    kill_mid_write(tmp_path / "killed-2.log")
    counts = _predictions_per_key(table)
    assert (counts == 1).all() and set(counts.index) == keys

"""Monitoring against a real MLflow server and real Delta tables: reference window, reports, run, verdict;
predictions judged one model version at a time, in ``predictions`` and ``predictions_live``."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volpipe.config import Settings
from volpipe.errors import DriftDetected, MonitoringDataError, ReferenceWindowError
from volpipe.features import FEATURE_COLUMNS
from volpipe.modeling.synthetic import write_features
from volpipe.monitoring.synthetic import (
    HORIZON,
    T0_NS,
    TICK_NS,
    contract_params,
    feature_rows,
    prediction_rows,
    register_champion,
)
from volpipe.tables import PREDICTIONS, PREDICTIONS_LIVE

pytestmark = pytest.mark.integration

N = 6_000
DAY_NS = 86_400 * 1_000_000_000
CURRENT_START_NS = T0_NS + DAY_NS
CURRENT_END_NS = CURRENT_START_NS + N * TICK_NS
PRODUCTS = ("BTC-USD", "ETH-USD")


def test_reference_window_follows_the_champion(mlflow_server):
    from volpipe.monitoring.data import reference_window

    uri = mlflow_server.mlflow_tracking_uri
    name = f"volpipe-ref-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ReferenceWindowError, match=f"no champion for model '{name}'"):
        reference_window(uri, name)
    first = register_champion(
        mlflow_server, name, contract_params(10, 20, ["rolling_vol", "imbalance_1t"], ["BTC-USD"])
    )
    assert reference_window(uri, name) == (10, 20, ("BTC-USD",), ("rolling_vol", "imbalance_1t"), "1", first)
    # A new champion moves the reference with it.
    second = register_champion(mlflow_server, name, contract_params(30, 40))
    assert reference_window(uri, name) == (30, 40, PRODUCTS, tuple(FEATURE_COLUMNS), "2", second)
    register_champion(mlflow_server, name, {"train_start_ns": "5"})
    with pytest.raises(
        ReferenceWindowError,
        match=r"lacks params \['train_end_ns', 'products', 'feature_columns'\] "
        rf"\(model={name} version=3 run_id=",
    ):
        reference_window(uri, name)
    register_champion(mlflow_server, name, contract_params(30, 40, products=["BTC-USD", "BTC-USD"]))
    with pytest.raises(ReferenceWindowError, match=r"products listed more than once: BTC-USD \(model=.* version=4"):
        reference_window(uri, name)


@pytest.fixture(scope="module")
def champion(mlflow_server) -> str:
    name = f"volpipe-mon-{uuid.uuid4().hex[:8]}"
    register_champion(mlflow_server, name, contract_params(T0_NS, T0_NS + N * TICK_NS))
    return name


def monitored_tables(settings: Settings, root: Path, *, shifted: bool) -> tuple[Settings, pd.DataFrame, pd.DataFrame]:
    """Settings whose ``features`` hold the training window and a current one (shifted or not); rows to score."""
    settings = dataclasses.replace(settings, delta_dir=root / "delta", reports_dir=root / "reports")
    reference = feature_rows(N, seed=1)
    current = feature_rows(
        N, seed=2, start_ns=CURRENT_START_NS, vol=1.6 if shifted else 1.0, imbalance=0.3 if shifted else 0.0
    )
    write_features(settings.delta_table("features"), pd.concat([reference, current], ignore_index=True))
    previous = feature_rows(N, seed=3, start_ns=CURRENT_START_NS - N * TICK_NS)
    return settings, previous, current


def test_a_shifted_window_is_flagged_reported_and_logged(mlflow_server, champion, tmp_path):
    from mlflow.tracking import MlflowClient

    from volpipe.monitoring.run import enforce, run_monitoring

    settings, previous, current = monitored_tables(mlflow_server, tmp_path, shifted=True)
    settings = dataclasses.replace(settings, drift_action="fail", drift_trigger_retrain=True)
    write_features(
        settings.delta_table(PREDICTIONS),
        pd.concat(
            [
                prediction_rows(previous, 4, model_name=champion),
                prediction_rows(current, 5, shift=0.15, model_name=champion),
                prediction_rows(current, 6, model_name="another-model"),
                prediction_rows(current, 7, shift=0.3, model_name=champion, model_version="9"),
            ],
            ignore_index=True,
        ),
    )
    # The stream's live predictions of the same rows: the champion's scores did not move there.
    write_features(
        settings.delta_table(PREDICTIONS_LIVE),
        pd.concat(
            [prediction_rows(previous, 8, model_name=champion), prediction_rows(current, 9, model_name=champion)]
        ),
    )

    verdict = run_monitoring(settings, champion, current_start_ns=CURRENT_START_NS, current_end_ns=CURRENT_END_NS)

    assert verdict.drift_detected and verdict.should_fail and verdict.retrain_requested
    assert verdict.retrain_window == {"start": "2026-09-22", "end": "2026-09-22", "products": list(PRODUCTS)}
    assert verdict.drift_share == 6 / 8 and verdict.drifted_count == 6
    assert {f.column for f in verdict.features if not f.drifted} == {"trade_intensity", "spread_bps"}
    assert verdict.reference["rows"] == verdict.current["rows"] == N
    batch, live = verdict.predictions[PREDICTIONS], verdict.predictions[PREDICTIONS_LIVE]
    # Only the champion version's rows: not the other model's, not version 9's (named beside them).
    assert batch["rows"] == N and batch["versions"] == {"1": N, "9": N} and batch["model_version"] == "1"
    assert batch["reference"] == "previous window" and batch["share"] == 1.0
    assert live["rows"] == N and live["reference"] == "previous window" and live["share"] == 0.0
    # Labelled by the champion's logged definition: every row but the last H of each product.
    assert verdict.current["labelled_rows"] == N - HORIZON * len(PRODUCTS)
    assert batch["classification"]["rows"] == live["classification"]["rows"] == N - HORIZON * len(PRODUCTS)
    with pytest.raises(DriftDetected, match="drifted=6/8"):
        enforce(verdict)

    folder = settings.reports_dir / "evidently" / "2026-09-22"
    assert Path(verdict.report_dir) == folder
    names = {
        "data_drift",
        "data_quality",
        *(
            f"{report}_{table}"
            for report in ("prediction_drift", "classification")
            for table in (PREDICTIONS, PREDICTIONS_LIVE)
        ),
    }
    files = {f"{n}.{ext}" for n in names for ext in ("html", "json")}
    assert {p.name for p in folder.iterdir()} == files | {"verdict.json"}
    report = json.loads((folder / "data_drift.json").read_text())
    status = {
        t["metric_config"]["params"]["column"]: t["status"]
        for t in report["tests"]
        if t["metric_config"]["params"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    assert status["rolling_vol"] == "FAIL" and status["trade_intensity"] == "SUCCESS"
    assert "rolling_vol" in (folder / "data_drift.html").read_text()
    assert json.loads((folder / "verdict.json").read_text())["drift_share"] == 0.75
    assert json.loads(json.dumps(verdict.to_dict()))["should_fail"] is True  # plain JSON: an Airflow return value

    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(verdict.mlflow_run_id)
    assert run.data.metrics["drift_share"] == 0.75 and run.data.tags["drift_detected"] == "true"
    assert run.data.metrics["prediction_drift_share.predictions"] == 1.0
    assert run.data.metrics["prediction_drift_share.predictions_live"] == 0.0
    assert run.data.params["model_name"] == champion
    assert client.get_experiment(run.info.experiment_id).name == settings.monitoring_experiment
    logged = {a.path for a in client.list_artifacts(verdict.mlflow_run_id, "evidently/2026-09-22")}
    assert logged == {f"evidently/2026-09-22/{p.name}" for p in folder.iterdir()}


def test_a_window_from_the_reference_distribution_stays_quiet(mlflow_server, champion, tmp_path):
    from volpipe.monitoring.run import enforce, run_monitoring

    settings, _, current = monitored_tables(mlflow_server, tmp_path, shifted=False)
    settings = dataclasses.replace(settings, drift_action="fail", drift_trigger_retrain=True)
    write_features(settings.delta_table(PREDICTIONS), prediction_rows(current, 5, model_name=champion))

    verdict = enforce(
        run_monitoring(
            settings, champion, current_start_ns=CURRENT_START_NS, current_end_ns=CURRENT_END_NS, report_date="quiet"
        )
    )

    assert not verdict.drift_detected and verdict.drifted_count == 0 and not verdict.retrain_requested
    assert verdict.retrain_window is None
    assert verdict.quality["failed"] == []
    # No predictions in the training window nor the window before: nothing to compare them with.
    batch = verdict.predictions[PREDICTIONS]
    assert batch["skipped"] == (
        "no earlier predictions of version 1 to compare with (training window or previous window)"
    )
    assert batch["classification"]["rows"] == N - HORIZON * len(PRODUCTS)
    assert verdict.predictions[PREDICTIONS_LIVE]["skipped"] == f"no table at {settings.delta_table(PREDICTIONS_LIVE)}"
    folder = settings.reports_dir / "evidently" / "quiet"
    assert (folder / "classification_predictions.html").exists()
    assert not list(folder.glob("prediction_drift_*"))


def test_predictions_are_compared_within_one_version_and_the_versions_are_named(mlflow_server, tmp_path):
    """A promotion is not prediction drift: the new version's scores are compared with its own."""
    from volpipe.monitoring.run import run_monitoring

    name = f"volpipe-versions-{uuid.uuid4().hex[:8]}"
    for _ in range(2):  # version 2, trained on the same window, becomes the champion
        register_champion(mlflow_server, name, contract_params(T0_NS, T0_NS + N * TICK_NS))
    settings, previous, current = monitored_tables(mlflow_server, tmp_path, shifted=False)
    # Version 1 scored the window before; version 2 scores higher throughout, in a window where
    # version 1 still scored some rows (a batch re-run, say).
    predictions = settings.delta_table(PREDICTIONS)
    write_features(
        predictions,
        pd.concat(
            [
                prediction_rows(previous, 4, model_name=name, model_version="1"),
                prediction_rows(current, 5, shift=0.15, model_name=name, model_version="2"),
                prediction_rows(current.iloc[:100], 6, model_name=name, model_version="1"),
            ],
            ignore_index=True,
        ),
    )

    def judge() -> dict:
        return run_monitoring(
            settings, name, current_start_ns=CURRENT_START_NS, current_end_ns=CURRENT_END_NS
        ).predictions[PREDICTIONS]

    first = judge()
    assert first["model_version"] == "2" and first["rows"] == N and first["versions"] == {"1": 100, "2": N}
    assert first["skipped"] == (
        "no earlier predictions of version 2 to compare with (training window or previous window)"
    )
    # Version 2's own scores of its training window (as batch inference writes them): now compared.
    reference = feature_rows(N, seed=1)
    write_features(predictions, prediction_rows(reference, 7, shift=0.15, model_name=name, model_version="2"))
    second = judge()
    assert second["reference"] == "training window" and second["share"] == 0.0, second


def test_missing_table_or_empty_window_is_a_clear_error(mlflow_server, champion, tmp_path):
    from volpipe.monitoring.run import run_monitoring

    settings = dataclasses.replace(mlflow_server, delta_dir=tmp_path / "delta", reports_dir=tmp_path / "reports")
    with pytest.raises(MonitoringDataError, match=f"no Delta table at {tmp_path / 'delta' / 'features'}"):
        run_monitoring(settings, champion, current_start_ns=CURRENT_START_NS, current_end_ns=CURRENT_END_NS)
    write_features(settings.delta_table("features"), feature_rows(100, seed=1))
    with pytest.raises(
        MonitoringDataError,
        match=rf"current window is empty: .* start_ns={CURRENT_START_NS} "
        rf"end_ns={CURRENT_END_NS} products=BTC-USD,ETH-USD",
    ):
        run_monitoring(settings, champion, current_start_ns=CURRENT_START_NS, current_end_ns=CURRENT_END_NS)
    assert not np.any([p.exists() for p in (tmp_path / "reports").glob("**/*.json")])


def test_command_line_exit_codes(mlflow_server, champion, tmp_path, monkeypatch, capsys):
    from volpipe.monitoring.__main__ import main

    # main() configures logging on the root logger: give it a copy of the handlers to replace.
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.mlflow_tracking_uri)
    monkeypatch.setenv("DELTA_DIR", str(tmp_path / "delta"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "reports"))
    window = ["--model-name", champion, "--start", "2026-09-22T14:13:20", "--end", "2026-09-22T14:23:20"]
    assert main(window) == 2
    assert "no Delta table at" in capsys.readouterr().err
    monitored_tables(mlflow_server, tmp_path, shifted=True)
    assert main([*window, "--drift-action", "warn"]) == 0
    assert json.loads(capsys.readouterr().out)["drift_detected"] is True  # stdout holds the verdict alone
    assert main([*window, "--drift-action", "fail", "--date", "cli"]) == 1
    assert "drift: data drift: date=cli" in capsys.readouterr().err

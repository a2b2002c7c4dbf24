"""Training against a real MLflow server and a real Delta table: runs, registry, promotion, errors."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import isolated_settings
from tests.model.skill import skilled_rows, unpredictable_rows
from volpipe.errors import ModelRegistryError, TrainingDataError
from volpipe.modeling import label as L
from volpipe.modeling import models as M
from volpipe.modeling import registry, train
from volpipe.modeling.synthetic import synthetic_features, write_features

pytestmark = pytest.mark.integration
CONTRACT_PARAMS = ("train_start_ns", "train_end_ns", "products", "feature_columns", "label_mode")
_names = itertools.count()


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Rows on which the models beat persistence by construction: trainings here can promote."""
    return skilled_rows()


@pytest.fixture
def settings(mlflow_server, rows, tmp_path):
    """The session's MLflow server, a fresh features table and a model name of this test's own."""
    s = dataclasses.replace(
        mlflow_server, delta_dir=tmp_path / "delta", model_name=f"vol-test-{next(_names)}", train_min_rows=1000
    )
    write_features(s.delta_table("features"), rows)
    return s


def register_champion(
    settings,
    model,
    features: list[str],
    example: pd.DataFrame,
    serialization_format: str = "skops",
    threshold: float | None = None,
) -> str:
    """Logs and registers ``model`` outside training and makes it champion; returns its version.
    With ``threshold``, its run logs the parameters scoring reads (decision threshold, label mode)."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run(run_name="hand-made champion"):
        if threshold is not None:
            mlflow.log_params({registry.THRESHOLD_PARAM: threshold, "label_mode": settings.label_mode})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example[features], model.predict_proba(example[features])),
            registered_model_name=settings.model_name,
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
            serialization_format=serialization_format,
        )
    registry.promote(settings.mlflow_tracking_uri, settings.model_name, info.registered_model_version, {})
    return str(info.registered_model_version)


def test_training_logs_child_runs_registers_the_candidate_and_promotes_the_first(settings):
    summary = train.run(settings)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary  # an XCom-able plain dict
    client = registry.client(settings.mlflow_tracking_uri)
    version = registry.champion(settings.mlflow_tracking_uri, settings.model_name)
    assert summary["promoted"] and version.version == summary["registered_version"] == summary["champion_version"]
    candidate = summary["candidate"]
    assert candidate in (M.LOGISTIC, M.BOOSTING)
    assert version.run_id == summary["models"][candidate]["run_id"]  # the contract: the child run
    children = client.search_runs(
        [client.get_run(summary["run_id"]).info.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'"
    )
    assert sorted(run.info.run_name for run in children) == sorted(M.MODEL_NAMES)
    for child in children:
        params = child.data.params
        assert all(key in params for key in CONTRACT_PARAMS)
        assert params["label_mode"] == "relative" and params["products"] == "BTC-USD,ETH-USD"
        # Every parameter of the label is logged: batch inference and monitoring relabel by them.
        far_off = L.LabelSpec(
            mode="forward", horizon=3, quantile=0.5, relative_k=7.0, relative_column="x", max_gap_seconds=1.0, window=9
        )
        logged, tau = L.logged_definition(params, far_off)
        assert logged == L.label_spec(settings) and np.isnan(tau)
        assert params["feature_columns"] == ",".join(M.FEATURES[child.info.run_name])
        assert int(params["train_start_ns"]) < int(params["train_end_ns"]) <= int(params["val_start_ns"])
        assert params["delta_version"] == "0" and params["tau"] == "nan"  # trailing: a tau per row
        expected = {"train_pr_auc", "validation_pr_auc", "test_pr_auc", "test_roc_auc", "test_f1", "test_recall"}
        assert expected <= set(child.data.metrics)
        assert child.data.tags["mlflow.source.git.commit"]
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"pr_curve.png", "split_bounds.json"} <= artifacts
        if child.info.run_name != M.BASELINE:
            assert {"calibration.png", "importance.png"} <= artifacts
    # Loads by alias; the pyfunc returns both class probabilities, like predict_proba.
    model, loaded = registry.load(settings.mlflow_tracking_uri, settings.model_name)
    assert loaded.version == version.version
    frame = pd.DataFrame(synthetic_features(2_000, seed=9))[registry.input_columns(model)]
    probabilities = np.asarray(model.predict(frame))
    assert probabilities.shape == (len(frame), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert registry.decision_threshold(settings.mlflow_tracking_uri, version) > 0

    # The summary says what was decided and why, with the gain, its CI and the positive rate.
    gate = summary["gate"]
    assert summary["decision"] == "promoted" and gate["champion_version"] is None
    assert gate["gain"] > 0 and 0 < gate["gain_ci"][0] <= gate["gain"] <= gate["gain_ci"][1]
    assert gate["rows"] == summary["test_rows"] and gate["positive_rate"] == summary["positive_rate"]["test"]
    assert gate["candidate_pr_auc"] == summary["models"][candidate]["test_pr_auc"]
    assert gate["baseline_pr_auc"] == summary["models"][M.BASELINE]["test_pr_auc"]
    assert f"{gate['gain']:+.3f}" in summary["reason"] and "no champion before" in summary["reason"]
    assert f"decision: promoted: {summary['reason']}" in train.describe(summary)

    # The same training again scores exactly as the champion on the same rows: a tie keeps it.
    again = train.run(settings)
    assert not again["promoted"] and again["decision"] == "kept_champion"
    assert again["gate"]["candidate_pr_auc"] == again["gate"]["champion_pr_auc"]
    assert again["gate"]["gain_over_champion"] == 0
    assert registry.champion(settings.mlflow_tracking_uri, settings.model_name).version == version.version
    tags = client.get_model_version(settings.model_name, again["registered_version"]).tags
    assert tags["promotion.decision"] == "kept_champion"
    assert tags["promotion.champion_version_before"] == version.version


def test_a_better_model_takes_champion_and_a_worse_one_does_not(settings, rows):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    spec = L.label_spec(settings)
    prepared = train.prepare(L.order_rows(rows), spec, settings.train_min_rows)
    tr, test = prepared.splits["train"], prepared.splits["test"]
    noise = np.random.default_rng(0).integers(0, 2, len(tr))
    weak = LogisticRegression().fit(tr[["midprice_return"]], noise)
    weak_version = register_champion(settings, weak, ["midprice_return"], tr)
    better = train.run(settings)
    assert better["promoted"] and better["gate"]["champion_pr_auc"] < better["gate"]["candidate_pr_auc"]
    assert better["gate"]["champion_version"] == weak_version and f"champion v{weak_version}" in better["reason"]
    assert registry.champion(settings.mlflow_tracking_uri, settings.model_name).version == better["registered_version"]
    assert better["registered_version"] != weak_version

    # A champion fitted on the gate's rows themselves cannot be beaten on those rows, though the
    # candidate beats persistence beyond noise: the champion stays.
    with M.single_threaded():
        oracle = HistGradientBoostingClassifier(random_state=0).fit(test[list(M.CHALLENGER_FEATURES)], test["y"])
    oracle_version = register_champion(settings, oracle, list(M.CHALLENGER_FEATURES), test)
    worse = train.run(settings)
    assert not worse["promoted"] and worse["decision"] == "kept_champion"
    assert worse["gate"]["gain_ci"][0] > 0 and worse["gate"]["gain_over_champion"] < 0
    assert worse["gate"]["champion_pr_auc"] > worse["gate"]["candidate_pr_auc"]
    assert registry.champion(settings.mlflow_tracking_uri, settings.model_name).version == oracle_version
    assert worse["champion_version"] == oracle_version
    run_tags = registry.client(settings.mlflow_tracking_uri).get_run(worse["run_id"]).data.tags
    assert run_tags["promotion.decision"] == "kept_champion"
    assert float(run_tags["promotion.champion_test_pr_auc"]) == pytest.approx(worse["gate"]["champion_pr_auc"])


def test_a_candidate_without_skill_is_registered_with_its_verdict_and_never_champion(settings):
    """Labels independent of every feature: the first version is not promoted, nor a later one
    over a champion, and the version carries the decision and the figures."""
    unpredictable = unpredictable_rows()
    write_features(settings.delta_table("features"), unpredictable, mode="overwrite")
    first = train.run(settings)
    assert first["decision"] == "no_skill" and not first["promoted"] and first["champion_version"] is None
    assert registry.champion(settings.mlflow_tracking_uri, settings.model_name) is None
    gate = first["gate"]
    assert gate["gain_ci"][0] <= 0 and "no model beat the persistence baseline beyond noise" in first["reason"]
    tags = (
        registry.client(settings.mlflow_tracking_uri)
        .get_model_version(settings.model_name, first["registered_version"])
        .tags
    )
    assert tags["promotion.decision"] == "no_skill" and tags["promotion.reason"] == first["reason"]
    assert float(tags["promotion.gain"]) == pytest.approx(gate["gain"], abs=1e-6)
    assert float(tags["promotion.gain_ci_low"]) == pytest.approx(gate["gain_ci"][0], abs=1e-6)
    assert float(tags["promotion.gain_ci_high"]) == pytest.approx(gate["gain_ci"][1], abs=1e-6)
    assert float(tags["promotion.positive_rate"]) == pytest.approx(first["positive_rate"]["test"], abs=1e-6)
    assert "champion: none (live and batch scoring wait)" in train.describe(first)

    from sklearn.linear_model import LogisticRegression

    example = unpredictable.head(1_000)
    standing = register_champion(
        settings, LogisticRegression().fit(example[["rolling_vol"]], np.arange(1_000) % 2), ["rolling_vol"], example
    )
    second = train.run(settings)
    assert second["decision"] == "no_skill" and second["champion_version"] == standing
    assert registry.champion(settings.mlflow_tracking_uri, settings.model_name).version == standing


def test_a_failed_training_registers_and_promotes_nothing(settings):
    first = train.run(settings)
    client = registry.client(settings.mlflow_tracking_uri)
    versions = len(client.search_model_versions(f"name = '{settings.model_name}'"))
    experiment = client.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    runs = len(client.search_runs([experiment], max_results=1000))
    with pytest.raises(TrainingDataError, match="too few labelled rows"):
        train.run(dataclasses.replace(settings, train_min_rows=10**9))
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) == versions
    assert registry.champion(settings.mlflow_tracking_uri, settings.model_name).version == first["champion_version"]
    assert len(client.search_runs([experiment], max_results=1000)) == runs


@pytest.fixture
def offline(tmp_path):
    """Settings with no MLflow server behind them: bad data must fail before any MLflow call."""
    return isolated_settings(tmp_path, TRAIN_MIN_ROWS="100")


def test_a_missing_table_is_named(offline):
    with pytest.raises(TrainingDataError, match="no Delta table"):
        train.run(offline)


def test_a_missing_column_is_named(offline, rows):
    write_features(offline.delta_table("features"), rows.drop(columns=["vol_300t"]).head(5_000))
    with pytest.raises(TrainingDataError, match=r"lacks columns \['vol_300t'\]"):
        train.run(offline)


def test_an_empty_range_and_unlabelled_rows_are_named(offline, rows):
    write_features(offline.delta_table("features"), rows.head(3_000))
    with pytest.raises(TrainingDataError, match="no feature rows"):
        train.run(offline, products=["DOGE-USD"])
    with pytest.raises(TrainingDataError, match="no labelled rows"):
        train.run(dataclasses.replace(offline, label_horizon=5_000))


def test_a_split_with_one_class_is_named(offline, rows):
    write_features(offline.delta_table("features"), rows.head(5_000))
    # Forward volatility never reaches 1000 x the trailing one: every label is 0.
    with pytest.raises(TrainingDataError, match=r"the train split has \d+ rows and classes \[0\]"):
        train.run(dataclasses.replace(offline, label_mode="relative", label_relative_k=1000.0))


def test_the_tables_layout_columns_are_read_past(offline, rows):
    write_features(offline.delta_table("features"), rows.head(5_000))  # date partitions, exchange_ts
    start, end = int(rows["exchange_ts_ns"].min()), int(rows["exchange_ts_ns"].max()) + 1
    data = train.read_window(offline.delta_table("features"), L.required_columns(L.label_spec(offline)), start, end)
    assert len(data.frame) == 5_000 and "exchange_ts" not in data.frame and "date" not in data.frame
    assert (
        data.frame["ingest_seq"].diff().dropna()[data.frame["product_id"].eq(data.frame["product_id"].shift())] > 0
    ).all()  # the kernel's order per product


def test_the_cli_reads_the_environment_and_flags_override_it(settings, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("DELTA_DIR", str(settings.delta_dir))
    monkeypatch.setenv("MODEL_NAME", "vol-from-env")
    monkeypatch.setenv("LABEL_HORIZON", "7")
    assert train.main(["--start", "2026-01-01", "--horizon", "60", "--model-name", settings.model_name]) == 0
    out = capsys.readouterr().out  # MLflow prints run links first; the summary is the last thing
    summary = json.loads(out[out.index('{\n  "run_id"') :])
    assert summary["model_name"] == settings.model_name and summary["promoted"]
    params = registry.client(settings.mlflow_tracking_uri).get_run(summary["models"]["baseline"]["run_id"]).data.params
    assert params["horizon"] == "60"
    with pytest.raises(TrainingDataError, match="no feature rows"):
        train.main(["--start", "2026-02-01"])


def test_a_champion_reading_unknown_columns_is_replaced_with_a_note(settings, rows):
    from sklearn.linear_model import LogisticRegression

    alien = rows[["rolling_vol"]].rename(columns={"rolling_vol": "not_a_feature"}).head(1_000)
    labels = np.arange(len(alien)) % 2
    register_champion(settings, LogisticRegression().fit(alien, labels), ["not_a_feature"], alien)
    summary = train.run(settings)
    assert summary["promoted"] and summary["gate"]["champion_pr_auc"] is None
    tags = registry.client(settings.mlflow_tracking_uri).get_run(summary["run_id"]).data.tags
    assert "not_a_feature" in tags["promotion.note"] and "not comparable" in summary["reason"]


def test_estimators_load_from_skops_files_only(settings, rows):
    """Batch inference and the stream's workers load what training writes (skops, trusting only
    the listed types); a pickled model in the registry is refused, not unpickled."""
    from sklearn.linear_model import LogisticRegression

    example = rows[["rolling_vol"]].head(1_000)
    labels = np.arange(len(example)) % 2
    fitted = LogisticRegression().fit(example, labels)
    for serialization_format in ("skops", "cloudpickle"):
        version = register_champion(settings, fitted, ["rolling_vol"], example, serialization_format)
        model = registry.ScoringModel(settings.model_name, version, "run", 0.5, "fixed", ("rolling_vol",))
        if serialization_format == "skops":
            loaded = registry.load_estimator(settings.mlflow_tracking_uri, model)
            np.testing.assert_array_equal(loaded.predict_proba(example), fitted.predict_proba(example))
        else:
            with pytest.raises(ModelRegistryError, match="not a scikit-learn model saved with skops"):
                registry.load_estimator(settings.mlflow_tracking_uri, model)

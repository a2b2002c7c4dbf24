"""The flags every synthetic-data benchmark takes, and the live-scoring set-up, defined once.

Benchmarks run as scripts (``.venv/bin/python bench/<name>.py``), so they import this
module by its name from their own folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from volpipe.config import Settings, parse_products

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_jobs.live_scoring import LiveScoring


def synthetic_data_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--ticks`` and ``--products``
    (parsed into a tuple of product ids)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=1_000_000, help="synthetic ticks (1000000)")
    parser.add_argument(
        "--products",
        type=parse_products,
        default=("BTC-USD", "ETH-USD"),
        help="comma-separated products (BTC-USD,ETH-USD)",
    )
    return parser


def add_scoring_flag(parser: argparse.ArgumentParser) -> None:
    """``--scoring``: run the stream with live scoring by a champion trained for the run."""
    parser.add_argument(
        "--scoring",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score live with a champion trained on synthetic features first (default: on)",
    )


def train_champion(settings: Settings) -> dict:
    """Trains on ``settings``' features and makes the registered version champion even when the
    promotion gate refused it: a benchmark of scoring speed needs a model, not a good one. The
    version then carries the tag ``promotion.forced_by=benchmark`` beside its verdict."""
    from volpipe.modeling import registry, train

    summary = train.run(settings)
    if not summary["promoted"]:
        version = summary["registered_version"]
        registry.promote(
            settings.mlflow_tracking_uri, settings.model_name, version, {"promotion.forced_by": "benchmark"}
        )
        print(
            f"gate: {summary['decision']} ({summary['reason']}); version {version} made champion anyway for the "
            "benchmark",
            flush=True,
        )
        summary = {**summary, "champion_version": version}
    return summary


@contextlib.contextmanager
def live_champion(settings: Settings, spark: SparkSession, *, enabled: bool) -> Iterator[LiveScoring | None]:
    """With ``enabled``: an MLflow server, a champion trained on 20,000 synthetic rows (not timed)
    and the stream's ``LiveScoring`` following it; else None."""
    if not enabled:
        yield None
        return
    from spark_jobs.live_scoring import LiveScoring
    from volpipe.modeling.synthetic import synthetic_features, write_features
    from volpipe.ops.services import MLFLOW, running

    with running(settings, MLFLOW):
        training = dataclasses.replace(settings, delta_dir=settings.data_dir / "training-delta", train_min_rows=1000)
        write_features(
            training.delta_table("features"),
            synthetic_features(20_000, seed=4, calm_seconds=120.0, burst_seconds=60.0, burst_multiplier=5.0),
        )
        summary = train_champion(training)
        print(f"champion: {summary['model_name']} v{summary['champion_version']} ({summary['candidate']})")
        scoring = LiveScoring(spark, settings)
        scoring.start()
        try:
            yield scoring
        finally:
            scoring.stop()

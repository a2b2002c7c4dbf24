"""Settings of the monitoring and maintenance block: defaults, derived paths, bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from volpipe.config import Settings
from volpipe.errors import ConfigError


def test_defaults(tmp_path: Path):
    settings = Settings.from_env({"PIPELINE_DATA_DIR": str(tmp_path)})
    assert settings.reports_dir == tmp_path / "reports"
    assert settings.monitoring_experiment == "volpipe-monitoring"
    assert settings.drift_share_threshold == 0.5
    assert settings.drift_action == "warn"
    assert settings.drift_trigger_retrain is False
    assert settings.delta_vacuum_retention_hours == 168
    assert settings.delta_vacuum_min_retention_hours == 168


def test_values_are_parsed(tmp_path: Path):
    settings = Settings.from_env(
        {
            "REPORTS_DIR": str(tmp_path / "r"),
            "DRIFT_ACTION": "fail",
            "DRIFT_TRIGGER_RETRAIN": "true",
            "DRIFT_SHARE_THRESHOLD": "0.25",
        }
    )
    assert settings.reports_dir == tmp_path / "r"
    assert (settings.drift_action, settings.drift_trigger_retrain, settings.drift_share_threshold) == (
        "fail",
        True,
        0.25,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DRIFT_ACTION", "retrain", "must be one of fail, warn"),
        ("DRIFT_SHARE_THRESHOLD", "0", "share in (0, 1]"),
        ("DRIFT_SHARE_THRESHOLD", "1.5", "share in (0, 1]"),
        ("DRIFT_TRIGGER_RETRAIN", "maybe", "true or false"),
        ("DELTA_VACUUM_RETENTION_HOURS", "-1", "positive number"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name: str, value: str, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)

"""The batch Spark jobs' command lines (``spark_jobs.entry``): usage errors exit 2 before any session starts."""

from __future__ import annotations

import pytest

from spark_jobs import batch_inference, compare, delta_maintenance, replay


@pytest.mark.parametrize("job", [replay, compare, batch_inference], ids=lambda job: job.__name__)
def test_a_backwards_date_range_is_a_usage_error(job, capsys):
    with pytest.raises(SystemExit) as exited:
        job.main(["--start", "2026-01-02", "--end", "2026-01-01"])
    assert exited.value.code == 2
    assert f"{job.__name__}: error: end 2026-01-01 is before start 2026-01-02" in capsys.readouterr().err


def test_an_unknown_table_is_a_usage_error_naming_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exited:
        delta_maintenance.main(["--tables", "features, nope"])
    assert exited.value.code == 2
    assert "argument --tables: unknown tables ['nope']; known: ticks,features," in capsys.readouterr().err

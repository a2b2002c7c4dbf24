"""The demo's account of a failed DAG run: each unfinished task with the end of each attempt's log."""

from __future__ import annotations

import json

from volpipe.ops.demo import failed_tasks_report
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services.airflow import airflow_home


class RecordedRun:
    """The one REST answer the report needs, as Airflow 3 returns it for a run."""

    def __init__(self, settings, task_instances):
        self.settings = settings
        self._task_instances = task_instances

    def task_instances(self, dag_id, run_id):
        return self._task_instances


def test_a_failed_run_is_reported_with_the_last_log_events_of_every_attempt_of_its_failed_tasks(tmp_path):
    settings = isolated_settings(tmp_path / "data")
    run = "manual__2026-11-29T02:58:57+00:00"
    folder = airflow_home(settings) / "logs" / "dag_id=replay_validation" / f"run_id={run}" / "task_id=replay_features"
    folder.mkdir(parents=True)
    for attempt in (1, 2):
        events = [{"event": f"attempt {attempt} line {i}", "level": "info"} for i in range(30)]
        lines = [json.dumps(e) for e in events] + ["not json: the JVM's own output"]
        (folder / f"attempt={attempt}.log").write_text("\n".join(lines) + "\n")
    client = RecordedRun(settings, [
        {"task_id": "resolve_dates", "state": "success", "try_number": 1},
        {"task_id": "replay_features", "state": "failed", "try_number": 2},
        {"task_id": "compare_with_stream", "state": "upstream_failed", "try_number": 0},
    ])
    report = failed_tasks_report(client, "replay_validation", run, lines=3).splitlines()
    assert report[0] == "  replay_validation.replay_features: failed after 2 attempt(s)"
    assert report[2:5] == ["      attempt 1 line 28", "      attempt 1 line 29", "      not json: the JVM's own output"]
    assert report[6:9] == ["      attempt 2 line 28", "      attempt 2 line 29", "      not json: the JVM's own output"]
    assert report[9] == "  replay_validation.compare_with_stream: upstream_failed after 0 attempt(s)"
    assert not any("resolve_dates" in line for line in report)

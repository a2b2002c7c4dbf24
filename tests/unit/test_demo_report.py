"""The demo's account of a failed DAG run, where its history lies, and which failed run is a verdict."""

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
        events = [{"event": f"attempt {attempt} line {i}", "level": "info"} for i in range(29)]
        events.append(
            {
                "event": f"attempt {attempt} line 29",
                "level": "error",
                "error_detail": [
                    {
                        "exc_type": "AirflowFailException",
                        "exc_value": "trained nothing: no feature rows",
                        "is_cause": False,
                    },
                    {"exc_type": "TrainingDataError", "exc_value": "no feature rows", "is_cause": True},
                ],
            }
        )
        lines = [json.dumps(e) for e in events] + ["not json: the JVM's own output"]
        (folder / f"attempt={attempt}.log").write_text("\n".join(lines) + "\n")
    client = RecordedRun(
        settings,
        [
            {"task_id": "resolve_dates", "state": "success", "try_number": 1},
            {"task_id": "replay_features", "state": "failed", "try_number": 2},
            {"task_id": "compare_with_stream", "state": "upstream_failed", "try_number": 0},
        ],
    )
    report = failed_tasks_report(client, "replay_validation", run, lines=3).splitlines()
    assert report[0] == "  replay_validation.replay_features: failed after 2 attempt(s)"
    reason = "      AirflowFailException: trained nothing: no feature rows"  # the exception, not its cause
    assert report[2:5] == ["      attempt 1 line 29", reason, "      not json: the JVM's own output"]
    assert report[6:9] == ["      attempt 2 line 29", reason, "      not json: the JVM's own output"]
    assert report[9] == "  replay_validation.compare_with_stream: upstream_failed after 0 attempt(s)"
    assert not any("resolve_dates" in line for line in report)


def test_the_history_lies_on_the_days_before_today_with_their_dates():
    """Where train_nightly's default window (the days before the run) looks; the ticks shared out."""
    import datetime as dt

    from volpipe.ops.demo import SESSION_START, history_sessions

    sessions = history_sessions(dt.date(2026, 3, 1), days=3, ticks=30_001)
    assert [day for day, _ in sessions] == [dt.date(2026, 2, 26), dt.date(2026, 2, 27), dt.date(2026, 2, 28)]
    for day, args in sessions:
        start = dt.datetime.fromisoformat(args[args.index("--start") + 1])
        assert start == dt.datetime.combine(day, SESSION_START, tzinfo=dt.UTC)
        assert "--keep-timestamps" in args and args[args.index("--speed") + 1] == "0"
    assert [int(args[args.index("--max-ticks") + 1]) for _, args in sessions] == [10_001, 10_000, 10_000]
    assert len({args[args.index("--seed") + 1] for _, args in sessions}) == 3  # three different days


def test_only_the_promotion_gates_verdict_is_an_accepted_failure_of_train_nightly():
    from volpipe.ops.demo import no_skill_verdict

    assert no_skill_verdict(
        {"train_and_register": "success", "announce_champion": "failed", "evaluate_walk_forward": "success"}
    )
    assert not no_skill_verdict(
        {
            "train_and_register": "failed",
            "announce_champion": "upstream_failed",
            "evaluate_walk_forward": "upstream_failed",
        }
    )
    assert not no_skill_verdict(
        {"train_and_register": "success", "announce_champion": "failed", "evaluate_walk_forward": "failed"}
    )

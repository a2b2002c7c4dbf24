"""The supervisor of the live path, on small shell programs: backoff, restarts counted, orphans
killed, a stop that reaches the whole tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.ops.harness import survivors, wait_until
from volpipe.ops.services.process import SupervisorState, process_tree
from volpipe.ops.services.supervisor import backoff


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_long_run():
    settings = Settings.from_env(
        {"RESTART_INITIAL_SECONDS": "1", "RESTART_MAX_SECONDS": "5", "RESTART_RESET_SECONDS": "60"}
    )
    waits, wait = [], 0.0
    for _ in range(5):
        wait = backoff(wait, ran_seconds=2, settings=settings)
        waits.append(wait)
    assert waits == [1, 2, 4, 5, 5]
    assert backoff(5, ran_seconds=61, settings=settings) == 1


def _supervise(tmp_path, script: str, stop_timeout: float = 5) -> subprocess.Popen:
    env = {**os.environ, "RESTART_INITIAL_SECONDS": "0.1", "RESTART_MAX_SECONDS": "0.2"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "volpipe.ops.services.supervisor",
            "--name",
            "t",
            "--state",
            str(tmp_path / "t.json"),
            "--stop-timeout",
            str(stop_timeout),
            "--",
            "sh",
            "-c",
            script,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stderr=(tmp_path / "t.log").open("wb"),
        start_new_session=True,
    )


def _state(tmp_path) -> SupervisorState | None:
    return SupervisorState.load(tmp_path / "t.json")


def test_an_exiting_program_is_restarted_counted_and_its_orphans_killed(tmp_path):
    # Each run leaves an orphan (a background sleep) behind, as a killed spark-submit JVM leaves its driver.
    supervisor = _supervise(tmp_path, f"sleep 300 & echo $! >> {tmp_path}/orphans; sleep 0.3; exit 3")
    try:
        wait_until(lambda: (s := _state(tmp_path)) is not None and s.restarts >= 3, 90, "three restarts")
        state = _state(tmp_path)
        assert state.last_exit == 3 and state.supervisor_pid == supervisor.pid
        orphans = [int(pid) for pid in (tmp_path / "orphans").read_text().split()]
        # Every run that ended has its orphan killed before the next start.
        assert not any(
            psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            for pid in orphans[: state.restarts - 1]
        )
        tree = _stop(supervisor)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert survivors(tree) == []
    log = (tmp_path / "t.log").read_text()
    assert "program=t exited returncode=3" in log and "restart 3 in 0.2s" in log


def _stop(supervisor) -> list:
    """SIGTERMs the supervisor and waits for a clean exit; returns its tree as it was before."""
    tree = process_tree(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    return tree


@pytest.mark.parametrize("script", ["sleep 300", "trap '' TERM; sleep 300 & sleep 300"])
def test_a_stop_ends_the_program_and_its_whole_tree_even_when_it_ignores_sigterm(tmp_path, script):
    supervisor = _supervise(tmp_path, script, stop_timeout=1)
    try:
        wait_until(lambda: (s := _state(tmp_path)) is not None and s.pid is not None, 90, "program started")
        wait_until(lambda: len(process_tree(supervisor.pid)) >= 2, 30, "program's tree")
        tree = _stop(supervisor)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert survivors(tree) == []
    assert _state(tmp_path).pid is None and _state(tmp_path).restarts == 0


def test_a_killed_supervisor_takes_its_program_down_with_it(tmp_path):
    """Otherwise `down` would find no supervisor and the program would run on, unmanaged."""
    supervisor = _supervise(tmp_path, "exec sleep 300")
    try:
        wait_until(lambda: (s := _state(tmp_path)) is not None and s.pid is not None, 90, "program started")
        program = psutil.Process(_state(tmp_path).pid)
        supervisor.kill()
        supervisor.wait(10)
        program.wait(10)  # psutil.TimeoutExpired while it still runs
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)

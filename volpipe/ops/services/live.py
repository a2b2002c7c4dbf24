"""The live path as supervised services: the ingestor and the feature stream.

Inputs: ``Settings`` (COINBASE_WS_URL and the rest, RESTART_*, STREAM_STOP_TIMEOUT_SECONDS).
Outputs: ``python -m ingest`` and ``spark-submit $(python -m volpipe.spark submit-args)
spark_jobs/features_stream.py`` (the commands users run by hand), each under a
``supervisor`` that restarts it when it exits; their logs, pid and state files under
``DATA_DIR/<name>``; and for `status` each one's pid, uptime, restarts and the stream's lag.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from volpipe.config import PROJECT_ROOT, Settings
from volpipe.ops.services.process import TELEMETRY_OFF, ManagedProcess, SupervisorState


def _run_dir(settings: Settings, name: str) -> Path:
    return settings.data_dir / name


def state_file(settings: Settings, name: str) -> Path:
    """Where the supervisor of ``name`` keeps its SupervisorState (pid, start, restarts)."""
    return _run_dir(settings, name) / f"{name}.state.json"


def _program_running(settings: Settings, name: str, supervisor: ManagedProcess) -> bool:
    state = SupervisorState.load(state_file(settings, name))
    return (
        supervisor.pid() is not None
        and state is not None
        and state.supervisor_pid == supervisor.pid()
        and state.pid is not None
    )


def program_env(settings: Settings) -> dict[str, str]:
    """A live program's environment: ``settings`` as variables (``as_env``), the venv first on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **settings.as_env(),
        # spark-submit finds its Spark and its Python through the venv (docs/streaming.md).
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYSPARK_PYTHON": sys.executable,
        **TELEMETRY_OFF,
    }


def stream_command(settings: Settings) -> list[str]:
    """``spark-submit $(python -m volpipe.spark submit-args) spark_jobs/features_stream.py``, as argv."""
    from volpipe.spark import submit_command

    return submit_command(settings, "features_stream")


def _supervised(settings: Settings, name: str, program: list[str], stop_timeout: float) -> ManagedProcess:
    supervisor = ManagedProcess(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "volpipe.ops.services.supervisor",
            "--name",
            name,
            "--state",
            str(state_file(settings, name)),
            "--stop-timeout",
            str(stop_timeout),
            "--",
            *program,
        ],
        run_dir=_run_dir(settings, name),
        env=program_env(settings),
        cwd=PROJECT_ROOT,
        ready=lambda: _program_running(settings, name, supervisor),
        start_timeout=60,
        # The supervisor's own stop: the program's polite stop plus the time to reap its tree.
        stop_timeout=stop_timeout + 30,
    )
    return supervisor


def ingestor(settings: Settings) -> ManagedProcess:
    """``python -m ingest`` under a supervisor (not started)."""
    return _supervised(
        settings, "ingestor", [sys.executable, "-m", "ingest"], stop_timeout=settings.shutdown_flush_seconds + 20
    )


def stream(settings: Settings) -> ManagedProcess:
    """``stream_command`` under a supervisor (not started)."""
    return _supervised(
        settings, "stream", stream_command(settings), stop_timeout=settings.stream_stop_timeout_seconds + 15
    )


def _latest(folder: Path) -> tuple[int, Path] | None:
    numbered = [(int(path.name), path) for path in folder.glob("[0-9]*") if path.name.isdigit()]
    return max(numbered) if numbered else None


def stream_lag(settings: Settings) -> int | None:
    """Records of KAFKA_INPUT_TOPIC the stream has not planned yet: end offsets minus the offsets
    of the checkpoint's latest ``offsets/`` file. Read from files and broker metadata only, so
    it does not disturb the stream. None when the stream has no checkpoint or Kafka is down."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    latest = _latest(settings.checkpoint("features") / "offsets")
    if latest is None:
        return None
    planned = json.loads(latest[1].read_text().splitlines()[-1]).get(settings.kafka_input_topic, {})
    consumer = Consumer({**settings.kafka_client_config(), "group.id": "volpipe-status", "enable.auto.commit": False})
    try:
        topic = consumer.list_topics(settings.kafka_input_topic, timeout=5).topics[settings.kafka_input_topic]
        lag = 0
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.kafka_input_topic, partition), timeout=5)
            lag += high - int(planned.get(str(partition), low))
        return lag
    except (KafkaException, KeyError):
        return None
    finally:
        consumer.close()


def _describe(settings: Settings, name: str, process: ManagedProcess) -> str:
    state = SupervisorState.load(state_file(settings, name))
    if process.pid() is None or state is None:
        return f"log {process.log_file}"
    running = (
        f"pid {state.pid} up {time.time() - state.started_at:.0f}s" if state.pid and state.started_at else "restarting"
    )
    last = f" (last exit {state.last_exit})" if state.last_exit is not None else ""
    return f"{running}, restarts {state.restarts}{last}, log {process.log_file}"


def ingestor_where(settings: Settings) -> str:
    """Pid, uptime, restarts, the exchange it reads and its log (for `status`)."""
    return f"{_describe(settings, 'ingestor', ingestor(settings))}, exchange {settings.coinbase_ws_url}"


def stream_where(settings: Settings) -> str:
    """Pid, uptime, restarts, lag behind KAFKA_INPUT_TOPIC and the log (for `status`)."""
    lag = stream_lag(settings)
    return f"{_describe(settings, 'stream', stream(settings))}, lag {'?' if lag is None else lag} records"

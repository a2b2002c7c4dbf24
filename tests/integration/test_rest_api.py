"""The REST example of docs/orchestration.md, run as written against a real `airflow standalone`.

Only the port changes (the test's Airflow listens on a free one); the password is read from
where the page says, under the working directory's `data/`.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from volpipe.config import PROJECT_ROOT
from volpipe.ops.health import AirflowClient, wait_for_dag
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import AIRFLOW, running

pytestmark = pytest.mark.integration


def test_documented_curl_example_triggers_a_run_and_the_api_wants_a_token(tmp_path):
    settings = isolated_settings(tmp_path / "data")
    block = re.findall(r"```bash\n(.*?)```", (PROJECT_ROOT / "docs" / "orchestration.md").read_text(), re.S)[0]
    base = f"http://127.0.0.1:{settings.airflow_port}"
    with running(settings, AIRFLOW):
        wait_for_dag(AirflowClient(settings), "replay_validation")
        result = subprocess.run(["bash", "-c", block.replace("http://localhost:8080", base)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        run = json.loads(result.stdout.strip().splitlines()[-1])
        assert run["dag_id"] == "replay_validation" and run["conf"] == {"start": "2026-01-01", "end": "2026-01-01"}
        assert run["state"] in ("queued", "running"), run
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/v2/dags", timeout=10)
        assert refused.value.code == 401

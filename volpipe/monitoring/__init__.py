"""Monitoring of the model's inputs and outputs with Evidently, run by the monitoring DAG.

``drift`` builds the reports from pandas frames (pure); ``data`` reads the reference window
from the champion's MLflow run (through ``volpipe.modeling.registry``); ``run`` reads the rows
with ``volpipe.modeling.dataset.read_window``, ties them together, writes HTML and JSON under
``REPORTS_DIR/evidently/<date>/``, logs them to an MLflow run and returns the verdict (with the
days to retrain on); ``volpipe.orchestration.enforce_drift`` acts on it in the DAG.
``python -m volpipe.monitoring --help`` runs it from a shell. docs/monitoring.md explains it.
``synthetic`` makes rows and a stand-in champion for its tests and benchmarks.
"""

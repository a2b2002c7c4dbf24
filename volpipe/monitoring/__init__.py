"""Monitoring of the model's inputs and outputs with Evidently, run by the monitoring DAG.

``drift`` builds the reports from pandas frames (pure); ``data`` reads the reference window
from the champion's MLflow run and the rows from Delta; ``run`` ties them together, writes
HTML and JSON under ``REPORTS_DIR/evidently/<date>/`` and logs them to an MLflow run.
``python -m volpipe.monitoring --help`` runs it from a shell. docs/monitoring.md explains it.
"""

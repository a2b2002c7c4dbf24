"""From the ``features`` table to registered models: labels, dataset, training, evaluation, registry.

``label`` is pure (NumPy/pandas); ``train``, ``evaluate`` and ``registry`` import scikit-learn
and MLflow inside their functions, so DAG files can import this package cheaply.
"""

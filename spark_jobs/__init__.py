"""Spark entrypoints and their plumbing.

Entrypoints (each ``python -m spark_jobs.<name>`` or ``spark-submit spark_jobs/<name>.py``):
``features_stream`` (Kafka -> features, live predictions -> Delta + Kafka), ``replay`` (the
NDJSON recomputed in batch), ``compare`` (stream vs replay, bit for bit), ``batch_inference``
(the champion scores a range into ``predictions``), ``delta_maintenance`` (OPTIMIZE, VACUUM).
The batch jobs' ``main`` share ``entry`` (flags, logging, settings, session, exit codes).
Plumbing of the stream: ``delta_sink`` (exactly-once Delta appends), ``delta_tables`` (table
creation and properties), ``kafka_rows`` (features and predictions published as computed),
``live_scoring`` (the champion pinned per micro-batch).
"""

"""volpipe: the shared package of the crypto volatility pipeline.

Configuration, record formats, the feature kernel, the Spark session builder and the
embedded-service commands live here; `ingest/`, `spark_jobs/` and `dags/` are entrypoints.
"""

# One image for every project process under docker compose: the ingestor, the Spark master,
# worker and streaming job, Airflow's components and the MLflow server. It is built the way
# `make setup` builds a developer machine: pinned Python packages and Maven-fetched jars.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven make procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/volpipe
COPY requirements.txt requirements.lock pyproject.toml ./
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir -r requirements.txt -c requirements.lock \
 # Airflow's metadata DB is PostgreSQL under compose (its components share it across containers).
 && .venv/bin/pip install --no-cache-dir psycopg2-binary==2.9.13
COPY jvm ./jvm
RUN mvn -B -q -f jvm/pom.xml package && rm -rf /root/.m2
COPY . .
RUN .venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e .

ENV PATH=/opt/volpipe/.venv/bin:$PATH \
    PIPELINE_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME /data

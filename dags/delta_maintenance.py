"""
### Delta maintenance

Weekly upkeep of the pipeline's Delta tables (`ticks`, `features`, `quarantine`,
`features_replay`, `predictions`, those that exist): `OPTIMIZE` compacts each day's small
streaming files and Z-orders them by `product_id` and time (the filters of
`docs/querying.md`), then `VACUUM` deletes data files no version within the retention
(`DELTA_VACUUM_RETENTION_HOURS`, 7 days) still needs. Row counts are checked unchanged; the
stream's exactly-once check reads the log, which VACUUM never touches (`docs/monitoring.md`).

Trigger it from the UI with *dry_run* to see what VACUUM would delete.
Logic: `spark_jobs.delta_maintenance`.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Param, dag

from volpipe.orchestration import ASSET_TABLES, DEFAULT_ARGS, START_DATE, TAGS, PipelineSparkSubmitOperator, table_asset


@dag(
    dag_id=Path(__file__).stem,
    description="OPTIMIZE (Z-order by product and time) and VACUUM the Delta tables; row counts checked",
    doc_md=__doc__,
    schedule="0 3 * * 0",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "maintenance"],
    default_args=DEFAULT_ARGS,
    params={
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="No OPTIMIZE; VACUUM only lists what it would delete."
        )
    },
)
def delta_maintenance():
    PipelineSparkSubmitOperator(
        task_id="optimize_and_vacuum",
        job="delta_maintenance",
        application_args=["{{ '--dry-run' if params.dry_run else '--no-dry-run' }}"],
        inlets=[table_asset(name) for name in ASSET_TABLES],
    )


delta_maintenance()

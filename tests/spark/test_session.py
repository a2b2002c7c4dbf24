"""The project's SparkSession: Delta tables and the Kafka connector work from the built jars."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

pytestmark = [pytest.mark.spark, pytest.mark.integration]


def test_session_is_configured_for_the_pipeline(spark):
    conf = spark.sparkContext.getConf()
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert "RocksDBStateStoreProvider" in spark.conf.get("spark.sql.streaming.stateStore.providerClass")
    assert conf.get("spark.ui.enabled") == "false"
    jvm = spark._jvm.java.lang
    assert jvm.System.getProperty("user.timezone") == "UTC"
    collectors = jvm.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert {collectors.get(i).getName() for i in range(collectors.size())} == {"PS Scavenge", "PS MarkSweep"}


def test_delta_table_write_read_and_history(spark, tmp_path):
    from delta.tables import DeltaTable

    path = str(tmp_path / "ticks")
    first = spark.createDataFrame(
        [("BTC-USD", 1, 100.5), ("ETH-USD", 2, 3000.25)], "product_id string, ingest_seq long, midprice double"
    )
    first.write.format("delta").save(path)
    spark.createDataFrame([("BTC-USD", 3, 100.75)], first.schema).write.format("delta").mode("append").save(path)

    rows = spark.read.format("delta").load(path).orderBy("ingest_seq").collect()
    assert [(r.product_id, r.ingest_seq, r.midprice) for r in rows] == [
        ("BTC-USD", 1, 100.5),
        ("ETH-USD", 2, 3000.25),
        ("BTC-USD", 3, 100.75),
    ]
    history = DeltaTable.forPath(spark, path).history().orderBy("version").collect()
    assert [h.version for h in history] == [0, 1]
    assert [h.operation for h in history] == ["WRITE", "WRITE"]
    # Time travel reads the first version back.
    assert spark.read.format("delta").option("versionAsOf", 0).load(path).count() == 2


def test_parquet_dictionaries_only_for_repeating_strings(spark, tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "features"
    # ticker_idx repeats, but dictionaries on numbers cost more CPU than they save on real data.
    rows = spark.range(20_000).selectExpr(
        "if(id % 2 = 0, 'BTC-USD', 'ETH-USD') AS product_id", "id % 3 AS ticker_idx", "rand(7) AS midprice"
    )
    rows.coalesce(1).write.format("delta").save(str(path))
    (data_file,) = path.glob("*.parquet")
    meta = pq.ParquetFile(data_file).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "PLAIN_DICTIONARY" in encodings["product_id"] or "RLE_DICTIONARY" in encodings["product_id"]
    for number in ("ticker_idx", "midprice"):
        assert not {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & set(encodings[number]), encodings


def test_kafka_topic_is_read_through_the_connector(spark, kafka_broker):
    settings = kafka_broker
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    sent = {f"value-{i}".encode() for i in range(50)}
    for value in sent:
        producer.produce(settings.kafka_output_topic, key=b"BTC-USD", value=value)
    assert producer.flush(30) == 0

    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.kafka_output_topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    rows = frame.select("key", "value", "partition", "offset").collect()
    assert {bytes(r.value) for r in rows} == sent
    assert {bytes(r.key) for r in rows} == {b"BTC-USD"}


def test_a_local_driver_binds_loopback_and_a_cluster_driver_keeps_spark_defaults(tmp_path):
    from volpipe.ops.sandbox import isolated_settings
    from volpipe.spark import spark_conf

    local = spark_conf(isolated_settings(tmp_path, SPARK_MASTER="local[2]"))
    assert local["spark.driver.bindAddress"] == local["spark.driver.host"] == "127.0.0.1"
    cluster = spark_conf(isolated_settings(tmp_path, SPARK_MASTER="spark://spark-master:7077"))
    assert "spark.driver.bindAddress" not in cluster and "spark.driver.host" not in cluster


def test_the_checkpoint_is_written_through_the_filesystem_api(spark, tmp_path):
    """Spark's default manager (FileContext) forks a `readlink` per checkpoint file without Hadoop's native library."""
    jvm = spark._jvm
    managers = jvm.org.apache.spark.sql.execution.streaming.checkpointing.CheckpointFileManager
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
    manager = managers.create(jvm.org.apache.hadoop.fs.Path(str(tmp_path)), hadoop_conf)
    assert manager.getClass().getSimpleName() == "FileSystemBasedCheckpointFileManager"

"""The embedded single-node KRaft Kafka broker, run from the jars `make setup` fetched.

Inputs: ``Settings`` (listener from KAFKA_BOOTSTRAP_SERVERS, KAFKA_CONTROLLER_PORT, topic
names and partitions; with KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT the client listener asks
for SASL/PLAIN and knows one user, the clients' own). Outputs: a broker process whose config, data and log live under
``DATA_DIR/kafka``, and the pipeline's topics.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

from volpipe.config import PROJECT_ROOT, Settings, jaas_quoted
from volpipe.errors import ServiceError, SetupError
from volpipe.ops.services.process import ManagedProcess, port_open, private_dir, private_file

log = logging.getLogger(__name__)

KAFKA_JARS = PROJECT_ROOT / ".jars" / "kafka"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{{ISO8601}}{{UTC}}] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _home(settings: Settings) -> Path:
    return settings.data_dir / "kafka"


def _client_listener(settings: Settings) -> tuple[str, list[str]]:
    """The client listener's name (= its protocol) and the lines that secure it.

    Raises:
        SetupError: The clients are configured for a protocol the embedded broker does not offer.
    """
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if protocol == "PLAINTEXT":
        return protocol, []
    if protocol != "SASL_PLAINTEXT" or mechanism != "PLAIN":
        raise SetupError(
            f"the embedded broker offers PLAINTEXT or SASL_PLAINTEXT with PLAIN, not KAFKA_SECURITY_PROTOCOL="
            f"{protocol} KAFKA_SASL_MECHANISM={mechanism}: point KAFKA_BOOTSTRAP_SERVERS at your own brokers"
        )
    client = settings.kafka_client_config()
    user, password = client["sasl.username"], jaas_quoted(client["sasl.password"])
    if not user.replace("-", "").replace("_", "").isalnum():
        raise SetupError(f"KAFKA_SASL_USERNAME={user!r}: the embedded broker takes letters, digits, - and _ only")
    # The broker logs in to itself (inter-broker) as the one user it knows: the clients'.
    jaas = (
        f"org.apache.kafka.common.security.plain.PlainLoginModule required username={jaas_quoted(user)} "
        f"password={password} user_{user}={password};"
    )
    return protocol, [
        "sasl.enabled.mechanisms=PLAIN",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        # A .properties value: its backslashes are escapes.
        "listener.name.sasl_plaintext.plain.sasl.jaas.config=" + jaas.replace("\\", "\\\\"),
    ]


def server_properties(settings: Settings) -> str:
    """The broker's server.properties: one node that is both broker and KRaft controller."""
    host, port = settings.kafka_listener
    controller = settings.kafka_controller_port
    home = _home(settings)
    client, security = _client_listener(settings)
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={host}:{controller}",
            f"listeners={client}://{host}:{port},CONTROLLER://{host}:{controller}",
            f"advertised.listeners={client}://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client}:{client}",
            *security,
            f"log.dirs={home / 'data'}",
            f"num.partitions={settings.kafka_topic_partitions}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Room for the largest record the ingestor writes (a dead letter of a maximal frame).
            f"message.max.bytes={settings.kafka_max_message_bytes}",
            # Topics are created by the project with its partition count, never by accident.
            "auto.create.topics.enable=false",
            "",
        ]
    )


def broker(settings: Settings) -> ManagedProcess:
    """The broker as a managed process (not started)."""
    if not any(KAFKA_JARS.glob("kafka_*.jar")):
        raise SetupError(f"no Kafka broker jars in {KAFKA_JARS}: run `make setup`")
    home = _home(settings)
    host, port = settings.kafka_listener
    return ManagedProcess(
        name="kafka",
        argv=[
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={home / 'logs'}",
            "-cp",
            f"{KAFKA_JARS}/*",
            "kafka.Kafka",
            str(home / "server.properties"),
        ],
        run_dir=home,
        port=port,
        ready=lambda: port_open(host, port) and _metadata_ready(settings),
        start_timeout=90,
        stop_timeout=45,
    )


def prepare(settings: Settings) -> None:
    """Writes the broker's config files; formats its storage on the very first start."""
    home = _home(settings)
    private_dir(home)
    (home / "logs").mkdir(exist_ok=True)
    # It holds the SASL password when SASL is on.
    private_file(home / "server.properties").write_text(server_properties(settings))
    (home / "log4j2.properties").write_text(_LOG4J2.format(log_dir=home / "logs"))
    if broker(settings).pid() is None and not (home / "data" / "meta.properties").exists():
        _format_storage(home)


def where(settings: Settings) -> str:
    """Where users reach it and where it keeps its data (for `status` and the demo)."""
    host, port = settings.kafka_listener
    return f"bootstrap {host}:{port}, data {_home(settings)}"


def _format_storage(home: Path) -> None:
    import subprocess

    cluster_id = _cluster_id()
    argv = [
        "java",
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp",
        f"{KAFKA_JARS}/*",
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        f"--cluster-id={cluster_id}",
        "-c",
        str(home / "server.properties"),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"kafka storage format failed: {result.stdout}{result.stderr}")
    log.info("service=kafka formatted storage cluster_id=%s", cluster_id)


def _cluster_id() -> str:
    """A random cluster id in Kafka's format (base64url of 16 bytes, never starting with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: it would read as an option
            return cluster_id


def _metadata_ready(settings: Settings) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**settings.kafka_client_config()})
    try:
        admin.list_topics(timeout=2)
    except Exception:  # any failure means "not ready yet"
        return False
    return True


def create_topics(settings: Settings) -> list[str]:
    """Creates the pipeline's topics that do not exist yet. Returns the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**settings.kafka_client_config()})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        settings.kafka_input_topic,
        settings.kafka_output_topic,
        settings.kafka_predictions_topic,
        settings.kafka_deadletter_topic,
    ]
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=settings.kafka_topic_partitions, replication_factor=1) for name in missing]
    )
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:  # re-raised with the topic named
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ServiceError(f"could not create topic {name}: {exc}") from exc
        log.info("service=kafka topic=%s partitions=%s created", name, settings.kafka_topic_partitions)
    return missing

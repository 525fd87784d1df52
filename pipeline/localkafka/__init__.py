"""A real single-node Apache Kafka broker for tests and laptops, fetched from Maven Central.

No Docker and no tarball: `ensure_jars` asks Maven for the runtime classpath of
`org.apache.kafka:kafka_2.13` (plus a log4j2 backend) once and caches it under
`cache_dir()/kafka/<version>/libs`; `LocalKafka` formats a KRaft log directory and runs
`kafka.Kafka` as one combined broker+controller node listening on 127.0.0.1 only.

Needs Java 17+ and Maven (`mvn`) on PATH. Alternatives when those are missing: point
`MICRODC_KAFKA_BOOTSTRAP` at any broker, or run `docker compose -f docker-compose.kafka.yml up -d
kafka` and use `127.0.0.1:9092`.

`LocalKafka(..., sasl_users={"alice": "secret"})` serves clients on a SASL_PLAINTEXT listener
(mechanism PLAIN) instead, for tests of authenticated clients; the KRaft controller listener
stays PLAINTEXT on loopback.

Humans can keep one running in the background (`up`, `down`, `status` here)::

    microdc kafka up        # prints the bootstrap address
    microdc kafka status
    microdc kafka down

Modules: `jars` (Maven fetch and cache), `config` (server.properties, SASL, cluster ids, ports),
`process` (`LocalKafka`: the JVM broker, started, probed, stopped), `daemon` (detached mode),
`common` (the bootstrap variable, the fix-it hint, a file lock).
"""

from pipeline.localkafka.common import BOOTSTRAP_ENV, HOW_TO_GET_A_BROKER
from pipeline.localkafka.config import SASL_LISTENER, free_ports, new_cluster_id, server_properties
from pipeline.localkafka.daemon import down, status, up
from pipeline.localkafka.jars import CACHE_ENV, KAFKA_VERSION, cache_dir, ensure_jars, jars_dir
from pipeline.localkafka.process import LocalKafka

__all__ = [
    "BOOTSTRAP_ENV",
    "CACHE_ENV",
    "HOW_TO_GET_A_BROKER",
    "KAFKA_VERSION",
    "SASL_LISTENER",
    "LocalKafka",
    "cache_dir",
    "down",
    "ensure_jars",
    "free_ports",
    "jars_dir",
    "new_cluster_id",
    "server_properties",
    "status",
    "up",
]

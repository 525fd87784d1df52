"""Create the pipeline's Kafka topics idempotently, with the partition counts the contracts declare.

`ensure_topics` creates what is missing, leaves matching topics alone and refuses to go on when
an existing topic has a different partition count than its contract. Co-partitioned topics
(`TopicSpec.co_partitioned`: node telemetry and request logs) may have any count, but the same
one: a missing one is created with its partner's count, and `ensure_topics_counted` tells the
worker how many there are.
It never sends a metadata request for a topic that may not exist, so a broker with
`auto.create.topics.enable=true` cannot create it behind our back with the wrong settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pipeline.contracts.topics import TopicSpec
from pipeline.errors import KafkaUnavailableError, PipelineError
from pipeline.kafka_security import KafkaSecurity, client_kwargs, connect_errors

__all__ = [
    "CoPartitionMismatchError",
    "TopicCreationError",
    "TopicMismatchError",
    "ensure_topics",
    "ensure_topics_counted",
    "ensure_topics_sync",
]

_TOPIC_ALREADY_EXISTS = 36


class TopicMismatchError(PipelineError):
    """An existing topic's partition count differs from its contract."""

    exit_code = 2

    def __init__(self, topic: str, expected: int, actual: int, bootstrap: str) -> None:
        self.topic = topic
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"topic {topic} on {bootstrap} has {actual} partitions but its contract says "
            f"{expected}; delete and recreate it (data loss) or use a fresh topic prefix"
        )


class CoPartitionMismatchError(PipelineError):
    """Topics read partition by partition together have different partition counts."""

    exit_code = 2

    def __init__(self, counts: dict[str, int], bootstrap: str) -> None:
        self.counts = counts
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(counts.items()))
        most = max(counts.values())
        super().__init__(
            f"topics on {bootstrap} are read partition by partition together but {listed} "
            f"partitions; give them the same count, e.g. `kafka-topics.sh --alter --topic "
            f"<topic> --partitions {most}` for the smaller ones (records already written stay "
            "where they are, which the worker tolerates: any partitioner gives its numbers)"
        )


class TopicCreationError(PipelineError):
    """The broker refused to create a topic (bad config, too few brokers, ...)."""

    def __init__(self, topic: str, code: int, message: str | None, bootstrap: str) -> None:
        self.topic = topic
        self.code = code
        detail = f": {message}" if message else ""
        super().__init__(f"could not create topic {topic} on {bootstrap} (error {code}){detail}")


def _partition_counts(topics: list[dict[str, Any]]) -> dict[str, int]:
    """Topic name -> partition count, from aiokafka's `describe_topics` output (no errors)."""
    return {
        str(topic["topic"]): len(topic["partitions"])
        for topic in topics
        if topic.get("error_code", 0) == 0
    }


def _all_have_leaders(topics: list[dict[str, Any]], names: set[str]) -> bool:
    seen = {
        str(topic["topic"])
        for topic in topics
        if topic.get("error_code", 0) == 0
        and topic["partitions"]
        and all(
            p.get("error_code", 0) == 0 and p.get("leader", -1) >= 0 for p in topic["partitions"]
        )
    }
    return names <= seen


async def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the topics of `specs` that do not exist yet; return the names created.

    Each topic gets `spec.partitions` partitions (a co-partitioned one its existing partner's
    count), `replication_factor` replicas and `spec.config`. Existing topics are accepted if
    their partition count matches (co-partitioned ones: if the group's counts are equal),
    otherwise `TopicMismatchError` / `CoPartitionMismatchError`. Returns once every topic in
    `specs` has a leader for each partition, so producers can use them right away. Raises
    `KafkaUnavailableError` if the broker cannot be reached within `timeout` seconds and
    `TopicCreationError` if it refuses a topic. `security`: how to connect (default PLAINTEXT).
    """
    created, _ = await ensure_topics_counted(
        bootstrap,
        specs,
        replication_factor=replication_factor,
        timeout=timeout,
        security=security,
    )
    return created


async def ensure_topics_counted(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30,
    security: KafkaSecurity | None = None,
) -> tuple[list[str], dict[str, int]]:
    """`ensure_topics`, also returning every topic's partition count once it is ready."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    wanted: dict[str, TopicSpec] = {}
    for spec in specs:
        other = wanted.setdefault(spec.name, spec)
        if other.partitions != spec.partitions:
            raise ValueError(f"topic {spec.name} is declared twice with different partitions")
    if not wanted:
        return [], {}

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(int(timeout * 1000), 1000),
        client_id="microdc-admin",
        **client_kwargs(security),
    )
    created: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            with connect_errors(bootstrap, security):
                await admin.start()
            existing = set(await admin.list_topics()) & wanted.keys()
            counts: dict[str, int] = {}
            if existing:
                counts = _partition_counts(await admin.describe_topics(sorted(existing)))
                _check_counts(counts, wanted, bootstrap)
            missing = [spec for name, spec in wanted.items() if name not in existing]
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            _count_for(spec, wanted, counts),
                            replication_factor,
                            topic_configs=dict(spec.config),
                        )
                        for spec in missing
                    ],
                    timeout_ms=max(int(timeout * 1000), 1000),
                )
                raced: list[str] = []
                for topic, code, *rest in response.topic_errors:
                    if code == 0:
                        created.append(str(topic))
                    elif code == _TOPIC_ALREADY_EXISTS:  # someone else created it meanwhile
                        raced.append(str(topic))
                    else:
                        raise TopicCreationError(
                            str(topic),
                            int(code),
                            str(rest[0]) if rest and rest[0] else None,
                            bootstrap,
                        )
                if raced:
                    counts |= _partition_counts(await admin.describe_topics(raced))
                    _check_counts(counts, wanted, bootstrap)
            # Only existing topics are described here, so nothing can be auto-created.
            names = set(wanted)
            while not _all_have_leaders(
                described := await admin.describe_topics(sorted(names)), names
            ):
                await asyncio.sleep(0.05)
            counts = _partition_counts(described)
            _check_counts(counts, wanted, bootstrap)
    except TimeoutError as exc:
        raise KafkaUnavailableError(
            f"could not ensure topics on {bootstrap} within {timeout:g} s "
            f"(created so far: {created or 'none'})"
        ) from exc
    except KafkaError as exc:
        raise KafkaUnavailableError(f"Kafka at {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()
    return created, counts


def _count_for(spec: TopicSpec, wanted: dict[str, TopicSpec], counts: dict[str, int]) -> int:
    """How many partitions a missing topic gets: its contract's, or a co-partitioned partner's
    that exists already."""
    if spec.co_partitioned is not None:
        for name, other in sorted(wanted.items()):
            if other.co_partitioned == spec.co_partitioned and name in counts:
                return counts[name]
    return spec.partitions


def _check_counts(counts: dict[str, int], wanted: dict[str, TopicSpec], bootstrap: str) -> None:
    groups: dict[str, dict[str, int]] = {}
    for name, actual in sorted(counts.items()):
        spec = wanted[name]
        if spec.co_partitioned is not None:
            groups.setdefault(spec.co_partitioned, {})[name] = actual
        elif actual != spec.partitions:
            raise TopicMismatchError(name, spec.partitions, actual, bootstrap)
    for group in groups.values():
        if len(set(group.values())) > 1:
            raise CoPartitionMismatchError(group, bootstrap)


def ensure_topics_sync(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """`ensure_topics` for synchronous callers (CLI, test fixtures); not inside a running loop."""
    return asyncio.run(
        ensure_topics(
            bootstrap,
            list(specs),
            replication_factor=replication_factor,
            timeout=timeout,
            security=security,
        )
    )

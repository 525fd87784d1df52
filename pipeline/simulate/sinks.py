"""Where simulated records go: JSON-lines files (one per topic) or Kafka (keyed, idempotent)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from aiokafka import AIOKafkaProducer

from pipeline.contracts.partitioning import partition_for
from pipeline.contracts.topics import INPUT_TOPICS, TopicSpec
from pipeline.errors import PipelineError
from pipeline.kafka_security import KafkaSecurity, client_kwargs, connect_errors
from pipeline.simulate.generator import Envelope


class JsonlSink:
    """Appends each record's JSON as one line to `<out_dir>/<topic>.jsonl`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._files: dict[str, IO[bytes]] = {}

    def __enter__(self) -> JsonlSink:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for spec in INPUT_TOPICS:
                self._files[spec.name] = (self.out_dir / f"{spec.name}.jsonl").open("wb")
        except OSError as exc:
            raise PipelineError(f"cannot write simulator output to {self.out_dir}: {exc}") from exc
        return self

    def write(self, batch: Iterable[Envelope]) -> None:
        files = self._files
        for env in batch:
            files[env.topic.name].write(env.value + b"\n")

    def paths(self) -> dict[str, Path]:
        return {name: Path(f.name) for name, f in self._files.items()}

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for f in self._files.values():
            f.close()


class KafkaSink:
    """Produces envelopes with per-partition record batches (fast path of aiokafka).

    Keys follow the topic contracts; the partition is the default partitioner's choice for the key,
    so Java and Python producers agree. Kafka timestamps are left to the producer (ingestion time):
    event time travels in the payload, and stamping old event times (replays, backfills,
    simulated history) would make the broker's time-based retention delete the data at once.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "",
        batch_bytes: int = 512 * 1024,
        client_options: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.security = security
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=batch_bytes,
            request_timeout_ms=30_000,
            **client_kwargs(security),
            **(client_options or {}),
        )
        self._batches: dict[tuple[str, int], Any] = {}
        self._partitions: dict[str, int] = {}
        self._round_robin = itertools.count()
        self._pending: list[Any] = []

    async def __aenter__(self) -> KafkaSink:
        try:
            with connect_errors(self.bootstrap, self.security):
                await self._producer.start()
        except Exception:
            await self._producer.stop()
            raise
        for spec in INPUT_TOPICS:
            name = self._name(spec)
            parts = await self._producer.partitions_for(name)
            if not parts:
                raise PipelineError(f"topic {name} does not exist: run `microdc topics create`")
            self._partitions[spec.name] = len(parts)
        return self

    def _name(self, spec: TopicSpec) -> str:
        return f"{self.topic_prefix}{spec.name}"

    async def write(self, batch: Iterable[Envelope]) -> None:
        for env in batch:
            n = self._partitions[env.topic.name]
            part = partition_for(env.key, n) if env.key is not None else next(self._round_robin) % n
            slot = (env.topic.name, part)
            builder = self._batches.get(slot)
            if builder is None:
                builder = self._batches[slot] = self._producer.create_batch()
            if builder.append(key=env.key, value=env.value, timestamp=None) is None:
                await self._send(slot, builder)
                builder = self._batches[slot] = self._producer.create_batch()
                if builder.append(key=env.key, value=env.value, timestamp=None) is None:
                    raise PipelineError(f"record of {len(env.value)} bytes exceeds the batch size")

    async def _send(self, slot: tuple[str, int], builder: Any) -> None:
        builder.close()
        spec_name, part = slot
        fut = await self._producer.send_batch(
            builder, f"{self.topic_prefix}{spec_name}", partition=part
        )
        self._pending.append(fut)
        if len(self._pending) > 64:
            await self._drain(keep=16)

    async def _drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            await self._pending.pop(0)

    async def flush(self) -> None:
        for slot, builder in list(self._batches.items()):
            if builder.record_count():
                await self._send(slot, builder)
        self._batches.clear()
        await self._drain()
        await self._producer.flush()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self._producer.stop()

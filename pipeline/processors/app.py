"""The Faust app of the stream workers: topics, state tables, the two stage agents, web views.

`create_app(WorkerConfig(...))` builds one; `app` (this module's attribute, built on first access
from MICRODC_KAFKA_BOOTSTRAP, MICRODC_TOPIC_PREFIX and MICRODC_FLEET) serves
`faust -A pipeline.processors.app:app worker`. Every worker of a deployment uses the same topic
prefix, hence the same consumer group (`<prefix>microdc-worker`) and the same tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import compat
from pipeline.compat import lean_records
from pipeline.contracts.topics import (
    CO_PARTITIONS,
    FACILITY_TELEMETRY,
    GRID_INTENSITY,
    NODE_MINUTES,
    NODE_TELEMETRY,
    REQUEST_LOG,
    iter_topics,
)
from pipeline.errors import ConfigError
from pipeline.fleet import load_fleet
from pipeline.fleet.model import Fleet
from pipeline.kafka_admin import ensure_topics_counted
from pipeline.kafka_security import KafkaSecurity, faust_credentials
from pipeline.processors.agents import Source, StageAgent, StageOneAgent, StageTwoAgent
from pipeline.processors.live import install_live
from pipeline.processors.state import SnapshotStore
from pipeline.processors.transport import BulkApp
from pipeline.processors.web import StageCollector, WorkerMetrics, install_views
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S

STORES = ("rocksdb://", "memory://")
TICK_S = 0.5


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs; `run_worker` and the Faust CLI entry both build one."""

    bootstrap: str
    topic_prefix: str = ""
    fleet_path: Path | None = None
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    data_dir: Path | None = None
    store: str = "rocksdb://"
    lateness_s: float = 120.0
    #: How long (wall clock) a stage-1 source that stopped moving while another is ahead holds
    #: closing back (`StageAgent.after_batch`).
    max_source_skew_s: float = 600.0
    #: Event-time bounds a silent facility / grid feed holds stage 2 back (`SiteStage`).
    facility_wait_s: float = FACILITY_WAIT_S
    grid_wait_s: float = GRID_WAIT_S
    session_timeout_s: float = 30.0
    #: How the Faust clients and the topic admin connect (None: PLAINTEXT).
    security: KafkaSecurity | None = None
    #: Partitions of node telemetry and request logs (equal: co-partitioned). `run_worker`
    #: reads it from the broker; the topics may have any count (`TopicSpec.co_partitioned`).
    stage_one_partitions: int = CO_PARTITIONS
    fleet: Fleet | None = field(default=None, compare=False)

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}microdc-worker"

    def resolved_data_dir(self) -> Path:
        """Per-worker state directory (RocksDB files): two workers on a host need two."""
        return self.data_dir or Path(".microdc") / "worker" / f"{self.app_id}-{self.web_port}"


class WorkerApp(BulkApp):
    """Creates the pipeline's topics (idempotently) before the consumer subscribes."""

    microdc: WorkerConfig

    async def on_first_start(self) -> None:
        config = self.microdc
        _, counts = await ensure_topics_counted(
            config.bootstrap, list(iter_topics(config.topic_prefix)), security=config.security
        )
        actual = counts[f"{config.topic_prefix}{NODE_TELEMETRY.name}"]
        if actual != config.stage_one_partitions:
            raise ConfigError(
                f"{config.topic_prefix}{NODE_TELEMETRY.name} has {actual} partitions, this "
                f"worker was built for {config.stage_one_partitions}: start it with "
                "`microdc worker` (which reads the count from the broker) or set "
                f"MICRODC_STAGE_ONE_PARTITIONS={actual}"
            )
        await super().on_first_start()

    async def on_stop(self) -> None:
        # Before Faust stops the consumer and closes the tables: store the stages' state, so a
        # graceful restart replays nothing.
        for agent in getattr(self, "microdc_agents", ()):
            await agent.checkpoint()
        await super().on_stop()


def _brokers(bootstrap: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


def create_app(config: WorkerConfig) -> WorkerApp:
    """A configured Faust app; start it with `faust.Worker(app).execute_from_commandline()`."""
    if config.store not in STORES:
        raise ValueError(f"store {config.store!r} must be one of {', '.join(STORES)}")
    fleet = config.fleet or load_fleet(config.fleet_path)
    prefix = config.topic_prefix
    session = config.session_timeout_s
    app = WorkerApp(
        config.app_id,
        broker=_brokers(config.bootstrap),
        broker_credentials=faust_credentials(config.security),
        store=config.store,
        datadir=str(config.resolved_data_dir()),
        autodiscover=False,
        topic_disable_leader=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(0.5, min(3.0, session / 5)),
        broker_rebalance_timeout=max(session, 30.0),
        consumer_max_fetch_size=2 * 1024 * 1024,
        producer_linger=0.002,
        producer_max_request_size=4 * 1024 * 1024,
        web_enabled=True,
        web_port=config.web_port,
        web_bind=config.web_bind,
        web_host=config.web_bind,
    )
    app.microdc = config

    names = {spec.name: f"{prefix}{spec.name}" for spec in iter_topics()}
    stage_one = config.stage_one_partitions
    for spec in (NODE_TELEMETRY, REQUEST_LOG, NODE_MINUTES, FACILITY_TELEMETRY, GRID_INTENSITY):
        # Declared so the consumer subscribes; records go to the bulk agents, never to streams.
        app.topics.add(
            app.topic(
                names[spec.name],
                partitions=stage_one if spec.co_partitioned else spec.partitions,
                acks=False,
                key_serializer="raw",
                value_serializer="raw",
            )
        )

    def table(name: str, partitions: int) -> Any:
        return app.Table(
            name,
            partitions=partitions,
            key_type=str,  # JSON keys: "0", "1", ...
            value_type=bytes,  # raw values: packed snapshots
        )

    def lookup(name: str) -> Any:
        return app.GlobalTable(name, partitions=1, key_type=str)  # JSON values

    metrics = WorkerMetrics()
    common: dict[str, Any] = {
        "metrics": metrics,
        "prefix": prefix,
        "lateness_s": config.lateness_s,
        "max_source_skew_s": config.max_source_skew_s,
    }
    stage_one_agent = StageOneAgent(
        app,
        fleet,
        SnapshotStore(table("stage-one", stage_one), names[REQUEST_LOG.name]),
        # Tie-break on equal timestamps: node telemetry first.
        (Source("node", names[NODE_TELEMETRY.name]), Source("request", names[REQUEST_LOG.name])),
        partitions=stage_one,
        **common,
    )
    stage_two = StageTwoAgent(
        app,
        fleet,
        SnapshotStore(table("stage-two", 1), names[NODE_MINUTES.name]),
        (
            Source("grid", names[GRID_INTENSITY.name]),
            Source("facility", names[FACILITY_TELEMETRY.name]),
            Source("node-minutes", names[NODE_MINUTES.name]),
        ),
        facility_wait_s=config.facility_wait_s,
        grid_wait_s=config.grid_wait_s,
        pue_table=lookup("site-pue"),
        grid_table=lookup("grid-intensity"),
        **common,
    )
    agents: tuple[StageAgent, ...] = (stage_one_agent, stage_two)
    for agent in agents:
        for source in agent.sources:
            app.bulk_routes[source.topic] = agent.handle
    lean_records(app.bulk_routes)
    app.microdc_agents = agents  # type: ignore[attr-defined]

    @app.timer(TICK_S)
    async def tick() -> None:
        for agent in agents:
            await agent.tick()

    @app.on_partitions_revoked.connect
    async def on_revoked(*args: Any, **kwargs: Any) -> None:
        for agent in agents:
            await agent.revoke()

    def describe() -> dict[str, Any]:
        return {"partitions": [p for agent in agents for p in agent.describe()]}

    def health() -> dict[str, Any]:
        runs = describe()["partitions"]
        ready = app.consumer_generation_id > 0 and not app.rebalancing
        return {
            "status": "ok" if ready else "starting",
            "generation": app.consumer_generation_id,
            "assigned": sorted(
                f"{tp.topic}[{tp.partition}]"
                for tp in _assignment(app)
                if tp.topic in names.values()
            ),
            "stages": runs,
        }

    metrics.add_collector(StageCollector(describe))
    install_views(app, metrics, health)
    # GET /live and /live.json: the whole fleet's last minutes, read back from the output topics.
    install_live(
        app,
        fleet,
        bootstrap=config.bootstrap,
        prefix=prefix,
        metrics=metrics,
        describe=describe,
        security=config.security,
    )
    return app


def _assignment(app: Any) -> set[Any]:
    try:
        return set(app.consumer.assignment())
    except compat.CONSUMER_GONE:  # consumer not started yet
        return set()


def config_from_env() -> WorkerConfig:
    """Settings of the `faust -A pipeline.processors.app:app worker` entry."""
    from pipeline.config import Settings

    settings = Settings()
    data_dir = os.environ.get("MICRODC_WORKER_DATA_DIR")
    return WorkerConfig(
        bootstrap=settings.kafka_bootstrap,
        topic_prefix=settings.topic_prefix,
        fleet_path=settings.fleet,
        security=KafkaSecurity.from_settings(settings),
        data_dir=Path(data_dir) if data_dir else None,
        store=os.environ.get("MICRODC_WORKER_STORE", "rocksdb://"),
        stage_one_partitions=int(os.environ.get("MICRODC_STAGE_ONE_PARTITIONS", CO_PARTITIONS)),
    )


_app: WorkerApp | None = None


def __getattr__(name: str) -> Any:
    """`app` is built on first access, so importing this module has no side effects."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(config_from_env())
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

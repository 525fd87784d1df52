"""Faust workers that drive the stream core over Kafka (DESIGN.md §2, §6): `run_worker`.

The app, its tables and agents live in `pipeline.processors.app`; this module imports Faust only
when a worker is started, so `import pipeline.processors` stays cheap.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S

if TYPE_CHECKING:
    from pipeline.kafka_security import KafkaSecurity

__all__ = ["run_worker"]


def run_worker(
    bootstrap: str,
    *,
    topic_prefix: str = "",
    fleet_path: Path | None = None,
    web_port: int = 6066,
    web_bind: str = "127.0.0.1",
    data_dir: Path | None = None,
    store: str = "rocksdb://",
    lateness_s: float = 120.0,
    max_source_skew_s: float = 600.0,
    facility_wait_s: float = FACILITY_WAIT_S,
    grid_wait_s: float = GRID_WAIT_S,
    session_timeout_s: float = 30.0,
    loglevel: str = "warning",
    security: KafkaSecurity | None = None,
    logging_config: dict[str, Any] | None = None,
) -> None:
    """Run one stream worker in the foreground until SIGTERM/SIGINT (or a crash).

    Creates the pipeline's topics if missing, joins the consumer group `<prefix>microdc-worker`,
    restores the stage state of its partitions from the changelog (and RocksDB in `data_dir`,
    default `.microdc/worker/<group>-<web_port>`) and serves `GET /health` and `GET /metrics` on
    `web_bind:web_port`. `store` is `rocksdb://` (production) or `memory://`. `security`: how
    to connect (default PLAINTEXT); `max_source_skew_s`: how long a node-telemetry or
    request-log partition that stopped moving while the other is ahead holds closing back;
    `logging_config`: a `logging.config.dictConfig` dict for
    Faust's logging (default: Faust's own text format), e.g. `pipeline.logs.logging_config`.

    The topics are created, and so the broker, the address and the credentials checked, before
    Faust starts: a wrong one is a `KafkaUnavailableError`, not a crashed worker's traceback.
    """
    import faust

    from pipeline.contracts.topics import NODE_TELEMETRY, iter_topics
    from pipeline.kafka_admin import ensure_topics_counted
    from pipeline.processors.app import WorkerConfig, create_app

    _check_port_free(web_bind, web_port)
    _, counts = asyncio.run(
        ensure_topics_counted(bootstrap, list(iter_topics(topic_prefix)), security=security)
    )

    app = create_app(
        WorkerConfig(
            bootstrap=bootstrap,
            topic_prefix=topic_prefix,
            fleet_path=fleet_path,
            web_port=web_port,
            web_bind=web_bind,
            data_dir=data_dir,
            store=store,
            lateness_s=lateness_s,
            max_source_skew_s=max_source_skew_s,
            facility_wait_s=facility_wait_s,
            grid_wait_s=grid_wait_s,
            session_timeout_s=session_timeout_s,
            security=security,
            stage_one_partitions=counts[f"{topic_prefix}{NODE_TELEMETRY.name}"],
        )
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=logging_config)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise


def _check_port_free(host: str, port: int) -> None:
    """`ConfigError` if the web server could not bind `host:port` (say, another worker's)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"the worker's web server cannot listen on {host}:{port} ({exc.strerror}); "
                "pass another --web-port (each worker on a host needs its own)"
            ) from exc

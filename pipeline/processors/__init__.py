"""Faust workers that drive the stream core over Kafka (DESIGN.md §2, §6): `run_worker`.

The app, its tables and agents live in `pipeline.processors.app`; this module imports Faust only
when a worker is started, so `import pipeline.processors` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

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
    session_timeout_s: float = 30.0,
    loglevel: str = "warning",
) -> None:
    """Run one stream worker in the foreground until SIGTERM/SIGINT (or a crash).

    Creates the pipeline's topics if missing, joins the consumer group `<prefix>microdc-worker`,
    restores the stage state of its partitions from the changelog (and RocksDB in `data_dir`,
    default `.microdc/worker/<group>-<web_port>`) and serves `GET /health` and `GET /metrics` on
    `web_bind:web_port`. `store` is `rocksdb://` (production) or `memory://`.
    """
    import faust

    from pipeline.processors.app import WorkerConfig, create_app

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
            session_timeout_s=session_timeout_s,
        )
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise

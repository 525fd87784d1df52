"""`python -m pipeline.processors --bootstrap HOST:PORT ...` runs one worker (tests, containers)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import PipelineError, one_line
from pipeline.kafka_security import KafkaSecurity
from pipeline.logs import logging_config
from pipeline.processors import run_worker
from pipeline.stream.site_stage import FACILITY_WAIT_S, GRID_WAIT_S


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.processors", description=__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("MICRODC_KAFKA_BOOTSTRAP"))
    parser.add_argument("--topic-prefix", default=os.environ.get("MICRODC_TOPIC_PREFIX", ""))
    parser.add_argument("--fleet", type=Path, default=os.environ.get("MICRODC_FLEET") or None)
    parser.add_argument("--web-port", type=int, default=6066)
    parser.add_argument("--web-bind", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--store", default="rocksdb://", choices=("rocksdb://", "memory://"))
    parser.add_argument("--lateness-s", type=float, default=120.0)
    parser.add_argument("--session-timeout-s", type=float, default=30.0)
    parser.add_argument("--max-source-skew", type=float, default=600.0)
    parser.add_argument("--facility-wait-s", type=float, default=FACILITY_WAIT_S)
    parser.add_argument("--grid-wait-s", type=float, default=GRID_WAIT_S)
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args()
    settings = Settings()  # security and log format: MICRODC_* variables or the config file
    if not args.bootstrap:
        parser.error("--bootstrap (or MICRODC_KAFKA_BOOTSTRAP) is required")
    run_worker(
        args.bootstrap,
        topic_prefix=args.topic_prefix,
        fleet_path=args.fleet,
        web_port=args.web_port,
        web_bind=args.web_bind,
        data_dir=args.data_dir,
        store=args.store,
        lateness_s=args.lateness_s,
        session_timeout_s=args.session_timeout_s,
        max_source_skew_s=args.max_source_skew,
        facility_wait_s=args.facility_wait_s,
        grid_wait_s=args.grid_wait_s,
        loglevel=args.loglevel,
        security=KafkaSecurity.from_settings(settings),
        logging_config=(
            logging_config("json", args.loglevel) if settings.log_format == "json" else None
        ),
    )


if __name__ == "__main__":
    try:
        main()
    except PipelineError as exc:
        sys.exit(f"error: {one_line(str(exc))}")

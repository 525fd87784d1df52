"""Command line for a detached local Kafka broker: `python -m pipeline.localkafka up|down`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import KafkaUnavailableError
from pipeline.localkafka import KAFKA_VERSION, down, ensure_jars, status, up


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.localkafka",
        description="Run a single-node Apache Kafka broker on 127.0.0.1 (Java 17 + Maven).",
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "jars"],
        help="up: start (prints the bootstrap); down: stop; status: print the "
        "bootstrap if running; jars: download the jars and print their dir",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".kafka-local"),
        help="where the broker's state and data live (default: .kafka-local)",
    )
    parser.add_argument(
        "--version", default=KAFKA_VERSION, help="Kafka version (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="broker port for `up` (default: previous one, else a free port)",
    )
    parser.add_argument("--wipe", action="store_true", help="with `down`: delete the broker data")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(up(args.state_dir, version=args.version, port=args.port))
        elif args.command == "down":
            stopped = down(args.state_dir, wipe=args.wipe)
            print("stopped" if stopped else "not running", file=sys.stderr)
        elif args.command == "status":
            bootstrap = status(args.state_dir)
            if bootstrap is None:
                print("not running", file=sys.stderr)
                return 1
            print(bootstrap)
        else:
            print(ensure_jars(args.version, quiet=False))
    except KafkaUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

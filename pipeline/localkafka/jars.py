"""Kafka's runtime jars from Maven Central: `ensure_jars` fetches them once into a cache.

`mvn dependency:copy-dependencies` resolves the runtime classpath of `org.apache.kafka:kafka_2.13`
(plus a log4j2 backend) from the packaged `pom.xml` into `cache_dir()/kafka/<version>/libs`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.errors import KafkaUnavailableError
from pipeline.localkafka.common import HOW_TO_GET_A_BROKER, file_lock, resource_text, tail

#: The Apache Kafka release `LocalKafka` runs by default (Maven: org.apache.kafka:kafka_2.13).
KAFKA_VERSION = "4.3.1"
#: Overrides the download cache directory (default `~/.cache/microdc`).
CACHE_ENV = "MICRODC_CACHE"


def cache_dir() -> Path:
    """Where downloads are cached: `$MICRODC_CACHE`, else `~/.cache/microdc`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "microdc"


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    """The directory `ensure_jars` fills for `version` (it may not exist yet)."""
    return cache_dir() / "kafka" / version / "libs"


def _jars_complete(libs: Path, version: str) -> bool:
    return (libs / ".complete").is_file() and (libs / f"kafka_2.13-{version}.jar").is_file()


def _stderr_fd() -> int | None:
    """Our stderr's file descriptor (None, i.e. inherit, if it has none, e.g. under capture)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def ensure_jars(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Return a directory holding Kafka `version`'s runtime jars, downloading them on first use.

    Runs `mvn dependency:copy-dependencies` on the packaged pom into a temporary directory next
    to the cache entry and renames it into place, so readers never see a half-filled directory.
    A file lock makes concurrent callers wait for one download instead of repeating it.
    `quiet=False` streams Maven's progress to stderr.
    """
    final = jars_dir(version)
    if _jars_complete(final, version):
        return final
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailableError(
            f"Kafka {version} is not in {final} and Maven (`mvn`) is not on PATH to fetch it. "
            + HOW_TO_GET_A_BROKER
        )
    root = final.parent
    with file_lock(root / ".lock"):
        if _jars_complete(final, version):  # another process finished while we waited
            return final
        # Absolute: Maven runs in `work`, so a relative $MICRODC_CACHE would resolve twice.
        work = Path(tempfile.mkdtemp(prefix=".libs-tmp-", dir=root)).resolve()
        try:
            out = work / "libs"
            pom = work / "pom.xml"
            pom.write_text(resource_text("pom.xml"), encoding="utf-8")
            cmd = [
                mvn,
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={out}",
            ]
            if quiet:
                cmd.insert(1, "-q")
            proc = subprocess.run(
                cmd,
                cwd=work,
                stdin=subprocess.DEVNULL,
                check=False,
                text=True,
                stdout=subprocess.PIPE if quiet else _stderr_fd(),
                stderr=subprocess.STDOUT,
            )
            if proc.returncode != 0 or not (out / f"kafka_2.13-{version}.jar").is_file():
                output = tail(proc.stdout or "(see Maven output above)")
                raise KafkaUnavailableError(
                    f"Maven could not fetch Kafka {version} (exit {proc.returncode}): "
                    f"{' '.join(cmd)}\n{output}\n" + HOW_TO_GET_A_BROKER
                )
            (out / ".complete").write_text(f"kafka {version}\n", encoding="utf-8")
            if final.exists():  # a leftover without the .complete marker
                shutil.rmtree(final)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final

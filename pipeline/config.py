"""Settings from the environment (`MICRODC_*`), overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings. Precedence: flag > environment variable > default."""

    model_config = SettingsConfigDict(env_prefix="MICRODC_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    fleet: Path | None = None
    kafka_state_dir: Path = Path(".kafka-local")
    #: Where the Parquet lake lives: a local folder or a pyarrow filesystem URI.
    lake: str = "out/lake"
    #: Key of the HMAC that replaces client IPs in the lake; unset: IPs are dropped.
    lake_ip_secret: str | None = None

"""The Parquet lake: exactly-once landing of topics (bronze inputs, silver outputs), compaction.

Pure parts: `paths`, `arrow_schema`, `datasets`, `segment`, `privacy`. I/O: `store` (files),
`land` (Kafka driver, `microdc land`), `embedded` (the demo's landing), `compact`
(`microdc lake compact`), `rebuild` (silver recomputed from bronze, `microdc lake rebuild`).
"""

from pipeline.lake.datasets import BY_NAME, DATASETS, Dataset, dataset_for
from pipeline.lake.land import Lander, LandStats, run_land
from pipeline.lake.privacy import IpPolicy
from pipeline.lake.segment import RollPolicy, Segment, SegmentBuffer
from pipeline.lake.store import Lake

__all__ = [
    "BY_NAME",
    "DATASETS",
    "Dataset",
    "IpPolicy",
    "Lake",
    "LandStats",
    "Lander",
    "RollPolicy",
    "Segment",
    "SegmentBuffer",
    "dataset_for",
    "run_land",
]

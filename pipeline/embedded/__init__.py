"""The embedded driver: the stream core in-process, no Kafka (`microdc process`, `microdc demo`).

- `driver`: decode, dead-letter, partition and feed records to stage 1 and stage 2 of the core
  (`EmbeddedPipeline`, `run_embedded`), the same core and order rules as the Faust workers;
- `files`: simulator JSON-lines in, one JSON-lines file per output topic out;
- `landing`: the lake fed in-process through `microdc land`'s segment writer (`EmbeddedLander`,
  `simulate_and_land`);
- `summary`: per-site totals of a run;
- `demo`: `microdc demo`, the whole pipeline from simulator to report.

Import the submodule you need: this package imports nothing itself, so `microdc process` does
not pay for DuckDB and the demo's imports.
"""

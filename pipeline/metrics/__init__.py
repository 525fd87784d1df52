"""Pure metric math: energy, efficiency, carbon and latency sketches; no I/O, no clock."""

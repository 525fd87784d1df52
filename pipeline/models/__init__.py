"""DuckDB models over the lake: `build` runs `sql/`, `dims` loads the fleet file."""

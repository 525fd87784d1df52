"""Files the package ships as data: the contracts (`schemas/`), the SQL models (`sql/`), templates.

They live inside the package (the repository's top-level `schemas/` and `sql/` are links to
them), so a wheel or a container image carries them and `importlib.resources` finds them
wherever the package is installed, without a path relative to a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline.errors import PipelineError


def package_dir(*parts: str, package: str = "pipeline") -> Path:
    """A directory shipped in `package`, e.g. `package_dir("sql")`, as a filesystem path.

    Tools such as DuckDB read these files by path, so a package imported from a zip file
    (which has no path) is an error that says so, not a silent miss.
    """
    found = resources.files(package).joinpath(*parts)
    path = Path(str(found))
    if not isinstance(found, Path) or not path.is_dir():
        raise PipelineError(
            f"the installed package has no {'/'.join(parts)}/ directory at {found}: "
            "reinstall microdc-pipeline from a wheel or a checkout (it ships as package data)"
        )
    return path


def schemas_dir() -> Path:
    """The JSON Schema contracts (`schemas/`)."""
    return package_dir("schemas")


def sql_dir() -> Path:
    """The SQL models (`sql/`)."""
    return package_dir("sql")

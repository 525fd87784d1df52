"""The package works outside the checkout: build the wheel, install it into a fresh virtual
environment in a temporary folder, and run `microdc demo` and `microdc models build` there.

The fresh venv gets the wheel alone (`--no-deps`, no index); its third-party dependencies are
borrowed read-only from the running environment through a `.pth` line that puts that
environment's site-packages *after* the venv's own, without running its `.pth` files, so the
editable install of this checkout is invisible there: `pipeline` can only come from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the fresh venv's bin folder, an environment for it) with the built wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MICRODC_"))}
    env["COLUMNS"] = "200"
    wheels = base / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        cwd=base,
        env=env,
    )
    (wheel,) = wheels.glob("microdc_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "pipeline/schemas/node_sample.schema.json",
        "pipeline/schemas/outputs/energy_minutes.schema.json",
        "pipeline/sql/marts/fct_chargeback_monthly.sql",
        "pipeline/sql/columns.yml",
        "pipeline/fleet/demo_fleet.yaml",
    ):
        assert data in names, f"{data} is not in {wheel.name}"
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base, env=env)
    python = venv / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=base,
        env=env,
    )
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=base,
            env=env,
        ).strip()
    )
    (site / "_borrowed_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    return venv / "bin", env


def test_the_wheel_runs_the_demo_and_the_models_far_from_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    where = _run(
        [str(bin_dir / "python"), "-c", "import pipeline; print(pipeline.__file__)"],
        cwd=tmp_path,
        env=env,
    ).strip()
    assert Path(where).is_relative_to(bin_dir.parent), f"pipeline imported from {where}"
    assert not Path(where).is_relative_to(ROOT)

    shown = _run(
        [str(bin_dir / "microdc"), "demo", "--days", "0.05", "--no-quality"],
        cwd=tmp_path,
        env=env,
    )
    assert "chargeback vs the facility meter" in shown
    assert (tmp_path / "out" / "warehouse.duckdb").is_file()
    assert (tmp_path / "out" / "report.html").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "exports").iterdir())

    # every command defaults to the same out/ base: the demo's lake builds a second warehouse
    shown = _run(
        [str(bin_dir / "microdc"), "models", "build", "--db", "again.duckdb"],
        cwd=tmp_path,
        env=env,
    )
    assert "fct_chargeback_monthly" in shown
    count = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "import duckdb; print(duckdb.connect('again.duckdb', read_only=True)"
            ".execute('select count(*) from fct_chargeback_monthly').fetchone()[0])",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert int(count) > 0
    # and the report reads the default warehouse, the demo's
    (tmp_path / "out" / "report.html").unlink()
    shown = _run([str(bin_dir / "microdc"), "report"], cwd=tmp_path, env=env)
    assert shown.startswith("wrote out/report.html")
    assert (tmp_path / "out" / "report.html").is_file()

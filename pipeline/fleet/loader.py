"""Load and validate a fleet YAML file; every error names the file, line, path inside it and why."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml

from pipeline.errors import FleetError
from pipeline.fleet.model import Fleet

DEMO_FLEET = "demo_fleet.yaml"
_AT_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(?:'|\")?([^\]'\"]*)(?:'|\")?\]")


def demo_fleet_path() -> Path:
    """Path of the built-in demo fleet shipped inside the package."""
    return Path(str(resources.files("pipeline.fleet").joinpath(DEMO_FLEET)))


def load_fleet(path: str | Path | None = None) -> Fleet:
    """Parse, type-check and cross-check a fleet file (the demo fleet when `path` is None)."""
    file = Path(path) if path is not None else demo_fleet_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(str(file), "$", f"cannot read file: {exc.strerror or exc}") from exc
    return parse_fleet(text, str(file))


def parse_fleet(text: str, file: str = "<string>") -> Fleet:
    """Validate fleet YAML given as text; `file` is used in error messages only."""
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise FleetError(file, "$", f"not valid YAML: {exc.problem}", line) from exc
    except yaml.YAMLError as exc:
        raise FleetError(file, "$", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FleetError(
            file, "$", "expected a mapping at the top level (sites, nodes, teams, ...)"
        )
    try:
        fleet = msgspec.convert(data, Fleet, strict=False)
    except msgspec.ValidationError as exc:
        match = _AT_PATH.match(str(exc))
        reason = match.group("reason") if match else str(exc)
        where = (match.group("path") if match else None) or "$"
        raise FleetError(file, where, reason, _line_of(tree, where)) from exc
    for where, reason in _cross_check(fleet):
        raise FleetError(file, where, reason, _line_of(tree, where))
    return fleet


def _cross_check(fleet: Fleet) -> Iterator[tuple[str, str]]:
    """Rules a schema cannot express: references, uniqueness, ordering, physical sense."""
    yield from _unique("sites", [s.site_id for s in fleet.sites], "site_id")
    yield from _unique("nodes", [n.node_id for n in fleet.nodes], "node_id")
    yield from _unique("teams", [t.team for t in fleet.teams], "team")
    yield from _unique("services", [s.service for s in fleet.services], "service")
    for i, site in enumerate(fleet.sites):
        try:
            ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            yield f"$.sites[{i}].timezone", f"unknown IANA time zone {site.timezone!r}"
        starts = [p.start for p in site.tariff]
        if starts[0] != "00:00":
            yield f"$.sites[{i}].tariff[0].start", "the first tariff period must start at 00:00"
        for j in range(1, len(starts)):
            if starts[j] <= starts[j - 1]:
                yield (
                    f"$.sites[{i}].tariff[{j}].start",
                    f"tariff periods must be in increasing start order ({starts[j]} after "
                    f"{starts[j - 1]})",
                )
        if site.grid_zone not in fleet.grid_fallback_gco2e_per_kwh:
            yield (
                f"$.sites[{i}].grid_zone",
                f"zone {site.grid_zone!r} has no entry in grid_fallback_gco2e_per_kwh",
            )
    for i, node in enumerate(fleet.nodes):
        if node.site_id not in fleet.site_by_id:
            yield f"$.nodes[{i}].site_id", f"unknown site {node.site_id!r}"
        if node.idle_power_w >= node.max_power_w:
            yield (
                f"$.nodes[{i}].idle_power_w",
                f"idle power {node.idle_power_w} W must be below max power {node.max_power_w} W",
            )
    for i, service in enumerate(fleet.services):
        if service.team not in fleet.team_by_name:
            yield f"$.services[{i}].team", f"unknown team {service.team!r}"
        for j, site_id in enumerate(service.sites):
            if site_id not in fleet.site_by_id:
                yield f"$.services[{i}].sites[{j}]", f"unknown site {site_id!r}"
                continue
            pool = [
                n for n in fleet.nodes_by_site[site_id] if n.has_gpu or not service.load.needs_gpu
            ]
            if not pool:
                what = "GPU nodes" if service.load.needs_gpu else "nodes"
                yield f"$.services[{i}].sites[{j}]", f"site {site_id!r} has no {what} to run it"


def _unique(section: str, keys: list[str], field: str) -> Iterator[tuple[str, str]]:
    seen = Counter[str]()
    for i, key in enumerate(keys):
        seen[key] += 1
        if seen[key] == 2:
            yield f"$.{section}[{i}].{field}", f"duplicate {field} {key!r}"


def _line_of(tree: Any, where: str) -> int | None:
    """1-based line of the YAML node at a msgspec path like `$.sites[0].capex_usd`."""
    node = tree
    line = node.start_mark.line + 1 if node is not None else None
    for attr, index, quoted in _PART.findall(where.removeprefix("$")):
        if isinstance(node, yaml.MappingNode):
            key = attr or quoted or index
            found = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if found is None:
                return line
            node = found
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            return line
        line = node.start_mark.line + 1
    return line

"""Load and validate a fleet YAML file; every error names the file, line, path inside it and why."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml
from yaml.constructor import SafeConstructor

from pipeline.errors import FleetError, LocatedConfigError
from pipeline.fleet.model import Fleet

DEMO_FLEET = "demo_fleet.yaml"
T = TypeVar("T")
_AT_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(?:'|\")?([^\]'\"]*)(?:'|\")?\]")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def demo_fleet_path() -> Path:
    """Path of the built-in demo fleet shipped inside the package."""
    return Path(str(resources.files("pipeline.fleet").joinpath(DEMO_FLEET)))


def load_fleet(path: str | Path | None = None) -> Fleet:
    """Parse, type-check and cross-check a fleet file (the demo fleet when `path` is None)."""
    file = Path(path) if path is not None else demo_fleet_path()
    return parse_fleet(read_text(file, FleetError), str(file))


def _decode(raw: bytes, file: str, error: type[LocatedConfigError]) -> str:
    """The file's text. A byte that is not UTF-8 is named by line and column: the bare
    `UnicodeDecodeError` gives only a byte offset, which no editor shows."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        # Everything before the first bad byte is valid UTF-8, so it counts as characters.
        column = len(raw[line_start : exc.start].decode("utf-8")) + 1
        raise error(
            file,
            "$",
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}, column {column} "
            f"(byte offset {exc.start}); save the file as UTF-8",
            line,
        ) from exc


def parse_fleet(text: str, file: str = "<string>") -> Fleet:
    """Validate fleet YAML given as text; `file` is used in error messages only."""
    fleet, tree = convert_yaml(text, file, Fleet, FleetError, top="sites, nodes, teams, ...")
    for where, reason in _cross_check(fleet):
        raise FleetError(file, where, reason, _line_of(tree, where))
    return fleet


def read_text(path: Path, error: type[LocatedConfigError]) -> str:
    """A configuration file's text; unreadable or not UTF-8 is an `error` naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(str(path), "$", f"cannot read file: {exc.strerror or exc}") from exc
    return _decode(raw, str(path), error)


def convert_yaml(
    text: str, file: str, kind: type[T], error: type[LocatedConfigError], *, top: str
) -> tuple[T, Any]:
    """YAML text -> a `kind` (a msgspec Struct), and the YAML node tree (for `line_of`).

    Every problem is an `error` naming the file, line, path inside it and why: invalid YAML,
    duplicate keys, non-finite numbers, a wrong type or value (strict: a quoted "64" is not an
    int, nor "true" a bool - a hand-edited file means what it says or is refused; ints are
    still accepted where a float is wanted). `top` lists the expected top-level keys.
    """
    tree, data = _load_yaml(text, file, error)
    if not isinstance(data, dict):
        raise error(file, "$", f"expected a mapping at the top level ({top})")
    for where, reason, line in _tree_problems(tree):
        raise error(file, where, reason, line)
    try:
        value = msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        match = _AT_PATH.match(str(exc))
        reason = match.group("reason") if match else str(exc)
        where = (match.group("path") if match else None) or "$"
        raise error(file, where, _with_hint(reason), _line_of(tree, where)) from exc
    return value, tree


def line_of(tree: Any, where: str) -> int | None:
    """1-based line of the YAML node at a path like `$.sites[0].capex_usd` (for errors found
    after `convert_yaml`)."""
    return _line_of(tree, where)


def _load_yaml(text: str, file: str, error: type[LocatedConfigError]) -> tuple[Any, Any]:
    """The composed node tree (which has line marks) and the plain data of `text`."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise error(file, "$", f"not valid YAML: {exc.problem}", line) from exc
    except yaml.reader.ReaderError as exc:  # a control character: PyYAML gives its position
        line = text.count("\n", 0, exc.position) + 1
        raise error(file, "$", f"not valid YAML: {exc.reason}", line) from exc
    except yaml.YAMLError as exc:
        raise error(file, "$", f"not valid YAML: {exc}") from exc
    except ValueError as exc:  # an explicit tag with a bad value, e.g. `!!float abc`
        raise error(file, "$", f"not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise error(file, "$", "not valid YAML: nested too deeply") from exc


def _tree_problems(tree: yaml.Node) -> Iterator[tuple[str, str, int]]:
    """(path, reason, line) of duplicate keys and non-finite numbers anywhere in the file.

    Neither library catches them: PyYAML keeps the last of two equal keys without a word, and
    `.inf` passes a `ge=0` bound. Walked with a stack (no recursion limit) and each node once,
    since an alias shares its anchor's node.
    """
    constructor = SafeConstructor()
    seen: set[int] = set()
    stack: list[tuple[str, yaml.Node]] = [("$", tree)]
    while stack:
        where, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == _FLOAT_TAG:
            if not math.isfinite(constructor.construct_yaml_float(node)):
                reason = f"must be a finite number, got {node.value}"
                yield where, reason, node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            items = [(f"{where}[{i}]", item) for i, item in enumerate(node.value)]
            stack.extend(reversed(items))
        elif isinstance(node, yaml.MappingNode):
            yield from _duplicate_keys(where, node, constructor)
            pairs = [(_child(where, _key(k, constructor)), v) for k, v in node.value]
            stack.extend(reversed(pairs))


def _duplicate_keys(
    where: str, node: yaml.MappingNode, constructor: SafeConstructor
) -> Iterator[tuple[str, str, int]]:
    """Each repeated key of one mapping, at the line of its second occurrence."""
    first_line: dict[object, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue  # `<<: *base` merges; keys written beside it override on purpose
        key = _key(key_node, constructor)
        line = key_node.start_mark.line + 1
        if key in first_line:
            reason = f"duplicate key {key!r} (first at line {first_line[key]})"
            yield _child(where, key), reason, line
        else:
            first_line[key] = line


def _key(node: yaml.Node, constructor: SafeConstructor) -> object:
    """A mapping key as PyYAML builds it (`1` and `"1"` differ, `a` and `'a'` do not)."""
    if isinstance(node, yaml.ScalarNode) and node.tag != _MERGE_TAG:
        return constructor.construct_object(node)
    return node.value  # `<<` or a collection: only ever shown in a path


def _child(where: str, key: object) -> str:
    """The msgspec-style path of `key` inside the mapping at `where`."""
    if isinstance(key, str) and _IDENTIFIER.match(key):
        return f"{where}.{key}"
    return f"{where}[{key!r}]"


def _with_hint(reason: str) -> str:
    """msgspec's reason, plus why a quoted number is refused (strict conversion)."""
    if "got `str`" in reason and any(t in reason for t in ("`int`", "`float`", "`bool`")):
        return f"{reason} (quoted values are not converted to numbers or booleans)"
    return reason


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

"""The container files agree with the code: Compose spec, CLI commands, settings, image, health.

No Docker engine runs here, so `docker-compose.kafka.yml` is checked against the vendored Compose
Specification schema, every `microdc` command in it is parsed by the real CLI, every `MICRODC_*`
name is a real setting, the `Dockerfile` is parsed for its stages, user and probe, and the probe is
run against the paths the worker's Faust app really registers.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from pipeline.cli import DEBUG_ENV, parse_duration, parse_start
from pipeline.cli import app as cli_app
from pipeline.config import CONFIG_ENV, Settings
from pipeline.lake.privacy import IP_SECRET_ENV
from pipeline.localkafka import CACHE_ENV, KAFKA_VERSION
from pipeline.processors.app import STORES, WorkerConfig, create_app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_SPEC = ROOT / "tests" / "fixtures" / "compose-spec.json"
IMAGE = "microdc-pipeline"
SHELLS = (["/bin/sh", "-c"], ["sh", "-c"])
_PROBE_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w./-]*)")
_PIP_INSTALL = re.compile(r"\bpip3?\s+install\b|-m\s+pip\s+install\b")


# -- compose ------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def is_ours(svc: dict[str, Any]) -> bool:
    """Does the service run the image built from ./Dockerfile?"""
    return "build" in svc or str(svc.get("image", "")).split(":")[0] == IMAGE


def ours() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if is_ours(svc)}


def invocations(name: str, svc: dict[str, Any]) -> list[list[str]]:
    """The argument lists (after `microdc`) a service of our image runs."""
    command = svc.get("command")
    entrypoint = svc.get("entrypoint")
    if entrypoint is None:
        args = command if isinstance(command, list) else shlex.split(command or "")
        argv = [*dockerfile_entrypoint(), *args]
        assert argv[0] == "microdc", f"{name}: runs {argv}, not microdc"
        return [argv[1:]]
    if entrypoint in SHELLS:
        script = command[0] if isinstance(command, list) else command
        found = []
        for line in script.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            for i, token in enumerate(tokens):
                if token == "microdc":
                    args = []
                    for arg in tokens[i + 1 :]:
                        if arg and set(arg) <= set("();<>|&"):
                            break
                        args.append(arg)
                    found.append(args)
        assert found, f"{name}: its shell script runs no microdc command"
        return found
    raise AssertionError(f"{name}: entrypoint {entrypoint!r} is neither the image's nor a shell")


def commands_of(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(`sub command`, parsed parameters) of every microdc command a service runs."""
    return [resolve(name, args) for args in invocations(name, ours()[name])]


def resolve(name: str, args: list[str]) -> tuple[str, dict[str, Any]]:
    """Walk the Typer/Click tree to the leaf command and parse the options as the CLI would.

    Unknown commands or options, missing values and values of the wrong type raise here.
    """
    command: Any = typer.main.get_command(cli_app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands"):
        # A group's own options come before its subcommand (`microdc --log-format json worker`).
        options = []
        while rest and rest[0].startswith("-"):
            option, _, inline = rest[0].partition("=")
            param = next((p for p in command.params if option in p.opts), None)
            assert param is not None, f"{name}: `microdc {' '.join([*path, option])}`: no option"
            takes_value = not (getattr(param, "is_flag", False) or inline)
            options += rest[: 2 if takes_value else 1]
            del rest[: 2 if takes_value else 1]
        if options:
            command.make_context(" ".join(path) or "microdc", options, resilient_parsing=False)
        assert rest and rest[0] in command.commands, (
            f"{name}: `microdc {' '.join(args)}`: no command {' '.join([*path, *rest[:1]])!r}; "
            f"choose from {sorted(command.commands)}"
        )
        path.append(rest.pop(0))
        command = command.commands[path[-1]]
    ctx = command.make_context(" ".join(path), rest, resilient_parsing=False)
    return " ".join(path), dict(ctx.params)


def worker_names_unparsed() -> list[str]:
    """Worker services, for test ids: no CLI parsing at collection (a bad option fails a test)."""
    names = []
    for name, svc in ours().items():
        command = svc.get("command")
        if isinstance(command, list) and "worker" in command[:1]:
            names.append(name)
    return sorted(names)


def worker_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in ours().items() if any(c == "worker" for c, _ in commands_of(n))}


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolated(value: str) -> str:
    """Compose interpolation with every variable unset: `${X:-d}` -> d, `$$` -> `$`."""
    value = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)
    value = re.sub(r"\$\{\w+\}", "", value)
    return value.replace("$$", "$")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    kind: str  # volume, bind, tmpfs
    read_only: bool


def mounts(svc: dict[str, Any]) -> list[Mount]:
    found = []
    for item in svc.get("volumes") or []:
        if isinstance(item, dict):
            found.append(
                Mount(
                    str(item.get("source", "")),
                    str(item["target"]),
                    str(item["type"]),
                    bool(item.get("read_only", False)),
                )
            )
            continue
        parts = str(item).split(":")
        source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        options = parts[2].split(",") if len(parts) > 2 else []
        is_path = source.startswith(("/", ".", "~", "$"))
        kind = "bind" if is_path else "volume"
        found.append(Mount(source, target, kind, "ro" in options))
    return found


def mount_for(svc: dict[str, Any], path: str | Path) -> Mount | None:
    """The mount that holds `path` inside the container (the deepest one)."""
    inside = PurePosixPath(str(path))
    best = None
    for mount in mounts(svc):
        target = PurePosixPath(mount.target)
        if (inside == target or target in inside.parents) and (
            best is None or len(target.parts) > len(PurePosixPath(best.target).parts)
        ):
            best = mount
    return best


def healthcheck_state(svc: dict[str, Any]) -> str:
    """`own` (the service's test), `disabled`, `image` (inherits the Dockerfile's) or `none`."""
    check = svc.get("healthcheck") or {}
    if check.get("disable") in (True, "true") or check.get("test") in (["NONE"], "NONE"):
        return "disabled"
    if check.get("test"):
        return "own"
    return "image" if is_ours(svc) else "none"


def probe_of(svc: dict[str, Any]) -> list[str]:
    """The health test a service of our image runs: its own or the image's."""
    state = healthcheck_state(svc)
    assert state in ("own", "image"), f"no health check ({state})"
    test: list[str] = svc["healthcheck"]["test"] if state == "own" else dockerfile_probe()
    return test


# -- Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def dockerfile() -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (as BuildKit does)."""
    found: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(DOCKERFILE.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            start = start or number
            continue
        text = (pending + line).strip()
        keyword, _, args = text.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start or number))
        pending, start = "", 0
    return found


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            found.append([])
        assert found, f"Dockerfile line {instruction.line}: {instruction.keyword} before FROM"
        found[-1].append(instruction)
    return found


def final_stage() -> list[Instruction]:
    return stages()[-1]


def only(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in stage if i.keyword == keyword]


def dockerfile_entrypoint() -> list[str]:
    entries = only(final_stage(), "ENTRYPOINT")
    assert entries, "the final stage has no ENTRYPOINT"
    parsed: list[str] = json.loads(entries[-1].args)
    return parsed


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in only(final_stage(), "ENV"):
        for token in shlex.split(instruction.args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


def dockerfile_copies() -> list[tuple[list[str], str, dict[str, str]]]:
    """(sources, destination, flags) of the final stage's COPY instructions."""
    found = []
    for instruction in only(final_stage(), "COPY"):
        tokens = shlex.split(instruction.args)
        flags = dict(t[2:].partition("=")[::2] for t in tokens if t.startswith("--"))
        paths = [t for t in tokens if not t.startswith("--")]
        found.append((paths[:-1], paths[-1], flags))
    return found


def dockerfile_probe() -> list[str]:
    checks = only(final_stage(), "HEALTHCHECK")
    assert checks, "the final stage has no HEALTHCHECK"
    check = checks[-1]
    _, found, command = check.args.partition("CMD ")
    assert found, f"Dockerfile line {check.line}: HEALTHCHECK without CMD"
    parsed: list[str] = json.loads(command)
    return parsed


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    candidates = [path] + [str(p) for p in PurePosixPath(path).parents if str(p) != "."]
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


# -- shared --------------------------------------------------------------------------------------


@cache
def settings_env_names() -> dict[str, str]:
    """`MICRODC_*` environment name -> Settings field, as pydantic-settings reads them."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names[(alias or f"{prefix}{field_name}").upper()] = field_name
    return names


@cache
def option_env_names() -> set[str]:
    """Environment variables declared on CLI options (`envvar=`)."""
    found: set[str] = set()

    def walk(command: Any) -> None:
        for param in getattr(command, "params", []):
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(cli_app))
    return found


def known_env_names() -> set[str]:
    # Besides Settings and option env vars, the names the code reads itself: the config file,
    # tracebacks, the download cache, the lake's IP secret.
    itself = {CONFIG_ENV, DEBUG_ENV, CACHE_ENV, IP_SECRET_ENV}
    return set(settings_env_names()) | option_env_names() | itself


def worker_app(params: dict[str, Any], tmp_path: Path) -> Any:
    """The worker's real Faust app for these `microdc worker` parameters (not started)."""
    return create_app(
        WorkerConfig(
            bootstrap="127.0.0.1:9",
            web_port=params["web_port"],
            web_bind=params["web_bind"],
            data_dir=tmp_path / "state",
            store="memory://",
        )
    )


def probe_target(test: list[str]) -> tuple[int, str]:
    match = _PROBE_URL.search(" ".join(test))
    assert match, f"health probe {test!r} requests no http://127.0.0.1:<port>/<path>"
    return int(match.group(1)), match.group(2)


# -- (a) the Compose Specification ------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SPEC.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors
    )


def test_names_and_references_resolve() -> None:
    """What the schema cannot see: named volumes declared, dependencies existing and startable."""
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for mount in mounts(svc):
            if mount.kind == "volume" and mount.source:
                assert mount.source in declared, f"{name}: volume {mount.source!r} is not declared"
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {dep: {"condition": "service_started"} for dep in deps}
        for dep, spec in deps.items():
            assert dep in doc["services"], f"{name}: depends on unknown service {dep!r}"
            target = doc["services"][dep]
            if spec["condition"] == "service_healthy":
                assert healthcheck_state(target) in ("own", "image"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no health check"
                )
            if spec["condition"] == "service_completed_successfully":
                assert target.get("restart", "no") == "no", f"{dep} is waited on to finish"
            # A dependency must be enabled whenever the dependent is.
            assert set(target.get("profiles") or []) <= set(svc.get("profiles") or []), (
                f"{name} (profiles {svc.get('profiles')}) depends on {dep} "
                f"(profiles {target.get('profiles')})"
            )


# -- the stack issue 6 asks for ------------------------------------------------------------------


def test_kafka_alone_is_what_starts_without_a_profile() -> None:
    default = {n for n, s in services().items() if not s.get("profiles")}
    assert default == {"kafka"}, f"`up -d` without --profile would start {sorted(default)}"
    kafka = services()["kafka"]
    # The same broker as `microdc kafka up` (Maven Central), so both setups behave alike.
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}", kafka["image"]
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CLUSTER_ID" in env  # required by the image's KRaft start script
    assert "127.0.0.1:9092:9092" in kafka["ports"], "host clients use 127.0.0.1:9092"
    assert healthcheck_state(kafka) == "own"


def test_the_pipeline_services_are_all_there() -> None:
    by_command: dict[str, list[str]] = {}
    for name in ours():
        for command, _ in commands_of(name):
            by_command.setdefault(command, []).append(name)
    assert len(by_command.get("topics create", [])) == 1, by_command
    assert len(by_command.get("land", [])) >= 1, by_command
    assert len(by_command.get("simulate", [])) >= 1, by_command
    workers = worker_services()
    replicas = sum(int((s.get("deploy") or {}).get("replicas", 1)) for s in workers.values())
    assert replicas >= 2, f"one worker service, one replica: {sorted(workers)}"
    on_demand = [n for n in by_command.get("models build", []) if "entrypoint" not in ours()[n]]
    assert on_demand, "no `models build` job to `run --rm`"
    for name in on_demand:
        svc = ours()[name]
        assert svc.get("profiles"), f"{name} would start with every `up`"
        assert svc.get("restart", "no") == "no"
        assert not svc.get("depends_on"), f"`run --rm {name}` should need no running service"
    (topics,) = by_command["topics create"]
    assert ours()[topics].get("restart", "no") == "no", "topic creation is one-shot"
    for name in workers:
        deps = ours()[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps[topics]["condition"] == "service_completed_successfully"


def test_pipeline_services_reach_kafka_on_its_container_listener() -> None:
    advertised = env_of(services()["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {entry.split("://", 1)[1] for entry in advertised.split(",")}
    for name, svc in ours().items():
        for command, params in commands_of(name):
            if "bootstrap" not in params:
                continue
            bootstrap = params["bootstrap"] or env_of(svc).get("MICRODC_KAFKA_BOOTSTRAP")
            assert bootstrap, f"{name}: `{command}` has no --bootstrap nor MICRODC_KAFKA_BOOTSTRAP"
            assert not bootstrap.startswith(("127.", "localhost")), (
                f"{name}: {bootstrap} is the container itself, not the broker"
            )
            assert set(bootstrap.split(",")) <= addresses, (
                f"{name}: {bootstrap} is not one of Kafka's advertised listeners {addresses}"
            )


# -- (b) every command is a real command with real options -----------------------------------


@pytest.mark.parametrize("name", sorted(ours()))
def test_service_runs_a_real_microdc_command(name: str) -> None:
    for command, params in commands_of(name):  # unknown commands and options raise in here
        if command == "simulate":
            parse_duration(params["duration"])
            parse_start(params["start"])
            assert params["sink"] == "kafka", f"{name}: the simulator must write to Kafka"
        if command == "worker":
            assert params["store"] in STORES


def test_a_wrong_option_or_command_is_caught() -> None:
    with pytest.raises(Exception, match="--no-such-option"):
        resolve("example", ["worker", "--no-such-option", "1"])
    with pytest.raises(AssertionError, match="no command"):
        resolve("example", ["models", "rebuild"])
    with pytest.raises(AssertionError, match="no option"):
        resolve("example", ["--no-such-global-option", "worker"])
    with pytest.raises(Exception, match="integer"):
        resolve("example", ["worker", "--web-port", "http"])


# -- (c) every MICRODC_* variable is a real setting ----------------------------------------------


def test_microdc_environment_variables_are_real_settings() -> None:
    known = known_env_names()
    for path in (COMPOSE, DOCKERFILE):
        used = set(re.findall(r"\bMICRODC_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
        unknown = sorted(used - known)
        assert not unknown, f"{path.name} uses {unknown}: not Settings fields nor known options"


def test_settings_read_the_values_compose_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    names = settings_env_names()
    for name, svc in ours().items():
        env = {k: interpolated(v) for k, v in env_of(svc).items() if k in names}
        for key in names:
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        for key, value in env.items():
            read = getattr(settings, names[key])
            read = read.get_secret_value() if hasattr(read, "get_secret_value") else read
            assert str(read) == value, f"{name}: {key}"


# -- (d) the Dockerfile ------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_installs_nothing_at_the_end() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "builder and runtime stages"
    final = final_stage()
    assert shlex.split(final[0].args)[0] == "python:3.11-slim", final[0].args
    users = only(final, "USER")
    assert users, "the final stage runs as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"line {users[-1].line}: USER {users[-1].args}"
    assert user.isdigit(), "a numeric uid works with Kubernetes runAsNonRoot"
    checks = only(final, "HEALTHCHECK")
    assert checks, "no HEALTHCHECK in the final stage"
    assert not checks[-1].args.upper().startswith("NONE")
    for run in only(final, "RUN"):
        assert not _PIP_INSTALL.search(run.args), f"line {run.line}: pip install in the runtime"
    builder = shlex.split(all_stages[0][0].args)
    assert len(builder) == 3 and builder[1].upper() == "AS", "the builder stage is named"
    venvs = [c for c in dockerfile_copies() if c[2].get("from") == builder[2]]
    assert venvs, "the runtime copies nothing from the builder"
    assert dockerfile_entrypoint() == ["microdc"]


def test_image_gets_the_contracts_and_models_from_the_installed_package() -> None:
    """schemas/ and sql/ are package data (pipeline.resources): nothing is copied beside it."""
    env = dockerfile_env()
    copied = {src[0] for src, _dest, flags in dockerfile_copies() if "from" not in flags}
    assert not copied & {"schemas", "sql"}, "schemas/ and sql/ ship inside the wheel"
    assert not any(name.endswith("SCHEMAS_DIR") for name in env), env
    assert (ROOT / "pipeline" / "schemas").is_dir() and (ROOT / "pipeline" / "sql").is_dir()
    assert "/opt/venv/bin" in env["PATH"].split(":")


def test_the_installed_package_has_every_file_the_checkout_has() -> None:
    """The image installs a wheel, not the checkout: data files must be package data."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    patterns = tool["setuptools"]["package-data"]["pipeline"]
    package = ROOT / "pipeline"
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if "__pycache__" in path.parts or path.is_dir():
            continue
        if path.suffix == ".py":
            assert (path.parent / "__init__.py").exists(), f"{rel}: its package has no __init__"
        else:
            assert any(fnmatch.fnmatchcase(rel, p) for p in patterns), (
                f"pipeline/{rel} is not in [tool.setuptools.package-data]: missing in the image"
            )


def test_build_context_has_what_the_dockerfile_copies_and_nothing_else() -> None:
    for instruction in dockerfile():
        if instruction.keyword != "COPY" or "--from" in instruction.args:
            continue
        for source in shlex.split(instruction.args)[:-1]:
            assert (ROOT / source).exists(), f"line {instruction.line}: no {source}"
            assert not dockerignored(source), f"line {instruction.line}: {source} is ignored"
    for inside in ("pipeline/cli.py", "pipeline/fleet/demo_fleet.yaml", "schemas", "sql"):
        assert not dockerignored(inside), inside
    for outside in (".venv", ".git", "out/lake", "tests/unit", "pipeline/__pycache__/cli.pyc"):
        assert dockerignored(outside), outside


# -- (e) health checks probe what the worker serves ---------------------------------------------


def test_worker_health_checks_target_the_served_port_and_path(tmp_path: Path) -> None:
    workers = worker_services()
    assert workers
    state_volumes = []
    for name, svc in workers.items():
        ((_, params),) = [c for c in commands_of(name) if c[0] == "worker"]
        assert params["web_bind"] == "0.0.0.0", f"{name}: unreachable from outside its container"
        faust_app = worker_app(params, tmp_path)
        port, path = probe_target(probe_of(svc))
        served = faust_app.conf.web_port
        assert port == served, f"{name}: probes :{port}, serves :{served}"
        assert path in faust_app.web.views, f"{name}: probes {path}, serves {faust_app.web.views}"
        for published in svc.get("ports") or []:
            assert str(published).rsplit(":", 1)[-1] == str(port), f"{name}: {published}"
        state = mount_for(svc, params["data_dir"])
        assert state and state.kind == "volume" and not state.read_only, (
            f"{name}: --data-dir {params['data_dir']} is not on a writable volume"
        )
        state_volumes.append(state.source)
    assert len(set(state_volumes)) == len(state_volumes), f"workers share state: {state_volumes}"


def test_image_health_check_targets_a_default_worker(tmp_path: Path) -> None:
    (_, params) = resolve("image", ["worker"])
    faust_app = worker_app(params, tmp_path)
    port, path = probe_target(dockerfile_probe())
    assert port == faust_app.conf.web_port
    assert path in faust_app.web.views


def test_other_services_of_the_image_replace_the_worker_probe() -> None:
    workers = worker_services()
    for name, svc in ours().items():
        if name not in workers:
            assert healthcheck_state(svc) in ("own", "disabled"), (
                f"{name} would inherit the worker probe from the image and never be healthy"
            )


class _Health(http.server.BaseHTTPRequestHandler):
    status = "ok"

    def do_GET(self) -> None:
        body = json.dumps({"status": self.status}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_probe(test: list[str], port: int) -> int:
    argv = test[1:] if test[0] in ("CMD", "CMD-SHELL") else test
    assert argv[:2] == ["python", "-c"], f"not a python probe: {argv}"
    code = re.sub(r"(http://(?:127\.0\.0\.1|localhost)):\d+", rf"\g<1>:{port}", argv[2])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


@pytest.mark.parametrize("source", ["Dockerfile", *worker_names_unparsed()])
@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_health_probe_is_healthy_only_when_the_worker_is_ready(
    source: str, health_server: http.server.HTTPServer
) -> None:
    test = dockerfile_probe() if source == "Dockerfile" else probe_of(ours()[source])
    port = health_server.server_address[1]
    _Health.status = "ok"
    assert _run_probe(test, port) == 0
    _Health.status = "starting"  # the worker's answer before it joins the group, or rebalancing
    assert _run_probe(test, port) == 1
    health_server.shutdown()
    health_server.server_close()
    # Docker reserves exit code 2; a refused connection must be a plain 1 (unhealthy).
    assert _run_probe(test, port) == 1


def test_worker_answers_starting_before_it_joins_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's 'ok' is the worker's ready state; a fresh app says 'starting'."""
    import pipeline.processors.app as worker_module

    captured: dict[str, Any] = {}
    real = worker_module.install_views

    def spy(app: Any, metrics: Any, health: Any) -> None:
        captured["health"] = health
        real(app, metrics, health)

    monkeypatch.setattr(worker_module, "install_views", spy)
    worker_app({"web_port": 6066, "web_bind": "0.0.0.0"}, tmp_path)
    assert captured["health"]()["status"] == "starting"


# -- host isolation -------------------------------------------------------------------------------


def test_nothing_from_the_host_is_mounted_and_data_lives_on_volumes() -> None:
    for name, svc in services().items():
        binds = [m for m in mounts(svc) if m.kind == "bind"]
        assert not binds, f"{name} mounts host paths {binds}"
        for published in svc.get("ports") or []:
            assert str(published).startswith("127.0.0.1:"), f"{name}: {published} on all hosts"
    for name in ours():
        for command, params in commands_of(name):
            if command == "land":
                lake = mount_for(ours()[name], params["lake"])
                assert lake and lake.source == "lake" and not lake.read_only, name
            if command == "models build":
                lake = mount_for(ours()[name], params["lake"])
                db = mount_for(ours()[name], PurePosixPath(str(params["db"])).parent)
                assert lake and lake.source == "lake", f"{name}: --lake is not the lake volume"
                assert db and not db.read_only, f"{name}: --db is not on a writable volume"

"""The collector file: which sources `microdc collect` reads for each node and site.

    # collectors.yaml
    poll_interval_s: 15
    nodes:
      - node_id: co-bog-01-n01            # a node of the fleet file
        sources:                          # in order of preference, per quantity
          - kind: redfish                 # power and temperatures from the BMC
            url: https://10.20.0.11
            chassis: 1U                   # optional: the first chassis with readings
            auth: session                 # basic | session | none
            username_env: BMC_USER        # credentials: environment variables or files,
            password_file: /run/secrets/bmc-password   # never in this file or on the CLI
            ca_file: /etc/microdc/bmc-ca.pem           # TLS is verified (verify: false to stop)
          - kind: prometheus              # utilisation and network bytes from node_exporter
            url: http://10.20.0.11:9100/metrics
    sites:
      - site_id: co-bog-01
        sources:
          - kind: redfish_pdu             # facility / IT meters
            url: https://10.20.0.5
            pdu: "1"

A quantity comes from the first source listed that gives it (power from the BMC, utilisation
from node_exporter, temperatures from either). Validated like the fleet file: every error
names the file, line, path inside it and why; node and site ids must be the fleet's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from pipeline.collect.access_log import AccessMapping
from pipeline.errors import CollectorFileError
from pipeline.fleet.loader import convert_yaml, line_of, read_text
from pipeline.fleet.model import Fleet

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048, pattern=r"^https?://")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Source(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    timeout_s: Seconds = 5.0

    @property
    def kind(self) -> str:
        """The source's `kind:` in the file."""
        return str(type(self).__struct_config__.tag)


class HttpsSource(_Source, frozen=True, kw_only=True):
    """A source behind HTTP(S) with credentials. Credentials are named, never written here:
    environment variables or files (a file's content, trailing newline stripped)."""

    auth: Literal["basic", "session", "none"] = "session"
    username_env: EnvName | None = None
    username_file: str | None = None
    password_env: EnvName | None = None
    password_file: str | None = None
    #: TLS certificates are verified unless this is false; `ca_file` adds a private CA.
    verify: bool = True
    ca_file: str | None = None

    def credentials(self) -> tuple[str, str] | None:
        """(username, password), or None when neither is configured; a configured one that is
        missing is an error naming the variable or file, never the value."""
        user = _secret(self.username_env, self.username_file, "username")
        password = _secret(self.password_env, self.password_file, "password")
        if user is None and password is None:
            return None
        if user is None or password is None:
            raise CollectorFileError(
                "<environment>", "$", "a username needs a password and a password a username"
            )
        return user, password


def _secret(env: str | None, file: str | None, what: str) -> str | None:
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise CollectorFileError("<environment>", "$", f"{what}: ${env} is not set")
        return value
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise CollectorFileError(file, "$", f"{what}: cannot read: {exc.strerror}") from exc
    return None


#: What a site source meters: the whole facility, the IT load (rack PDUs, summed), or on-site
#: generation.
Measures = Literal["facility", "it", "renewable"]


class RedfishSource(HttpsSource, frozen=True, tag_field="kind", tag="redfish"):
    """A BMC's Redfish service: node power (EnvironmentMetrics, PSU input, legacy Power) and
    inlet/outlet temperatures."""

    url: Url
    chassis: str | None = None


class RedfishPduSource(HttpsSource, frozen=True, tag_field="kind", tag="redfish_pdu"):
    """A rack PDU's Redfish service (PowerEquipment/RackPDUs): a site's IT power."""

    url: Url
    pdu: str | None = None
    measures: Measures = "it"


class PrometheusSource(_Source, frozen=True, tag_field="kind", tag="prometheus"):
    """An exporter's /metrics (node_exporter, Kepler, Scaphandre, ipmi_exporter) scraped
    directly, or - with `server` and `instance` - a Prometheus server's HTTP API."""

    url: Url | None = None
    server: Url | None = None
    instance: str | None = None


class OidEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One OID of a generic meter: `raw x scale` is the reading, in W or J."""

    oid: Annotated[str, msgspec.Meta(pattern=r"^\.?[0-9]+(\.[0-9]+)+$")]
    quantity: Literal["power_w", "energy_j"]
    scale: Annotated[float, msgspec.Meta(gt=0)] = 1.0


class SnmpSource(_Source, frozen=True, tag_field="kind", tag="snmp"):
    """An SNMP PDU or meter: APC PowerNet rPDU2 (device `device`), Raritan PDU2 (inlet `inlet`
    of PDU `device`), or `generic` OIDs with a scale. v2c: the community from `community_env`
    or `community_file`; v3: `user` with keys from `*_key_env` / `*_key_file`."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    model: Literal["apc", "raritan", "generic"]
    measures: Measures = "it"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 161
    version: Literal["2c", "3"] = "2c"
    community_env: EnvName | None = None
    community_file: str | None = None
    user: str | None = None
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"
    auth_key_env: EnvName | None = None
    auth_key_file: str | None = None
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] = "AES"
    priv_key_env: EnvName | None = None
    priv_key_file: str | None = None
    context_name: str = ""
    device: Annotated[int, msgspec.Meta(ge=1)] = 1
    inlet: Annotated[int, msgspec.Meta(ge=1)] = 1
    oids: list[OidEntry] = []
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1

    def secret(self, what: str) -> str | None:
        """The community, auth_key or priv_key, from its variable or file (None: not set)."""
        return _secret(getattr(self, f"{what}_env"), getattr(self, f"{what}_file"), what)


class IpmiSource(_Source, frozen=True, tag_field="kind", tag="ipmi"):
    """A BMC without Redfish: node power by IPMI DCMI (`ipmitool dcmi power reading`).
    Credentials from `*_env` / `*_file`, as for Redfish; `timeout_s` is ipmitool's per-message
    retransmit time (whole seconds)."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\s-]\S*$")]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 623
    interface: Literal["lanplus", "lan"] = "lanplus"
    username_env: EnvName | None = None
    username_file: str | None = None
    password_env: EnvName | None = None
    password_file: str | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1

    def credentials(self) -> tuple[str, str]:
        """(username, password); a password is required, the username may be the null user."""
        user = _secret(self.username_env, self.username_file, "username")
        password = _secret(self.password_env, self.password_file, "password")
        if password is None:
            raise CollectorFileError(
                "<environment>", "$", f"ipmi {self.host}: give password_env or password_file"
            )
        return user or "", password


NodeSource = RedfishSource | PrometheusSource | IpmiSource
SiteSource = RedfishPduSource | SnmpSource

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class AccessLogSource(_Source, frozen=True, tag_field="kind", tag="access_log"):
    """An access log to tail: nginx JSON lines of the README's `log_format microdc`
    (`nginx_json`) or Envoy's JSON access log (`envoy_json`). Its read position is
    checkpointed (file identity + offset) in the collector's state folder, so rotations and
    restarts lose and repeat nothing. `mapping` overrides the file's `request_mapping`."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    format: Literal["nginx_json", "envoy_json", "nginx_combined"] = "nginx_json"
    mapping: AccessMapping | None = None


class OtlpSource(_Source, frozen=True, tag_field="kind", tag="otlp"):
    """An OTLP/HTTP receiver (`POST /v1/traces`, protobuf or JSON): HTTP server spans become
    request logs. Binds 127.0.0.1 unless told otherwise."""

    bind: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "127.0.0.1"
    port: Port = 4318
    max_body_mb: Annotated[float, msgspec.Meta(gt=0, le=256)] = 16.0
    mapping: AccessMapping | None = None


RequestSource = AccessLogSource | OtlpSource

GridPoll = Annotated[float, msgspec.Meta(ge=10, le=86400)]


class _GridSource(_Source, frozen=True, kw_only=True):
    """A carbon-intensity service polled for `zone` (the fleet's `grid_zone`; the provider's
    own zone or region code is `provider_zone`). `url` replaces the provider's base URL
    (a proxy, a test server)."""

    zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    provider_zone: str | None = None
    poll_interval_s: GridPoll = 900.0
    url: Url | None = None


class ElectricityMapsSource(_GridSource, frozen=True, tag_field="kind", tag="electricity_maps"):
    """Electricity Maps v3 (`auth-token` header from `api_key_env`)."""

    api_key_env: EnvName = "ELECTRICITYMAPS_API_KEY"
    emission_factor_type: Literal["lifecycle", "direct"] = "lifecycle"


class WattTimeSource(_GridSource, frozen=True, tag_field="kind", tag="watttime"):
    """WattTime v3 (`/login` with the username and password from the environment); `co2_aoer`
    is the average rate, `co2_moer` the marginal one."""

    signal_type: Literal["co2_aoer", "co2_moer"] = "co2_aoer"
    username_env: EnvName = "WATTTIME_USERNAME"
    password_env: EnvName = "WATTTIME_PASSWORD"


class UkCarbonIntensitySource(
    _GridSource, frozen=True, tag_field="kind", tag="uk_carbon_intensity"
):
    """NESO's Carbon Intensity API (no key): national, or a region by `region_id`."""

    region_id: Annotated[int, msgspec.Meta(ge=1, le=17)] | None = None


class XmSource(_GridSource, frozen=True, tag_field="kind", tag="xm"):
    """XM's API (Colombia, no key): hourly `factorEmisionCO2e` of the entity `Sistema`,
    published a few days late."""


GridSource = ElectricityMapsSource | WattTimeSource | UkCarbonIntensitySource | XmSource


class NodeSources(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node_id: str
    sources: Annotated[list[NodeSource], msgspec.Meta(min_length=1)]


class SiteSources(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A site's meters. Facility and IT power are each the sum of the sources that meter them
    (every rack PDU of the IT load); `onsite_renewable: none` says the site generates nothing
    (0 W is then a fact, not a guess), otherwise a `renewable` source must meter it."""

    site_id: str
    sources: Annotated[list[SiteSource], msgspec.Meta(min_length=1)]
    onsite_renewable: Literal["metered", "none"] = "none"


class CollectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What `microdc collect` polls, and how often."""

    poll_interval_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 15.0
    nodes: list[NodeSources] = []
    sites: list[SiteSources] = []
    #: Request logs: access logs to tail and OTLP receivers.
    requests: list[RequestSource] = []
    #: How a logged request gets its node and service (a source's own `mapping` wins).
    request_mapping: AccessMapping | None = None
    #: Carbon-intensity services, each polled on its own interval.
    grid: list[GridSource] = []


def load_collectors(path: str | Path, fleet: Fleet) -> CollectorConfig:
    """Parse and check a collector file against `fleet`."""
    file = Path(path)
    return parse_collectors(read_text(file, CollectorFileError), fleet, str(file))


def parse_collectors(text: str, fleet: Fleet, file: str = "<string>") -> CollectorConfig:
    config, tree = convert_yaml(
        text,
        file,
        CollectorConfig,
        CollectorFileError,
        top="poll_interval_s, nodes, sites, requests, request_mapping, grid",
    )
    for where, reason in _cross_check(config, fleet):
        raise CollectorFileError(file, where, reason, line_of(tree, where))
    return config


def _cross_check(config: CollectorConfig, fleet: Fleet) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, node in enumerate(config.nodes):
        if node.node_id not in fleet.node_by_id:
            problems.append((f"$.nodes[{i}].node_id", f"{node.node_id!r} is not in the fleet"))
        if node.node_id in seen:
            problems.append((f"$.nodes[{i}].node_id", f"{node.node_id!r} is listed twice"))
        seen.add(node.node_id)
        problems += _source_problems(f"$.nodes[{i}]", node.sources)
    sites = {s.site_id for s in fleet.sites}
    seen.clear()
    for i, site in enumerate(config.sites):
        if site.site_id not in sites:
            problems.append((f"$.sites[{i}].site_id", f"{site.site_id!r} is not in the fleet"))
        if site.site_id in seen:
            problems.append((f"$.sites[{i}].site_id", f"{site.site_id!r} is listed twice"))
        seen.add(site.site_id)
        problems += _source_problems(f"$.sites[{i}]", site.sources)
        measured = {source.measures for source in site.sources}
        for needed in ("facility", "it"):
            if needed not in measured:
                problems.append((f"$.sites[{i}].sources", f"no source measures {needed} power"))
        if (site.onsite_renewable == "metered") != ("renewable" in measured):
            problems.append(
                (
                    f"$.sites[{i}].onsite_renewable",
                    "metered needs a source that measures renewable, and only then",
                )
            )
    problems += _request_problems(config, fleet)
    zones = {s.grid_zone for s in fleet.sites}
    for i, grid in enumerate(config.grid):
        if grid.zone not in zones:
            problems.append((f"$.grid[{i}].zone", f"{grid.zone!r} is no site's grid_zone"))
    return problems


#: Why nginx's default `combined` format cannot make request logs.
COMBINED_LACKS = (
    "nginx's combined format has no request time (so no latency SLO), no request id (so a "
    "repeated line would count twice) and no upstream address (so no node): paste the "
    "README's `log_format microdc` and use format nginx_json"
)


def _request_problems(config: CollectorConfig, fleet: Fleet) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if config.request_mapping is not None:
        problems += [
            (f"$.request_mapping.{where}", reason)
            for where, reason in config.request_mapping.problems(fleet)
        ]
    paths: set[str] = set()
    ports: set[tuple[str, int]] = set()
    for i, source in enumerate(config.requests):
        at = f"$.requests[{i}]"
        if source.mapping is not None:
            problems += [
                (f"{at}.mapping.{where}", reason)
                for where, reason in source.mapping.problems(fleet)
            ]
        elif config.request_mapping is None:
            problems.append((at, "no mapping: give request_mapping or this source's mapping"))
        if isinstance(source, AccessLogSource):
            if source.format == "nginx_combined":
                problems.append((f"{at}.format", COMBINED_LACKS))
            if source.path in paths:
                problems.append((f"{at}.path", f"{source.path!r} is tailed twice"))
            paths.add(source.path)
        else:
            if (source.bind, source.port) in ports:
                problems.append((f"{at}.port", f"{source.bind}:{source.port} is used twice"))
            ports.add((source.bind, source.port))
    return problems


def _source_problems(
    where: str, sources: list[NodeSource] | list[SiteSource]
) -> list[tuple[str, str]]:
    problems = []
    for j, source in enumerate(sources):
        at = f"{where}.sources[{j}]"
        if isinstance(source, PrometheusSource):
            direct, api = source.url is not None, source.server is not None
            if direct == api:
                problems.append((at, "give either url (an exporter) or server and instance"))
            elif api and not source.instance:
                problems.append((f"{at}.server", "a Prometheus server needs the instance label"))
        elif isinstance(source, SnmpSource):
            problems += _snmp_problems(at, source)
        elif isinstance(source, IpmiSource):
            for what in ("username", "password"):
                if getattr(source, f"{what}_env") and getattr(source, f"{what}_file"):
                    problems.append((at, f"give the {what} as {what}_env or {what}_file, not both"))
            if not (source.password_env or source.password_file):
                problems.append((at, "IPMI needs password_env or password_file"))
        else:
            for what in ("username", "password"):
                env, path = getattr(source, f"{what}_env"), getattr(source, f"{what}_file")
                if env is not None and path is not None:
                    problems.append((at, f"give the {what} as {what}_env or {what}_file"))
            named = source.username_env or source.username_file
            if source.auth == "none" and named:
                problems.append((f"{at}.auth", "auth is none but credentials are configured"))
    return problems


def _snmp_problems(at: str, source: SnmpSource) -> list[tuple[str, str]]:
    problems = []
    pairs = ("community", "auth_key", "priv_key")
    for what in pairs:
        if getattr(source, f"{what}_env") is not None and getattr(source, f"{what}_file"):
            problems.append((at, f"give the {what} as {what}_env or {what}_file, not both"))
    has = {
        what: bool(getattr(source, f"{what}_env") or getattr(source, f"{what}_file"))
        for what in pairs
    }
    if source.version == "2c" and not has["community"]:
        problems.append((at, "SNMP v2c needs community_env or community_file"))
    if source.version == "3":
        if not source.user:
            problems.append((at, "SNMP v3 needs a user"))
        if has["priv_key"] and not has["auth_key"]:
            problems.append((at, "a priv_key needs an auth_key"))
    if (source.model == "generic") != bool(source.oids):
        problems.append((f"{at}.oids", "oids are for model generic, and generic needs them"))
    return problems

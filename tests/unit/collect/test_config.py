"""The collector file: parsed, checked against the fleet, every error located."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.collect.config import (
    AccessLogSource,
    ElectricityMapsSource,
    OtlpSource,
    PrometheusSource,
    RedfishPduSource,
    RedfishSource,
    SnmpSource,
    WattTimeSource,
    load_collectors,
    parse_collectors,
)
from pipeline.errors import CollectorFileError
from pipeline.fleet import Fleet, load_fleet


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet()


def test_a_node_with_a_bmc_and_an_exporter_and_a_site_pdu(fleet: Fleet, tmp_path: Path) -> None:
    node, site = fleet.nodes[0], fleet.sites[0]
    path = tmp_path / "collectors.yaml"
    path.write_text(
        f"""poll_interval_s: 10
nodes:
  - node_id: {node.node_id}
    sources:
      - kind: redfish
        url: https://127.0.0.1:8443
        chassis: 1U
        username_env: BMC_USER
        password_file: {tmp_path / "pw"}
      - kind: prometheus
        url: http://127.0.0.1:9100/metrics
sites:
  - site_id: {site.site_id}
    sources:
      - kind: snmp
        measures: facility
        host: 127.0.0.1
        model: apc
        community_env: PDU_COMMUNITY
      - kind: redfish_pdu
        url: https://127.0.0.1:8444
        auth: basic
""",
        encoding="utf-8",
    )
    config = load_collectors(path, fleet)
    assert config.poll_interval_s == 10.0
    bmc, exporter = config.nodes[0].sources
    assert isinstance(bmc, RedfishSource) and bmc.chassis == "1U" and bmc.verify
    assert bmc.auth == "session" and bmc.timeout_s == 5.0  # the defaults
    assert isinstance(exporter, PrometheusSource) and exporter.server is None
    meter, pdu = config.sites[0].sources
    assert isinstance(meter, SnmpSource) and (meter.measures, meter.version) == ("facility", "2c")
    assert isinstance(pdu, RedfishPduSource) and pdu.measures == "it"
    assert config.sites[0].onsite_renewable == "none"


def test_credentials_come_from_the_environment_or_files(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    source = RedfishSource(
        url="https://bmc", username_env="BMC_USER", password_file=str(tmp_path / "pw")
    )
    monkeypatch.setenv("BMC_USER", "root")
    assert source.credentials() == ("root", "s3cret")
    monkeypatch.delenv("BMC_USER")
    with pytest.raises(CollectorFileError, match=r"\$BMC_USER is not set") as info:
        source.credentials()
    assert "s3cret" not in str(info.value)
    assert RedfishSource(url="https://bmc", auth="none").credentials() is None


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "nodes:\n  - node_id: nope\n    sources:\n      - {kind: prometheus, url: 'http://x'}\n",
            2,
            "'nope' is not in the fleet",
        ),
        (
            "nodes:\n  - node_id: NODE\n    sources:\n      - {kind: snmp, url: 'http://x'}\n",
            4,
            "Invalid value 'snmp'",
        ),
        (
            "nodes:\n  - node_id: NODE\n    sources:\n      - {kind: redfish, url: 'ftp://x'}\n",
            4,
            "regex",
        ),
        ("nodes:\n  - node_id: NODE\n    sources:\n      - {kind: prometheus}\n", 4, "either url"),
        (
            "nodes:\n  - node_id: NODE\n    sources:\n      - {kind: prometheus, server: 'http://p:9090'}\n",
            4,
            "instance",
        ),
        ("nodes:\n  - node_id: NODE\n    sources: []\n", 3, "length >= 1"),
        (
            "nodes:\n  - node_id: NODE\n    sources:\n"
            "      - {kind: redfish, url: 'https://b', password: x}\n",
            4,
            "unknown field `password`",
        ),
        ("poll_interval_s: 0.1\n", 1, ">= 1"),
        (
            "sites:\n  - site_id: SITE\n    sources:\n"
            "      - {kind: snmp, host: pdu, model: apc, community_env: C}\n",
            4,
            "no source measures facility power",
        ),
        (
            "sites:\n  - site_id: SITE\n    sources:\n"
            "      - {kind: snmp, host: pdu, model: apc, measures: facility}\n"
            "      - {kind: snmp, host: pdu, model: apc, community_env: C}\n",
            4,
            "v2c needs community",
        ),
        (
            "sites:\n  - site_id: SITE\n    sources:\n"
            "      - {kind: snmp, host: m, model: generic, measures: facility, community_env: C}\n"
            "      - {kind: snmp, host: pdu, model: apc, community_env: C}\n",
            4,
            "generic needs them",
        ),
        (
            "nodes:\n  - node_id: NODE\n    sources:\n      - {kind: prometheus, url: 'http://x'}\n"
            "  - node_id: NODE\n    sources:\n      - {kind: prometheus, url: 'http://x'}\n",
            5,
            "listed twice",
        ),
    ],
)
def test_errors_name_the_file_line_and_path(
    fleet: Fleet, body: str, line: int, message: str
) -> None:
    with pytest.raises(CollectorFileError, match=message) as info:
        text = body.replace("NODE", fleet.nodes[0].node_id).replace("SITE", fleet.sites[0].site_id)
        parse_collectors(text, fleet, "c.yaml")
    assert str(info.value).startswith(f"c.yaml:{line}: $")


REQUESTS = """requests:
  - kind: access_log
    path: /var/log/nginx/microdc.log
  - kind: otlp
    port: 4318
request_mapping:
  nodes: [{match: "10.20.0.11:*", node_id: bog1-r1-n01}]
  services: [{service: checkout-api}]
grid:
  - kind: electricity_maps
    zone: CO
  - kind: watttime
    zone: MX
    provider_zone: CFE_NORTE
    signal_type: co2_moer
"""


def test_request_and_grid_sources(fleet: Fleet) -> None:
    config = parse_collectors(REQUESTS, fleet, "c.yaml")
    log, otlp = config.requests
    assert isinstance(log, AccessLogSource) and log.format == "nginx_json"
    assert isinstance(otlp, OtlpSource) and (otlp.bind, otlp.port) == ("127.0.0.1", 4318)
    assert config.request_mapping is not None
    em, wt = config.grid
    assert isinstance(em, ElectricityMapsSource) and em.api_key_env == "ELECTRICITYMAPS_API_KEY"
    assert isinstance(wt, WattTimeSource) and wt.provider_zone == "CFE_NORTE"


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        # the combined format: what it lacks, and what to do
        (
            ("path: /var/log/nginx/microdc.log", "path: /x.log\n    format: nginx_combined"),
            4,
            r"requests\[0\].format: nginx's combined format has no request time .*log_format",
        ),
        (
            (
                'request_mapping:\n  nodes: [{match: "10.20.0.11:*", node_id: bog1-r1-n01}]\n'
                "  services: [{service: checkout-api}]\n",
                "",
            ),
            2,
            r"requests\[0\]: no mapping",
        ),
        (
            ("node_id: bog1-r1-n01", "node_id: nope"),
            7,
            r"request_mapping.nodes\[0\].node_id: 'nope' is not in the fleet",
        ),
        (("zone: CO", "zone: XX"), 11, r"grid\[0\].zone: 'XX' is no site's grid_zone"),
        (("kind: otlp\n    port: 4318", "kind: otlp\n    port: 99999"), 5, r"requests\[1\].port"),
    ],
)
def test_request_and_grid_errors_are_located(
    fleet: Fleet, edit: tuple[str, str], line: int, message: str
) -> None:
    with pytest.raises(CollectorFileError, match=message) as info:
        parse_collectors(REQUESTS.replace(*edit), fleet, "c.yaml")
    assert str(info.value).startswith(f"c.yaml:{line}: $")

"""Fleet reference data: sites, nodes, teams, services, tariffs and baselines, from YAML."""

from pipeline.fleet.loader import demo_fleet_path, load_fleet, parse_fleet
from pipeline.fleet.model import (
    Baseline,
    Fleet,
    Load,
    Node,
    Service,
    Site,
    Slo,
    TariffPeriod,
    Team,
)

__all__ = [
    "Baseline",
    "Fleet",
    "Load",
    "Node",
    "Service",
    "Site",
    "Slo",
    "TariffPeriod",
    "Team",
    "demo_fleet_path",
    "load_fleet",
    "parse_fleet",
]

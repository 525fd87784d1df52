"""The live view's reader positions and its page: no broker, no browser (see
tests/integration/test_live_view.py for both)."""

from __future__ import annotations

import base64
import hashlib
import re

from pipeline.fleet import load_fleet
from pipeline.processors.live import (
    LIVE_TOPICS,
    REEMIT_MARGIN,
    records_per_minute,
    start_offsets,
)
from pipeline.processors.live_page import CONTENT_SECURITY_POLICY, PAGE, SCRIPT, STYLE
from pipeline.stream.live import AHEAD_MINUTES

FLEET = load_fleet()


def test_records_per_minute_of_the_demo_fleet() -> None:
    per_minute = records_per_minute(FLEET)
    assert per_minute["mdc.site-minutes"] == 3
    # checkout-api, fraud-score, catalog-search, auth at 3 sites, video-transcode at 2, reports
    # at 1: 15 service-site rows plus one `__all__` row per service.
    assert per_minute["mdc.slo-burn"] == 15 + 6
    # 24 nodes per site: each site runs 5 services; + idle; + 4 partition marks.
    assert per_minute["mdc.node-minutes"] == 24 * 6 * 3 + 4


def test_start_offsets_cover_the_window_and_alerts_from_the_start() -> None:
    begin = {"mdc.site-minutes": 0, "mdc.slo-burn": 0, "mdc.alerts": 7, "mdc.node-minutes": 0}
    end = {
        "mdc.site-minutes": 10_000,
        "mdc.slo-burn": 50,
        "mdc.alerts": 900,
        "mdc.node-minutes": 10_000_000,
    }
    assert {spec.name for spec in LIVE_TOPICS} == begin.keys()
    assert all(spec.partitions == 1 for spec in LIVE_TOPICS)  # what `start_offsets` assumes
    starts = start_offsets(FLEET, 15, begin, end)
    assert starts["mdc.alerts"] == 7
    assert starts["mdc.site-minutes"] == 10_000 - REEMIT_MARGIN * 15 * 3
    assert starts["mdc.slo-burn"] == 0  # less than a window in the log: from its start
    node_back = (15 + AHEAD_MINUTES) * (24 * 6 * 3 + 4)
    assert starts["mdc.node-minutes"] == 10_000_000 - node_back


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_page_is_self_contained_and_its_policy_allows_exactly_its_inline_code() -> None:
    script = re.search(r"<script>(.*)</script>", PAGE, re.S)
    style = re.search(r"<style>(.*)</style>", PAGE, re.S)
    assert script is not None and script.group(1) == SCRIPT
    assert style is not None and style.group(1) == STYLE
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == _sha256(SCRIPT)
    assert policy["style-src"] == _sha256(STYLE)
    assert policy["connect-src"] == "'self'"
    # No URL but the SVG namespace (an identifier, never fetched); data comes from `live.json`.
    assert re.findall(r"(?:https?:)?//[\w.-]+", PAGE) == ["http://www.w3.org"]
    assert 'fetch("live.json"' in SCRIPT
    assert " style=" not in PAGE  # inline style attributes would need 'unsafe-inline'

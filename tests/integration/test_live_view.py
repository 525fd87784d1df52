"""The live view in a browser: a worker on the real broker, a live feed, headless Chromium.

The simulated fleet (14:50-16:05) is produced at a fixed pace while the page is open. Stage 2
closes a minute as soon as stage 1, the meters and a grid value valid for it allow (DESIGN §6),
so the page follows minute by minute without being reloaded, until the last minute the
watermarks pass (about 16:02). At the end the
page shows what `/live.json` says, and that equals a `LiveState` fed with the embedded runner's
outputs of the same records up to the same minute (the worker computes the stream, the state
the window). Its `inputs` (this worker's input partitions, which differ between replicas) are
left out of that comparison; the two workers' inputs together cover both stage-1 input topics.
"""

from __future__ import annotations

import json
import math
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.contracts.outputs import NodeMinute
from pipeline.contracts.records import epoch_ms
from pipeline.embedded.driver import from_envelopes, run_embedded
from pipeline.fleet import load_fleet
from pipeline.simulate import SimConfig, Simulator
from pipeline.stream.live import LiveState, NodeMinuteItem
from tests.support.browser import open_page
from tests.support.live_feed import LiveFeed
from tests.support.worker_procs import Worker, WorkerPool, wait_for

pytestmark = pytest.mark.browser

START = datetime(2026, 3, 2, 14, 50, tzinfo=UTC)
MINUTES = 75
FIRST_CLOSED = "2026-03-02T14:50:00Z"
#: The page has followed the whole feed once it shows a minute at or after this.
LATE_AS_OF = "2026-03-02T16:00:00Z"
METRICS = ("wh_per_request", "pue", "p95_latency_ms", "burn_1h")

ROWS_JS = """() => Array.from(document.querySelectorAll('#sites tbody tr[data-site]')).map(tr => ({
  site: tr.dataset.site,
  values: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-metric]'))
    .map(td => [td.dataset.metric, td.dataset.value])),
}))"""
STATUS_JS = """() => ({
  asOf: document.getElementById('as-of').dataset.asOf || '',
  refreshes: Number(document.getElementById('updated').dataset.refreshes || 0),
  updated: document.getElementById('updated').textContent,
  marker: window.__sameDocument === true,
  alerts: Array.from(document.querySelectorAll('#alerts tbody tr[data-alert-id]'))
    .map(tr => tr.dataset.alertId),
})"""


INPUT_ROWS_JS = """() => Array.from(document.querySelectorAll('#inputs tbody tr[data-topic]'))
  .map(tr => [tr.dataset.topic, tr.dataset.partition])"""


def fleet_view(data: dict[str, Any]) -> dict[str, Any]:
    """`/live.json` without `inputs`: what every replica shows alike."""
    return {key: value for key, value in data.items() if key != "inputs"}


def live_json(worker: Worker) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/live.json", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def reference_view(envelopes: list[Any], as_of: str) -> dict[str, Any]:
    """The window the worker should show: the embedded runner's outputs up to `as_of`."""
    fleet = load_fleet()
    result = run_embedded(fleet, from_envelopes(envelopes))
    until = epoch_ms(datetime.fromisoformat(as_of))
    state = LiveState(fleet)
    decode = msgspec.json.Decoder(NodeMinuteItem).decode
    for row in result.outputs["mdc.node-minutes"]:
        if isinstance(row, NodeMinute):
            state.add_node_minute(decode(msgspec.json.encode(row)))
    for row in result.outputs["mdc.site-minutes"]:
        if epoch_ms(row.window_start) <= until:
            state.add_site_minute(row)
    for row in result.outputs["mdc.slo-burn"]:
        if epoch_ms(row.window_start) <= until:
            state.add_slo_burn(row)
    for alert in result.outputs["mdc.alerts"]:
        if alert.at_ms <= until:
            state.add_alert(alert)
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(state.view()))
    return data


def assert_close(got: Any, want: Any, where: str = "view") -> None:
    """Equal, floats within 1e-9 relative (the worker sums in its read order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float | int):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_live_page_shows_the_fleet_and_refreshes_by_itself(
    kafka_bootstrap: str, topic_prefix: str, pool: WorkerPool
) -> None:
    fleet = load_fleet()
    config = SimConfig(start=START, minutes=MINUTES, seed=33, rps_scale=0.05)
    feed = LiveFeed(kafka_bootstrap, topic_prefix, list(Simulator(fleet, config).minutes()), 0.3)
    # Two replicas: stage 2 and some of stage 1 run on one of them, yet both show the fleet.
    worker, replica = pool.add("w1").start(), pool.add("w2").start()
    worker.wait_ready()
    replica.wait_ready()
    assert listening_addresses(worker.port) == {"0100007F"}, "web server must bind 127.0.0.1 only"
    base = f"http://127.0.0.1:{worker.port}/"
    site_ids = [s.site_id for s in fleet.sites]

    with open_page("about:blank") as browser:
        page = browser.page
        requested: list[str] = []
        blocked: list[str] = []

        def only_the_worker(route: Any) -> None:
            url = route.request.url
            requested.append(url)
            if url.startswith(base):
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        page.route("**/*", only_the_worker)
        response = page.goto(base + "live", wait_until="load")
        assert response is not None and response.ok
        assert "default-src 'none'" in response.headers["content-security-policy"]
        page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads

        def status() -> dict[str, Any]:
            result: dict[str, Any] = page.evaluate(STATUS_JS)
            return result

        wait_for(lambda: status()["refreshes"] >= 1, 20, "the page's first refresh", every=0.5)
        assert status()["asOf"] == ""  # nothing closed yet: the feed has not started
        feed.start()
        try:

            def every_site_numeric() -> list[dict[str, Any]] | None:
                rows: list[dict[str, Any]] = page.evaluate(ROWS_JS)
                complete = [r for r in rows if all(r["values"].get(m) for m in METRICS)]
                return rows if sorted(r["site"] for r in complete) == sorted(site_ids) else None

            rows = wait_for(every_site_numeric, 120, "numbers for every site", every=0.5)
            first = status()
            assert first["marker"], "the page reloaded"
            assert FIRST_CLOSED <= first["asOf"] < LATE_AS_OF
            for row in rows:
                for metric in METRICS:
                    assert math.isfinite(float(row["values"][metric])), (row, metric)

            wait_for(lambda: feed.done, 120, "the live feed to finish")
        finally:
            feed.stop()
        readings: list[str] = []

        def settled() -> str | None:  # the same last closed minute twice, 3 s apart
            readings.append(live_json(worker)["as_of"] or "")
            last = readings[-1]
            return last if last >= LATE_AS_OF and readings[-2:] == [last, last] else None

        last_as_of = wait_for(settled, 120, "the last minute to close", every=3.0)
        wait_for(lambda: status()["asOf"] == last_as_of, 20, "the page to show it", every=0.5)
        later = status()
        assert later["marker"], "the page reloaded"
        assert later["refreshes"] > first["refreshes"] and later["updated"] != first["updated"]
        assert later["updated"].startswith("updated ")

        # Settled (nothing closes any more): the page shows what /live.json says.
        data = live_json(worker)
        assert data["as_of"] == last_as_of
        wait_for(lambda: status()["refreshes"] > later["refreshes"] + 1, 10, "two refreshes")
        shown = {r["site"]: r["values"] for r in page.evaluate(ROWS_JS)}
        for site in data["sites"]:
            values = shown[site["site_id"]]
            assert float(values["wh_per_request"]) == site["wh_per_request"]
            assert float(values["pue"]) == site["pue"]
            assert float(values["p95_latency_ms"]) == site["p95_latency_ms"]
            assert float(values["burn_1h"]) == site["burn"]["burn_1h"]
            assert int(values["alerts_firing"]) == site["alerts_firing"]
            assert site["minutes"] == 15
        firing = [a["alert_id"] for a in data["firing"]]
        assert status()["alerts"] == firing
        assert firing and {a["severity"] for a in data["firing"]} == {"page", "ticket"}
        shown_inputs = page.evaluate(INPUT_ROWS_JS)
        assert shown_inputs == [
            [p["topic"], str(p["partition"])] for p in data["inputs"]["partitions"]
        ]

        # ... and that is the window of the embedded runner's outputs, to the same minute,
        # which the other replica shows too.
        assert_close(fleet_view(data), reference_view(feed.envelopes, last_as_of))
        wait_for(lambda: live_json(replica)["as_of"] == last_as_of, 30, "the replica's view")
        assert_close(fleet_view(live_json(replica)), fleet_view(data))
        stage_one = [
            p
            for w in (worker, replica)
            for p in live_json(w)["inputs"]["partitions"]
            if p["stage"] == "stage-one"
        ]
        assert {p["topic"] for p in stage_one} == {
            f"{topic_prefix}mdc.node-telemetry",
            f"{topic_prefix}mdc.request-log",
        }
        assert all(p["watermark_ms"] is not None for p in stage_one)

        path = browser.screenshot("live-view.png")
        assert path.stat().st_size > 10_000
        assert browser.errors == []
        assert blocked == []
        assert requested and all(url.startswith(base) for url in requested)

    for w in (worker, replica):
        w.stop()
        assert w.proc is not None and w.proc.returncode == 0, w.log_tail()

"""The live view's "Inputs (this worker)" section: the pure builder, its agreement with
`/metrics`, `/live.json` through Faust's own web server, and the page (markup here, drawn in
headless Chromium by the `browser` test at the end). No broker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import faust
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.fleet import load_fleet
from pipeline.processors.app import WorkerConfig, create_app
from pipeline.processors.live import install_live
from pipeline.processors.live_inputs import (
    BEHIND_HINT,
    DUPLICATE_HINT,
    EXCLUDED_HINT,
    LATE_HINT,
    SPLIT_HINT,
    CounterValues,
    counter_values,
    inputs_view,
)
from pipeline.processors.live_page import BODY, PAGE, SCRIPT
from pipeline.processors.web import StageCollector, WorkerMetrics
from pipeline.stream.live import LiveState, LiveView

NODE, REQ = "mdc.node-telemetry", "mdc.request-log"
FACILITY, GRID, NODE_MIN = "mdc.facility-telemetry", "mdc.grid-intensity", "mdc.node-minutes"
T0 = 1_772_463_000_000  # 2026-03-02T14:50:00Z
SAMPLE_LATE = "sample interval overlaps closed minutes"
REQUEST_LATE = "request finished in a closed minute"


def stage_one(
    partition: int,
    marks: dict[str, int | None],
    waiting: list[str],
    lag: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A stage-1 entry of `describe()["partitions"]`, shaped as `StageOneAgent.stage_info`
    makes it: `marks` by topic, `waiting` and `source_watermarks` by source name, in the same
    order (node telemetry first)."""
    return {
        "stage": "stage-one",
        "partition": partition,
        "buffered": 0,
        "consumer_lag": lag or {},
        "source_watermarks": dict.fromkeys(("node", "request")[: len(marks)]),
        "source_watermark_ms": marks,
        "waiting_for": waiting,
        "excluded_topics": sorted(
            topic
            for name, topic in zip(("node", "request"), marks, strict=False)
            if name not in waiting
        ),
        "open_minutes": 3,
        "watermark_ms": None,
        "watermark": None,
        "last_closed_minute": None,
        "offsets": {},
    }


def stage_two(lag: dict[str, int]) -> dict[str, Any]:
    return {
        "stage": "stage-two",
        "partition": 0,
        "buffered": 0,
        "consumer_lag": lag,
        "open_minutes": 0,
        "watermark_ms": T0,
        "watermark": "2026-03-02T14:50:00Z",
        "last_closed_minute": None,
        "offsets": {},
    }


DESCRIBED = [
    # request logs 180 s behind and no longer waited for (skew rule)
    stage_one(0, {NODE: T0, REQ: T0 - 180_000}, ["node"], {NODE: 12, REQ: 0}),
    # node telemetry has sent nothing yet: the request logs' watermark is the only one
    stage_one(1, {NODE: None, REQ: T0 - 90_000}, ["node", "request"], {REQ: 7}),
    # exactly at the bound: not flagged
    stage_one(2, {NODE: T0 - 60_000, REQ: T0}, ["node", "request"]),
    stage_two({GRID: 0, FACILITY: 3, NODE_MIN: 250}),
]
COUNTERS = CounterValues(
    events_in={NODE: 900.0, REQ: 5000.0, NODE_MIN: 40.0, FACILITY: 12.0},
    late={(REQ, REQUEST_LATE): 3.0, (NODE, SAMPLE_LATE): 2.0, (REQ, "another reason"): 4.0},
    duplicates={REQ: 6.0},
    split_node_minutes=5.0,
)


def by_key(view: Any) -> dict[tuple[str, int], Any]:
    return {(p.topic, p.partition): p for p in view.partitions if p.stage == "stage-one"}


def test_behind_is_measured_from_the_fastest_source_of_the_same_partition() -> None:
    rows = by_key(inputs_view(DESCRIBED, COUNTERS))
    assert rows[(NODE, 0)].behind_s == 0.0
    assert rows[(REQ, 0)].behind_s == 180.0
    assert rows[(REQ, 1)].behind_s == 0.0  # the only source with a watermark is the fastest
    assert rows[(NODE, 1)].behind_s is None and rows[(NODE, 1)].watermark is None
    assert rows[(NODE, 2)].behind_s == 60.0
    assert rows[(REQ, 0)].watermark == "2026-03-02T14:47:00Z"
    assert rows[(REQ, 0)].watermark_ms == T0 - 180_000
    assert rows[(NODE, 0)].consumer_lag == 12 and rows[(NODE, 2)].consumer_lag is None


def test_a_source_not_waited_for_is_flagged_excluded_with_its_hint() -> None:
    rows = by_key(inputs_view(DESCRIBED, COUNTERS))
    assert rows[(REQ, 0)].excluded is True
    assert rows[(REQ, 0)].warn and rows[(REQ, 0)].hint == EXCLUDED_HINT
    assert "--max-source-skew" in EXCLUDED_HINT
    assert [rows[k].excluded for k in [(NODE, 0), (NODE, 1), (REQ, 1), (NODE, 2)]] == [False] * 4
    assert not rows[(NODE, 0)].warn and rows[(NODE, 0)].hint is None
    # sent nothing yet, but waited for: nothing to flag
    assert not rows[(NODE, 1)].warn


def test_a_source_more_than_the_bound_behind_is_flagged() -> None:
    rows = by_key(inputs_view(DESCRIBED, COUNTERS))
    assert rows[(NODE, 2)].behind_s == 60.0 and not rows[(NODE, 2)].warn  # at the bound
    view = inputs_view([stage_one(0, {NODE: T0, REQ: T0 - 61_000}, ["node", "request"])], COUNTERS)
    slow = by_key(view)[(REQ, 0)]
    assert slow.warn and slow.hint == BEHIND_HINT and slow.excluded is False
    relaxed = inputs_view(DESCRIBED, COUNTERS, behind_warn_s=200.0)
    assert by_key(relaxed)[(REQ, 0)].hint == EXCLUDED_HINT  # excluded whatever the bound
    assert relaxed.behind_warn_s == 200.0


def test_stage_two_inputs_are_listed_with_their_consumer_lag_only() -> None:
    view = inputs_view(DESCRIBED, COUNTERS)
    two = [p for p in view.partitions if p.stage == "stage-two"]
    assert [(p.topic, p.consumer_lag) for p in two] == [(GRID, 0), (FACILITY, 3), (NODE_MIN, 250)]
    assert all(p.watermark is None and p.behind_s is None and p.excluded is None for p in two)
    assert not any(p.warn for p in two)
    # describe()'s order: stage-1 partitions, node telemetry first, then stage 2
    assert [(p.stage, p.partition, p.topic) for p in view.partitions][:3] == [
        ("stage-one", 0, NODE),
        ("stage-one", 0, REQ),
        ("stage-one", 1, NODE),
    ]


def test_topic_counts_late_reasons_summed_per_topic_duplicates_and_split() -> None:
    view = inputs_view(DESCRIBED, COUNTERS)
    topics = {t.topic: t for t in view.topics}
    # the order partitions name them, then the counters' other topics by name
    assert [t.topic for t in view.topics] == [NODE, REQ, GRID, FACILITY, NODE_MIN]
    req, node = topics[REQ], topics[NODE]
    assert req.late == {"another reason": 4, REQUEST_LATE: 3} and req.late_total == 7
    assert node.late == {SAMPLE_LATE: 2} and node.late_total == 2
    assert req.records_consumed == 5000 and node.records_consumed == 900
    assert topics[GRID].records_consumed == 0
    assert req.duplicates_dropped == 6 and node.duplicates_dropped == 0
    assert req.warn and req.hint == f"{LATE_HINT}; {DUPLICATE_HINT}"
    assert node.warn and node.hint == LATE_HINT
    assert not topics[FACILITY].warn and topics[FACILITY].hint is None
    assert view.split_node_minutes == 5 and view.split_warn and view.split_hint == SPLIT_HINT
    assert "key them by node_id" in SPLIT_HINT
    quiet = inputs_view([], CounterValues())
    assert quiet.partitions == [] and quiet.topics == []
    assert quiet.split_node_minutes == 0 and not quiet.split_warn and quiet.split_hint is None


def test_a_topic_only_the_counters_know_is_listed() -> None:
    """A partition revoked since: its counts stay, in the worker's counters and here."""
    view = inputs_view([], CounterValues(late={("mdc.gone", REQUEST_LATE): 1.0}))
    assert [(t.topic, t.late_total, t.records_consumed) for t in view.topics] == [
        ("mdc.gone", 1, 0)
    ]


def busy_metrics() -> WorkerMetrics:
    """Counters holding `COUNTERS`, bumped as the agents bump them."""
    metrics = WorkerMetrics()
    metrics.events_in.labels(NODE).inc(900)
    metrics.events_in.labels(REQ).inc(5000)
    metrics.events_in.labels(NODE_MIN).inc(40)
    metrics.events_in.labels(FACILITY).inc(12)
    metrics.late_by_reason.labels(REQ, REQUEST_LATE).inc(3)
    metrics.late_by_reason.labels(REQ, "another reason").inc(4)
    metrics.late_by_reason.labels(NODE, SAMPLE_LATE).inc(2)
    metrics.duplicates.labels(REQ).inc(6)
    metrics.split_nodes.inc(5)
    return metrics


def test_counter_values_are_what_a_scrape_shows() -> None:
    """One source of truth: the section's numbers are `/metrics`' samples."""
    metrics = busy_metrics()
    assert counter_values(metrics) == COUNTERS
    metrics.add_collector(StageCollector(lambda: {"partitions": DESCRIBED}))
    view = inputs_view(DESCRIBED, counter_values(metrics))
    scraped: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            scraped.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    topics = {t.topic: t for t in view.topics}
    for labels, value in scraped["microdc_events_in_total"].items():
        assert topics[dict(labels)["topic"]].records_consumed == value
    late = scraped["microdc_late_records_total"]
    assert len(late) == 3
    for labels, value in late.items():
        lab = dict(labels)
        assert topics[lab["topic"]].late[lab["reason"]] == value
    assert (
        topics[REQ].duplicates_dropped
        == scraped["microdc_duplicates_dropped_total"][(("topic", REQ),)]
    )
    assert view.split_node_minutes == scraped["microdc_split_node_minutes_total"][()] == 5
    behind = scraped["microdc_source_behind_seconds"]
    shown = {
        (p.topic, str(p.partition)): p.behind_s for p in view.partitions if p.behind_s is not None
    }
    assert len(behind) == len(shown) == 5
    for labels, value in behind.items():
        lab = dict(labels)
        assert shown[(lab["topic"], lab["partition"])] == value
    lag = scraped["microdc_consumer_lag_records"]
    for p in view.partitions:
        if p.consumer_lag is not None:
            assert lag[(("partition", str(p.partition)), ("topic", p.topic))] == p.consumer_lag


def live_app(describe: Any, metrics: WorkerMetrics) -> Any:
    """A Faust app with the live view installed as the worker installs it (never started: no
    broker is contacted)."""
    app = faust.App(f"test-live-{uuid4().hex[:8]}", web_enabled=True, autodiscover=False)
    install_live(
        app,
        load_fleet(),
        bootstrap="127.0.0.1:9",
        prefix="",
        metrics=metrics,
        describe=describe,
    )
    return app


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_live_json_carries_the_view_and_this_workers_inputs() -> None:
    metrics = busy_metrics()
    calls: list[int] = []
    described = {"partitions": DESCRIBED}

    def describe() -> dict[str, Any]:
        calls.append(1)
        return described

    app = live_app(describe, metrics)

    async def two_requests() -> list[tuple[int, str, Any]]:
        got = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for _ in range(2):
                resp = await client.get("/live.json")
                got.append((resp.status, resp.headers["Content-Type"], await resp.json()))
                # counted after the first request: the next one shows it (no cache)
                metrics.duplicates.labels(NODE).inc(2)
                described["partitions"] = DESCRIBED[:1]
        return got

    (status, content_type, data), (_, _, again) = asyncio.run(two_requests())
    assert status == 200 and content_type.startswith("application/json")
    empty = msgspec.json.decode(msgspec.json.encode(LiveState(load_fleet()).view()))
    assert set(data) == set(LiveView.__struct_fields__) | {"inputs"}
    assert {k: v for k, v in data.items() if k != "inputs"} == empty
    want = msgspec.json.decode(msgspec.json.encode(inputs_view(DESCRIBED, COUNTERS)))
    assert data["inputs"] == want
    assert calls == [1, 1]  # describe() is read per request
    assert {t["topic"]: t["duplicates_dropped"] for t in again["inputs"]["topics"]}[NODE] == 2
    assert {p["partition"] for p in again["inputs"]["partitions"]} == {0}


@pytest.mark.slow  # starts a program or opens a socket: not a unit test
def test_the_workers_app_serves_its_own_stages_and_counters(tmp_path: Path) -> None:
    """`create_app`'s wiring: `/live.json` reads the describe() of `/health` and the counters
    of `/metrics` (the app is never started: no broker)."""
    app: Any = create_app(
        WorkerConfig(bootstrap="127.0.0.1:9", data_dir=tmp_path / "state", store="memory://")
    )
    one, two = app.microdc_agents
    one.describe = lambda: DESCRIBED[:3]  # the runs a stage-1 agent would report
    two.describe = lambda: DESCRIBED[3:]
    metrics = one.metrics
    assert two.metrics is metrics
    metrics.split_nodes.inc(4)
    metrics.late_by_reason.labels(REQ, REQUEST_LATE).inc(3)

    async def get(*paths: str) -> list[Any]:
        async with TestClient(TestServer(app.web.web_app)) as client:
            out = []
            for path in paths:
                resp = await client.get(path)
                assert resp.status == 200, path
                out.append(await resp.json() if path != "/metrics" else await resp.text())
            return out

    data, health, scrape = asyncio.run(get("/live.json", "/health", "/metrics"))
    assert health["stages"] == DESCRIBED
    want = inputs_view(
        DESCRIBED, CounterValues(late={(REQ, REQUEST_LATE): 3}, split_node_minutes=4)
    )
    assert data["inputs"] == msgspec.json.decode(msgspec.json.encode(want))
    assert "microdc_split_node_minutes_total 4.0" in scrape.splitlines()


def test_page_has_the_inputs_tables_and_sets_text_only() -> None:
    assert "<h2>Inputs (this worker)" in BODY
    assert '<table id="inputs">' in PAGE and '<table id="input-topics">' in PAGE
    assert 'id="split"' in PAGE
    for header in ("Consumer lag", "Watermark", "Behind fastest", "Skew rule"):
        assert f"<th>{header}</th>" in BODY
    for header in ("Records consumed", "Late records", "Duplicates dropped"):
        assert f"<th>{header}</th>" in BODY
    assert BODY.index('id="alerts"') < BODY.index('id="inputs"') < BODY.index("<footer>")
    assert "renderInputs(data.inputs)" in SCRIPT
    # strings from Kafka reach the DOM as text only (the browser test shows it on a hostile id)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in SCRIPT


# -- in a browser ---------------------------------------------------------------------------------

HOSTILE_TOPIC = '<img src=x onerror="window.__pwned=1">mdc.node-telemetry'
HOSTILE_REASON = "</td><script>window.__pwned=2</script>"

INPUTS_JS = """() => ({
  parts: Array.from(document.querySelectorAll('#inputs tbody tr[data-topic]')).map(tr => ({
    topic: tr.dataset.topic, partition: tr.dataset.partition, warn: tr.classList.contains('warn'),
    name: tr.querySelector('.topic').textContent,
    hint: tr.querySelector('.hint') ? tr.querySelector('.hint').textContent : null,
    values: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-metric]'))
      .map(td => [td.dataset.metric, td.dataset.value])),
  })),
  topics: Array.from(document.querySelectorAll('#input-topics tbody tr[data-topic]')).map(tr => ({
    topic: tr.dataset.topic, warn: tr.classList.contains('warn'), text: tr.textContent,
    values: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-metric]'))
      .map(td => [td.dataset.metric, td.dataset.value])),
  })),
  split: document.getElementById('split').dataset.value,
  splitWarn: document.getElementById('split').classList.contains('warn'),
  splitText: document.getElementById('split').textContent,
  injected: document.querySelectorAll('main img, main script').length,
  pwned: window.__pwned === undefined ? null : window.__pwned,
})"""


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Faust's aiohttp application of `app` on 127.0.0.1, in a thread of its own."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app.web.web_app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.mark.browser
def test_the_page_draws_the_inputs_flags_them_and_escapes_hostile_ids() -> None:
    from tests.support.browser import open_page

    metrics = busy_metrics()
    metrics.late_by_reason.labels(HOSTILE_TOPIC, HOSTILE_REASON).inc(1)
    described = [
        stage_one(0, {HOSTILE_TOPIC: T0, REQ: T0 - 180_000}, ["node"], {HOSTILE_TOPIC: 12}),
        stage_one(1, {HOSTILE_TOPIC: T0, REQ: T0}, ["node", "request"]),
    ]
    app = live_app(lambda: {"partitions": described}, metrics)
    with serving(app) as base, open_page(base + "live") as browser:
        page = browser.page
        page.wait_for_function(
            "document.querySelectorAll('#inputs tbody tr[data-topic]').length === 4", timeout=15_000
        )
        shown = page.evaluate(INPUTS_JS)
        errors = list(browser.errors)
        browser.screenshot("live-view-inputs.png")

    assert errors == []  # no CSP violation, no script error
    assert shown["pwned"] is None and shown["injected"] == 0
    parts = {(p["topic"], p["partition"]): p for p in shown["parts"]}
    hostile = parts[(HOSTILE_TOPIC, "0")]
    assert hostile["name"] == f"{HOSTILE_TOPIC} [0]"  # drawn as text, not as an element
    assert hostile["values"]["consumer_lag"] == "12" and not hostile["warn"]
    slow = parts[(REQ, "0")]
    assert slow["warn"] and slow["hint"] == EXCLUDED_HINT
    assert slow["values"] == {
        "consumer_lag": "",
        "watermark_ms": str(T0 - 180_000),
        "behind_s": "180",
        "excluded": "true",
    }
    assert not parts[(REQ, "1")]["warn"] and parts[(REQ, "1")]["hint"] is None
    assert parts[(REQ, "1")]["values"]["excluded"] == "false"
    topics = {t["topic"]: t for t in shown["topics"]}
    assert HOSTILE_REASON in topics[HOSTILE_TOPIC]["text"]
    assert topics[HOSTILE_TOPIC]["warn"] and topics[HOSTILE_TOPIC]["values"]["late_total"] == "1"
    assert topics[REQ]["warn"] and topics[REQ]["values"] == {
        "records_consumed": "5000",
        "late_total": "7",
        "duplicates_dropped": "6",
    }
    assert LATE_HINT in topics[REQ]["text"] and DUPLICATE_HINT in topics[REQ]["text"]
    # known from the counters only (no partition of it owned now), late records: flagged
    assert topics[NODE]["warn"] and topics[NODE]["values"]["late_total"] == "2"
    assert shown["split"] == "5" and shown["splitWarn"] and SPLIT_HINT in shown["splitText"]

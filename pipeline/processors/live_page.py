"""The live view page (`GET /live`): one self-contained HTML document, inline CSS and JS.

It makes no request but `live.json` (relative, so it also works behind a path prefix): no CDN,
no fonts, no images; the Content-Security-Policy sent with it allows exactly that (scripts and
styles by hash, fetches to its own origin). Every 2 s it fetches the view and redraws the site
table (value + inline SVG sparkline per metric), the fleet totals and the alerts; the header
says when the last refresh succeeded (browser time) and which event-time minute the data is as
of. Under them, "Inputs (this worker)" (`live_inputs`): the worker's input topic-partitions and
per-topic counts, rows the view flags drawn in the warning style with their hint. Cells carry
`data-metric` / `data-value` and rows `data-site` / `data-alert-id` / `data-topic` (+
`data-partition`), so tests read numbers, not formatted text. Every string from the data (ids
come from Kafka) is set as `textContent`, never parsed as HTML.
"""

from __future__ import annotations

import base64
import hashlib

REFRESH_MS = 2000

STYLE = """
:root {
  --bg: #f4f6f9; --card: #ffffff; --ink: #1d2633; --muted: #667085; --line: #e4e7ec;
  --head: #0f1b2d; --accent: #2f6fde; --ok: #12805c; --warn: #b7791f; --high: #d9480f;
  --page: #c0163f; --spark: #2f6fde;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  font-variant-numeric: tabular-nums;
}
header {
  display: flex; flex-wrap: wrap; align-items: center; gap: 8px 24px;
  padding: 16px 24px; background: var(--head); color: #dbe4f0;
}
header h1 { margin: 0; font-size: 18px; font-weight: 650; color: #fff; letter-spacing: .2px; }
header h1 span { color: #8fb3ff; font-weight: 500; }
header .window { color: #a9b7cc; }
header .status { margin-left: auto; display: flex; align-items: center; gap: 8px; }
.dot { width: 9px; height: 9px; border-radius: 50%; background: #8592a6; }
.status.ok .dot { background: #3ccf8e; box-shadow: 0 0 0 3px rgba(60, 207, 142, .18); }
.status.stale .dot { background: #f0b429; box-shadow: 0 0 0 3px rgba(240, 180, 41, .2); }
main { padding: 20px 24px 32px; max-width: 1480px; }
.cards { display: grid; grid-template-columns: repeat(6, minmax(150px, 1fr)); gap: 14px; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px 8px;
}
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .5px; }
.card .v { font-size: 24px; font-weight: 650; margin: 2px 0 0; }
.card .u { font-size: 13px; color: var(--muted); font-weight: 500; margin-left: 3px; }
.card .d { color: var(--muted); font-size: 12px; min-height: 17px; }
section { margin-top: 22px; }
h2 { font-size: 15px; margin: 0 0 10px; font-weight: 650; }
h2 .n { color: var(--muted); font-weight: 500; }
table {
  width: 100%; border-collapse: separate; border-spacing: 0; background: var(--card);
  border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
}
th {
  text-align: left; font-size: 12px; font-weight: 600; color: var(--muted); background: #f9fafb;
  text-transform: uppercase; letter-spacing: .4px; padding: 9px 10px;
  border-bottom: 1px solid var(--line);
}
td { padding: 10px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
td.num .v { font-size: 17px; font-weight: 600; }
td.num .u { color: var(--muted); font-size: 12px; margin-left: 3px; }
td.num .sub { color: var(--muted); font-size: 12px; white-space: nowrap; }
#sites td:first-child { width: 160px; white-space: nowrap; }
.scroll { overflow-x: auto; }
#alerts td:first-child { width: 90px; }
#alerts td:nth-child(2) { width: 150px; }
#alerts td:last-child { width: 140px; }
.cell { display: flex; align-items: center; justify-content: space-between; gap: 10px; }
.site-id { font-weight: 650; font-size: 15px; }
.site-label, .muted { color: var(--muted); font-size: 12px; }
.badge {
  display: inline-block; padding: 1px 7px; border-radius: 999px; font-size: 11px;
  font-weight: 600; background: #eef2f7; color: #475467; vertical-align: 1px;
}
.badge.page { background: #fde7ec; color: var(--page); }
.badge.ticket { background: #fdf1dc; color: #9a5b00; }
.badge.metered { background: #e3f4ec; color: var(--ok); }
.badge.design, .badge.mixed { background: #eef2f7; color: #475467; }
.pill {
  display: inline-block; min-width: 52px; text-align: center; padding: 2px 9px;
  border-radius: 7px; font-weight: 650; font-size: 16px;
}
.pill.ok { background: #e3f4ec; color: var(--ok); }
.pill.warn { background: #fdf3d7; color: var(--warn); }
.pill.high { background: #fde9dd; color: var(--high); }
.pill.page { background: #fde7ec; color: var(--page); }
.pill.none { background: #eef2f7; color: var(--muted); }
.count { font-weight: 650; }
.count.hot { color: var(--page); }
svg.spark { display: block; flex: none; overflow: visible; }
svg.spark .line { fill: none; stroke: var(--spark); stroke-width: 1.6; stroke-linejoin: round; }
svg.spark .area { fill: var(--spark); opacity: .10; stroke: none; }
svg.spark .last { fill: var(--spark); }
svg.spark .ref { stroke: #c0163f; stroke-width: 1; stroke-dasharray: 3 3; opacity: .55; }
svg.spark.burn { --spark: #d9480f; }
svg.spark.p95 { --spark: #7a4cd9; }
svg.spark.pue { --spark: #0f8b8d; }
.empty { color: var(--muted); text-align: center; padding: 22px; }
.topic { font-weight: 600; overflow-wrap: anywhere; }
.hint { color: var(--warn); font-size: 12px; margin-top: 2px; }
tr.warn td { background: #fffaeb; }
tr.warn td:first-child { box-shadow: inset 3px 0 0 var(--warn); }
td.num.warn .v { color: var(--warn); }
.badge.excluded { background: #fdf3d7; color: var(--warn); }
.badge.waited { background: #e3f4ec; color: var(--ok); }
#inputs td:first-child, #input-topics td:first-child { width: 34%; }
#input-topics { margin-top: 12px; }
.split { margin: 12px 0 0; }
.split.warn { color: var(--warn); font-weight: 600; }
footer { color: var(--muted); font-size: 12px; margin-top: 22px; line-height: 1.6; }
footer b { color: #475467; font-weight: 600; }
"""

SCRIPT = """
"use strict";
const REFRESH_MS = __REFRESH_MS__;
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let refreshes = 0;
let lastOk = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}
const isNum = (v) => typeof v === "number" && isFinite(v);
const fmt = {
  wh: (v) => !isNum(v) ? "–" : v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3),
  pue: (v) => !isNum(v) ? "–" : v.toFixed(2),
  ms: (v) => !isNum(v) ? "–" : v >= 1000 ? (v / 1000).toFixed(2) : v >= 100 ? v.toFixed(0)
    : v.toFixed(1),
  msUnit: (v) => isNum(v) && v >= 1000 ? "s" : "ms",
  burn: (v) => !isNum(v) ? "–" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2),
  int: (v) => !isNum(v) ? "–" : Math.round(v).toLocaleString("en-US"),
};
const hhmm = (iso) => iso ? iso.slice(11, 16) : "–";
const day = (iso) => iso ? iso.slice(0, 10) : "";
function burnLevel(v) {
  if (!isNum(v)) return "none";
  if (v >= 14.4) return "page";
  if (v >= 6) return "high";
  if (v >= 1) return "warn";
  return "ok";
}
function minutesBetween(a, b) {
  return Math.round((Date.parse(b) - Date.parse(a)) / 60000);
}

function spark(values, cls, opts) {
  const w = 92, h = 30, pad = 3;
  const svg = svgEl("svg", {viewBox: `0 0 ${w} ${h}`, width: w, height: h,
                            class: "spark " + cls, role: "img"});
  const nums = values.filter(isNum);
  if (!nums.length) return svg;
  let lo = Math.min(...nums), hi = Math.max(...nums);
  if (opts && opts.zero) lo = Math.min(0, lo);
  const ref = opts && isNum(opts.ref) && opts.ref <= hi * 1.5 && opts.ref >= lo ? opts.ref : null;
  if (ref !== null) hi = Math.max(hi, ref);
  if (hi - lo < 1e-12) { hi += Math.abs(hi) * 0.05 + 1e-9; lo -= Math.abs(lo) * 0.05 + 1e-9; }
  const n = values.length;
  const x = (i) => pad + i * (w - 2 * pad) / Math.max(1, n - 1);
  const y = (v) => h - pad - (v - lo) / (hi - lo) * (h - 2 * pad);
  const title = svgEl("title", {});
  title.textContent = `min ${nums.length ? Math.min(...nums).toPrecision(3) : "–"}, ` +
    `max ${Math.max(...nums).toPrecision(3)} over ${nums.length} min`;
  svg.appendChild(title);
  if (ref !== null) {
    svg.appendChild(svgEl("line", {x1: pad, x2: w - pad, y1: y(ref), y2: y(ref), class: "ref"}));
  }
  let seg = [];
  const segments = [];
  values.forEach((v, i) => {
    if (isNum(v)) seg.push([x(i), y(v)]);
    else if (seg.length) { segments.push(seg); seg = []; }
  });
  if (seg.length) segments.push(seg);
  for (const s of segments) {
    const pts = s.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1));
    const base = (h - pad).toFixed(1);
    const x0 = s[0][0].toFixed(1), x1 = s[s.length - 1][0].toFixed(1);
    const area = `M${x0},${base} L${pts.join(" L")} L${x1},${base} Z`;
    svg.appendChild(svgEl("path", {class: "area", d: area}));
    if (s.length > 1) svg.appendChild(svgEl("polyline", {class: "line", points: pts.join(" ")}));
  }
  const lastSeg = segments[segments.length - 1];
  const last = lastSeg[lastSeg.length - 1];
  svg.appendChild(svgEl("circle", {cx: last[0], cy: last[1], r: 2.4, class: "last"}));
  return svg;
}

function numCell(metric, value, text, unit, sub, sparkSvg) {
  const td = el("td", "num");
  td.dataset.metric = metric;
  td.dataset.value = isNum(value) ? String(value) : "";
  const box = el("div", "cell");
  const left = el("div");
  const v = el("span", "v", text);
  left.appendChild(v);
  if (unit && isNum(value)) left.appendChild(el("span", "u", unit));
  if (sub) { const s = el("div", "sub"); s.append(...[].concat(sub)); left.appendChild(s); }
  box.appendChild(left);
  if (sparkSvg) box.appendChild(sparkSvg);
  td.appendChild(box);
  return td;
}

function burnCell(site) {
  const b = site.burn;
  const value = b ? b.burn_1h : null;
  const td = el("td", "num");
  td.dataset.metric = "burn_1h";
  td.dataset.value = isNum(value) ? String(value) : "";
  const box = el("div", "cell");
  const left = el("div");
  left.appendChild(el("span", "pill " + burnLevel(value), fmt.burn(value)));
  left.appendChild(el("div", "sub", b ? `5m ${fmt.burn(b.burn_5m)}` : "no SLO data"));
  if (b) left.appendChild(el("div", "sub", `${b.service} · ${b.sli}`));
  box.appendChild(left);
  box.appendChild(spark(site.series.map((p) => p.burn_1h), "burn", {zero: true, ref: 1}));
  td.appendChild(box);
  return td;
}

function siteRow(site) {
  const tr = el("tr");
  tr.dataset.site = site.site_id;
  const name = el("td");
  name.appendChild(el("div", "site-id", site.site_id));
  name.appendChild(el("div", "site-label", site.label));
  tr.appendChild(name);
  const series = site.series;
  tr.appendChild(numCell("requests", site.requests, fmt.int(site.requests), "",
    `${site.minutes} of ${series.length} min`, spark(series.map((p) => p.requests), "req",
    {zero: true})));
  tr.appendChild(numCell("wh_per_request", site.wh_per_request, fmt.wh(site.wh_per_request),
    "Wh", `${fmt.wh(site.facility_energy_wh)} Wh facility`,
    spark(series.map((p) => p.wh_per_request), "wh")));
  const pueSub = site.pue_source ? [el("span", "badge " + site.pue_source, site.pue_source)] : "";
  tr.appendChild(numCell("pue", site.pue, fmt.pue(site.pue), "", pueSub,
    spark(series.map((p) => p.pue), "pue")));
  tr.appendChild(numCell("p95_latency_ms", site.p95_latency_ms, fmt.ms(site.p95_latency_ms),
    fmt.msUnit(site.p95_latency_ms), "",
    spark(series.map((p) => p.p95_latency_ms), "p95")));
  tr.appendChild(burnCell(site));
  const alerts = el("td", "num");
  alerts.dataset.metric = "alerts_firing";
  alerts.dataset.value = String(site.alerts_firing);
  alerts.appendChild(el("span", "count" + (site.alerts_firing ? " hot" : ""),
    String(site.alerts_firing)));
  tr.appendChild(alerts);
  return tr;
}

function card(key, value, unit, detail, metric) {
  const c = el("div", "card");
  c.dataset.metric = metric;
  c.appendChild(el("div", "k", key));
  const v = el("div", "v", value);
  if (unit) v.appendChild(el("span", "u", unit));
  c.appendChild(v);
  c.appendChild(el("div", "d", detail));
  return c;
}

function scope(a) {
  const where = a.site_id === "__all__" ? "all sites" : a.site_id;
  if (a.kind === "slo") return `${a.service} @ ${where} · ${a.sli}`;
  if (a.kind === "thermal") return `${a.node_id} @ ${a.site_id}`;
  return `team ${a.team}`;
}
function measure(a) {
  if (a.kind === "slo" && isNum(a.burn_long)) {
    return `burn ${a.long_window} ${fmt.burn(a.burn_long)} · ${a.short_window} ` +
      `${fmt.burn(a.burn_short)} > ${a.threshold}`;
  }
  if (a.kind === "thermal") return `inlet ${a.value.toFixed(1)} °C > ${a.threshold} °C`;
  return `burn ${fmt.burn(a.value)} > ${a.threshold}`;
}

function alertRow(a, asOf) {
  const tr = el("tr");
  tr.dataset.alertId = a.alert_id;
  const sev = el("td");
  sev.appendChild(el("span", "badge " + a.severity, a.severity));
  tr.appendChild(sev);
  const rule = el("td");
  rule.appendChild(el("div", null, a.rule));
  rule.appendChild(el("div", "muted", a.kind));
  tr.appendChild(rule);
  tr.appendChild(el("td", null, scope(a)));
  tr.appendChild(el("td", null, measure(a)));
  const since = el("td");
  since.appendChild(el("div", null, `${hhmm(a.fired_at)} UTC`));
  if (asOf) {
    since.appendChild(el("div", "muted", `for ${minutesBetween(a.fired_at, asOf) + 1} min`));
  }
  tr.appendChild(since);
  return tr;
}

function render(data) {
  const asOf = data.as_of;
  $("as-of").textContent = asOf
    ? `as of ${day(asOf)} ${hhmm(asOf)} UTC · window ${hhmm(data.window_start)}–${hhmm(asOf)}`
    : "waiting for the first closed minute";
  $("as-of").dataset.asOf = asOf || "";
  $("window").textContent = String(data.window_minutes);

  const f = data.fleet;
  const cards = $("cards");
  cards.replaceChildren(
    card("Requests", fmt.int(f.requests), "", `${f.minutes} min closed`, "requests"),
    card("Energy / request", fmt.wh(f.wh_per_request), "Wh facility",
      `${fmt.wh(f.facility_energy_wh)} Wh in the window`, "wh_per_request"),
    card("PUE", fmt.pue(f.pue), "", f.pue_source ? `${f.pue_source} · sum/sum` : "", "pue"),
    card("p95 latency", fmt.ms(f.p95_latency_ms), fmt.msUnit(f.p95_latency_ms),
      "all sites, merged", "p95_latency_ms"),
    card("Worst SLO burn 1h", fmt.burn(f.burn ? f.burn.burn_1h : null), "",
      f.burn ? `${f.burn.service} ${f.burn.sli} · 5m ${fmt.burn(f.burn.burn_5m)}` : "",
      "burn_1h"),
    card("Alerts firing", String(data.firing.length), "",
      `${data.firing.filter((a) => a.severity === "page").length} page · ` +
      `${data.firing.filter((a) => a.severity === "ticket").length} ticket`, "alerts_firing"),
  );

  const body = $("sites").tBodies[0];
  if (data.sites.length) body.replaceChildren(...data.sites.map(siteRow));

  const alerts = $("alerts").tBodies[0];
  $("alert-count").textContent = `(${data.firing.length})`;
  if (data.firing.length) {
    alerts.replaceChildren(...data.firing.map((a) => alertRow(a, asOf)));
  } else {
    const td = el("td", "empty", "No alerts firing.");
    td.colSpan = 5;
    const tr = el("tr");
    tr.appendChild(td);
    alerts.replaceChildren(tr);
  }
  $("resolved").textContent = data.resolved.length
    ? data.resolved.slice(0, 8)
      .map((a) => `${a.rule} ${scope(a)} (${hhmm(a.fired_at)}–${hhmm(a.at)})`).join("; ")
    : "none";
  if (data.inputs) renderInputs(data.inputs);
}

const hhmmss = (iso) => iso ? iso.slice(11, 19) : "–";
function seconds(v) {
  if (!isNum(v)) return ["–", ""];
  return v >= 120 ? [(v / 60).toFixed(1), "min"] : [v.toFixed(0), "s"];
}
function emptyRow(cols, text) {
  const td = el("td", "empty", text);
  td.colSpan = cols;
  const tr = el("tr");
  tr.appendChild(td);
  return tr;
}
function nameCell(text, hint) {
  const td = el("td");
  td.appendChild(el("div", "topic", text));
  if (hint) td.appendChild(el("div", "hint", hint));
  return td;
}
function countCell(metric, value, sub) {
  const td = numCell(metric, value, fmt.int(value), "", sub);
  if (isNum(value) && value > 0) td.classList.add("warn");
  return td;
}

function inputRow(p, warnAfter) {
  const tr = el("tr", p.warn ? "warn" : null);
  tr.dataset.topic = p.topic;
  tr.dataset.partition = String(p.partition);
  tr.appendChild(nameCell(`${p.topic} [${p.partition}]`, p.hint));
  tr.appendChild(el("td", "muted", p.stage));
  tr.appendChild(numCell("consumer_lag", p.consumer_lag, fmt.int(p.consumer_lag), "records"));
  tr.appendChild(numCell("watermark_ms", p.watermark_ms, hhmmss(p.watermark), "UTC",
    day(p.watermark)));
  const [behind, unit] = seconds(p.behind_s);
  const behindTd = numCell("behind_s", p.behind_s, behind, unit, "");
  if (isNum(p.behind_s) && p.behind_s > warnAfter) behindTd.classList.add("warn");
  tr.appendChild(behindTd);
  const skew = el("td");
  skew.dataset.metric = "excluded";
  skew.dataset.value = p.excluded === null ? "" : String(p.excluded);
  if (p.excluded === null) skew.appendChild(el("span", "muted", "–"));
  else if (p.excluded) skew.appendChild(el("span", "badge excluded", "excluded"));
  else skew.appendChild(el("span", "badge waited", "waited for"));
  tr.appendChild(skew);
  return tr;
}

function topicRow(t) {
  const tr = el("tr", t.warn ? "warn" : null);
  tr.dataset.topic = t.topic;
  tr.appendChild(nameCell(t.topic || "(no topic)", t.hint));
  tr.appendChild(numCell("records_consumed", t.records_consumed, fmt.int(t.records_consumed),
    ""));
  const reasons = Object.entries(t.late).map(([why, n]) => el("div", null, `${fmt.int(n)} ${why}`));
  tr.appendChild(countCell("late_total", t.late_total, reasons));
  tr.appendChild(countCell("duplicates_dropped", t.duplicates_dropped, ""));
  return tr;
}

function renderInputs(inputs) {
  $("input-count").textContent = `(${inputs.partitions.length} topic-partitions)`;
  $("behind-warn").textContent = String(inputs.behind_warn_s);
  const parts = $("inputs").tBodies[0];
  if (inputs.partitions.length) {
    parts.replaceChildren(...inputs.partitions.map((p) => inputRow(p, inputs.behind_warn_s)));
  } else {
    parts.replaceChildren(emptyRow(6, "This worker owns no input partition (yet)."));
  }
  const topics = $("input-topics").tBodies[0];
  if (inputs.topics.length) topics.replaceChildren(...inputs.topics.map(topicRow));
  else topics.replaceChildren(emptyRow(4, "No input records yet."));
  const split = $("split");
  split.className = "split" + (inputs.split_warn ? " warn" : "");
  split.dataset.value = String(inputs.split_node_minutes);
  $("split-count").textContent = fmt.int(inputs.split_node_minutes);
  $("split-hint").textContent = inputs.split_hint ? ` · ${inputs.split_hint}` : "";
}

function setStatus(ok, detail) {
  const status = $("status");
  status.className = "status " + (ok ? "ok" : "stale");
  const updated = $("updated");
  if (ok) {
    lastOk = new Date();
    refreshes += 1;
    updated.dataset.refreshes = String(refreshes);
    updated.dataset.updatedMs = String(lastOk.getTime());
    updated.textContent = "updated " + lastOk.toLocaleTimeString("en-GB");
  } else {
    updated.textContent = (lastOk ? "stale since " + lastOk.toLocaleTimeString("en-GB")
      : "no data yet") + " (" + detail + ")";
  }
}

async function refresh() {
  try {
    const response = await fetch("live.json", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    setStatus(true);
  } catch (err) {
    setStatus(false, err && err.message ? err.message : String(err));
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
""".replace("__REFRESH_MS__", str(REFRESH_MS))

BODY = """
<header>
  <h1>microdc <span>live</span></h1>
  <span class="window">last <span id="window">15</span> min per site, event time</span>
  <span class="window" id="as-of">waiting for the first closed minute</span>
  <span class="status" id="status">
    <span class="dot"></span><span id="updated">loading…</span>
  </span>
</header>
<main>
  <div class="cards" id="cards"></div>
  <section>
    <h2>Sites</h2>
    <div class="scroll"><table id="sites">
      <thead><tr>
        <th>Site</th><th>Requests</th><th>Energy / request</th><th>PUE</th>
        <th>p95 latency</th><th>SLO burn 1h</th><th>Alerts</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="7">Waiting for data…</td></tr></tbody>
    </table></div>
  </section>
  <section>
    <h2>Alerts firing <span class="n" id="alert-count"></span></h2>
    <div class="scroll"><table id="alerts">
      <thead><tr><th>Severity</th><th>Rule</th><th>Scope</th><th>Value</th><th>Since</th></tr></thead>
      <tbody><tr><td class="empty" colspan="5">Waiting for data…</td></tr></tbody>
    </table></div>
    <p class="muted">Resolved in the window: <span id="resolved">none</span></p>
  </section>
  <section>
    <h2>Inputs (this worker) <span class="n" id="input-count"></span></h2>
    <div class="scroll"><table id="inputs">
      <thead><tr>
        <th>Topic [partition]</th><th>Stage</th><th>Consumer lag</th><th>Watermark</th>
        <th>Behind fastest</th><th>Skew rule</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="6">Waiting for data…</td></tr></tbody>
    </table></div>
    <div class="scroll"><table id="input-topics">
      <thead><tr>
        <th>Topic</th><th>Records consumed</th><th>Late records</th><th>Duplicates dropped</th>
      </tr></thead>
      <tbody><tr><td class="empty" colspan="4">Waiting for data…</td></tr></tbody>
    </table></div>
    <p class="split" id="split">Node-minutes merged from several stage-1 partitions (worker-wide):
      <span class="count" id="split-count">–</span><span id="split-hint"></span></p>
    <p class="muted">This worker only (replicas differ): the input topic-partitions it owns, their
      watermark (event time minus the allowed lateness) and how far it trails the fastest source
      of the same stage partition (flagged beyond <span id="behind-warn">60</span> s, or when the
      skew rule stopped waiting for it); counts per topic since the worker started. The same
      numbers as <code>/metrics</code>.</p>
  </section>
  <footer>
    <b>Energy / request</b>: facility Wh (node IT energy × PUE, idle included) / requests over the
    window. <b>PUE</b>: facility / IT energy, sum over sum (meters where metered, else design
    PUE). <b>p95</b>: DDSketch merged over the site's nodes and minutes (±1 %).
    <b>SLO burn</b>: (bad / total) / (1 − target) over the last hour of the latest minute, worst
    service and SLI; a page fires above 14.4 with the 5 min burn. Minutes are event time and
    closed: the view trails the input by the allowed lateness and the wait for grid data.
    Sparklines: one point per minute of the window.
  </footer>
</main>
"""


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_hash(SCRIPT)}",
        f"style-src {_hash(STYLE)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>microdc live</title>\n"
    '<link rel="icon" href="data:,">\n'
    f"<style>{STYLE}</style>\n</head>\n<body>{BODY}"
    f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
)

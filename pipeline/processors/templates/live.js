
"use strict";
const REFRESH_MS = {{ refresh_ms }};
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

// insnet analysis page: form -> POST /api/predict -> plots, summary and downloads.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null;  // the result JSON on show

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message || "";
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function fillSelect(select, values, blankLabel) {
  select.innerHTML = "";
  if (blankLabel !== undefined) {
    select.add(new Option(blankLabel, ""));
  }
  for (const v of values) select.add(new Option(String(v), String(v)));
}

function toggleSequoia() {
  const on = $("instrument").value === "SEQUOIA";
  for (const el of document.querySelectorAll(".sequoia")) el.hidden = !on;
}

async function loadOptions() {
  const response = await fetch("/api/options");
  const options = await response.json();
  fillSelect($("instrument"), options.instruments);
  fillSelect($("chopper_package"), options.chopper_packages, "default");
  fillSelect($("chopper_frequency"), options.chopper_frequencies, "default");
  fillSelect($("model"), options.models);
  if (options.default_model) $("model").value = options.default_model;
  for (const r of options.vision_routes) $("vision_route").add(new Option(r, r));
  $("instrument").value = "SEQUOIA";
  toggleSequoia();
  $("instrument").addEventListener("change", toggleSequoia);
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = String(text);
  return div.innerHTML;
}

function showSummary(s, seconds) {
  const rows = [
    ["File", s.file], ["Formula", s.formula], ["Space group", s.spacegroup],
    ["Atoms in the cell", s.atoms], ["Elements", s.elements.join(", ")],
    ["Cell volume (Å³)", s.volume_A3], ["Model", `${s.model} (${s.members} member(s))`],
    ["VISION route", s.vision_route], ["Errors", s.errors],
    ["Map", s.map_instrument + (s.ei_meV ? `, Ei = ${s.ei_meV} meV, ${s.chopper_package}, ` +
      `${s.chopper_frequency_Hz} Hz` : "")],
    ["Temperature (K)", s.temperature_K], ["Computed in (s)", seconds],
  ];
  let html = "<table>" + rows.map(([k, v]) =>
    `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("") + "</table>";
  if (s.warnings.length) {
    html += "<ul class='warnings'>" + s.warnings.map((w) =>
      `<li class="warning">${escapeHtml(w)}</li>`).join("") + "</ul>";
  }
  $("summary").innerHTML = html;
}

function bandTraces(x, y, err, name) {
  if (!err || !err.some((e) => e > 0)) return [];
  const upper = y.map((v, i) => (v === null ? null : v + err[i]));
  const lower = y.map((v, i) => (v === null ? null : v - err[i]));
  return [
    {x, y: upper, mode: "lines", line: {width: 0}, hoverinfo: "skip", showlegend: false,
     legendgroup: "band"},
    {x, y: lower, mode: "lines", line: {width: 0}, fill: "tonexty",
     fillcolor: "rgba(31,119,180,0.25)", name: `${name} ±1σ`, legendgroup: "band",
     hoverinfo: "skip"},
  ];
}

function plotVision(vision) {
  const total = vision.total;
  const traces = [];
  const main = "average" in total.rows ? "average" : Object.keys(total.rows)[0];
  traces.push(...bandTraces(total.x, total.rows[main], total.errors[main], "total"));
  traces.push({x: total.x, y: total.rows[main], mode: "lines", name: `total (${main})`,
               line: {color: "#1f77b4", width: 2}});
  for (const [label, y] of Object.entries(total.rows)) {
    if (label !== main) traces.push({x: total.x, y, mode: "lines", name: label,
                                     visible: "legendonly"});
  }
  for (const [el, rows] of Object.entries(vision.elements)) {
    traces.push({x: total.x, y: rows[main] || Object.values(rows)[0], mode: "lines",
                 name: `element ${el}`, visible: "legendonly"});
  }
  for (const [n, rows] of Object.entries(vision.orders)) {
    traces.push({x: total.x, y: rows[main] || Object.values(rows)[0], mode: "lines",
                 name: `order ${n}`, visible: "legendonly", line: {dash: "dot"}});
  }
  const layout = {margin: {t: 20}, hovermode: "x unified",
                  xaxis: {title: {text: `Energy transfer (${total.energy_unit})`}},
                  yaxis: {title: {text: total.y_label}}};
  return Plotly.newPlot("vision-plot", traces, layout, {responsive: true});
}

let shownMap = null;  // the map JSON on show (for the log-scale toggle)

function logValues(z) {
  let top = 0;
  for (const row of z) for (const v of row) if (v !== null && v > top) top = v;
  const floor = top > 0 ? top * 1e-4 : 1e-12;  // four decades below the maximum
  return z.map((row) => row.map((v) => (v === null ? null : Math.log10(Math.max(v, floor)))));
}

function transpose(rows) {
  return rows.length ? rows[0].map((_, j) => rows.map((row) => row[j])) : [];
}

function plotMap(map) {
  // drawn as INS maps are read: |Q| across, energy transfer up (z rows are energies)
  shownMap = map;
  const log = $("map-log").checked;
  const z = transpose(map.z);
  const trace = {type: "heatmap", x: map.q, y: map.x, z: log ? logValues(z) : z,
                 colorscale: "Viridis", customdata: z,
                 hovertemplate: "|Q| %{x} Å⁻¹<br>E %{y} meV<br>S %{customdata}<extra></extra>",
                 colorbar: {title: {text: log ? "log10 S" : "S"}}};
  const layout = {margin: {t: 20},
                  xaxis: {title: {text: "|Q| (Å⁻¹)"}},
                  yaxis: {title: {text: `Energy transfer (${map.energy_unit})`}}};
  return Plotly.newPlot("map-plot", [trace], layout, {responsive: true});
}

async function changeMapPart() {
  const part = $("map-part").value;
  setState("busy", `loading ${part}…`);
  const response = await fetch(
    `/api/results/${current.id}/map?contribution=${encodeURIComponent(part)}`);
  const body = await response.json();
  if (!response.ok) {
    showError(body.error);
    setState("error");
    return;
  }
  await plotMap(body);
  setState("done", "");
}

function showDownloads(result) {
  const list = $("downloads");
  list.innerHTML = "";
  const names = {vision_nxs: "VISION .nxs (Mantid)", vision_csv: "VISION .csv",
                 vision_png: "VISION .png", map_nxs: "map .nxs (Mantid)",
                 map_csv: "map .csv", map_png: "map .png"};
  for (const [key, url] of Object.entries(result.downloads)) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = url;
    link.id = `download-${key}`;
    link.textContent = names[key] || key;
    link.setAttribute("download", "");
    item.appendChild(link);
    list.appendChild(item);
  }
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const form = new FormData($("predict-form"));
  const file = $("structure").files[0];
  if (!file) form.delete("structure");
  if (!file && !$("cif").value.trim()) {
    showError("Choose a CIF file or paste a CIF first.");
    setState("error");
    return;
  }
  if (file) form.delete("cif");
  if ($("instrument").value !== "SEQUOIA") {
    for (const key of ["ei", "chopper_package", "chopper_frequency"]) form.delete(key);
  }
  setState("busy", "predicting…");
  $("submit").disabled = true;
  const started = performance.now();
  try {
    const response = await fetch("/api/predict", {method: "POST", body: form});
    let body;
    try {
      body = await response.json();
    } catch (err) {
      body = {error: `the server answered ${response.status} without a readable message`};
    }
    if (!response.ok) {
      showError(`${response.status}: ${body.error}`);
      setState("error");
      return;
    }
    current = body;
    $("results").hidden = false;
    showSummary(body.summary, body.seconds);
    $("map-title").textContent = `S(|Q|, E): ${body.summary.map_instrument}`;
    fillSelect($("map-part"), body.map.contributions);
    await plotVision(body.vision);
    await plotMap(body.map);
    showDownloads(body);
    const ms = Math.round(performance.now() - started);
    document.body.dataset.latencyMs = String(ms);
    setState("done", `done in ${ms} ms`);
  } catch (err) {
    showError(`request failed: ${err}`);
    setState("error");
  } finally {
    $("submit").disabled = false;
  }
}

window.addEventListener("DOMContentLoaded", async () => {
  try {
    await loadOptions();
  } catch (err) {
    showError(`could not load the server's options: ${err}`);
  }
  $("predict-form").addEventListener("submit", submit);
  $("map-part").addEventListener("change", changeMapPart);
  $("map-log").addEventListener("change", () => { if (shownMap) plotMap(shownMap); });
  document.body.dataset.ready = "1";
});

// The status page: polls /v1/status (service/status.py) and renders it; no framework, no build step.
// Each figure cell carries data-field (and its row data-model or data-endpoint) and data-value (the raw
// number), so a test reads the same numbers the page shows.
"use strict";

const params = new URLSearchParams(window.location.search);
const INTERVAL_MS = Math.max(250, Number(params.get("refresh")) || 2000);
const DRIFT = 1.5; // a round-trip NRMSE this many times the bundle's own is shown as drift (docker/alerts.yml)
let previous = null;

function fixed(value, digits) {
  return value === null || value === undefined ? "-" : value.toFixed(digits);
}

function cell(row, field, value, text) {
  const td = document.createElement("td");
  td.dataset.field = field;
  if (typeof value === "number") td.dataset.value = String(value);
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function setFigure(id, value, text) {
  const el = document.getElementById(id);
  el.dataset.value = value === null ? "" : String(value);
  el.textContent = text;
}

function rate(now, before) {
  if (before === null || now.time <= before.time) return null;
  return Math.max(0, (now.requests - before.requests) / (now.time - before.time));
}

function renderModels(status) {
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  for (const m of status.models) {
    const row = document.createElement("tr");
    row.dataset.model = m.model;
    cell(row, "model", null, m.model);
    cell(row, "version", null, m.version);
    cell(row, "provider", null, m.provider.replace("ExecutionProvider", ""));
    cell(row, "fingerprint", null, m.fingerprint.slice(0, 12));
    cell(row, "requests", m.requests, String(m.requests));
    cell(row, "codes_sent", m.codes_sent, String(m.codes_sent));
    cell(row, "mean_nnz", m.mean_nnz, fixed(m.mean_nnz, 2));
    const sizes = Object.entries(m.code_bytes).sort();
    cell(row, "code_bytes", null, sizes.length ? sizes.map(([f, b]) => `${f} ${b.toFixed(2)}`).join(", ") : "-");
    cell(row, "compression_ratio", m.compression_ratio, fixed(m.compression_ratio, 1));
    const err = cell(row, "roundtrip_nrmse", m.roundtrip_nrmse, fixed(m.roundtrip_nrmse, 3));
    if (m.roundtrip_nrmse !== null && m.reference_nrmse !== null && m.roundtrip_nrmse > DRIFT * m.reference_nrmse) {
      err.classList.add("drift");
      err.title = `over ${DRIFT} x the bundle's own NRMSE`;
    }
    cell(row, "roundtrip_vectors", m.roundtrip_vectors, String(m.roundtrip_vectors));
    cell(row, "reference_nrmse", m.reference_nrmse, fixed(m.reference_nrmse, 3));
    body.appendChild(row);
  }
}

function renderEndpoints(status) {
  const body = document.querySelector("#endpoints tbody");
  const before = previous === null ? {} : Object.fromEntries(previous.endpoints.map((e) => [e.endpoint, e]));
  const dt = previous === null ? 0 : status.time - previous.time;
  body.replaceChildren();
  for (const e of status.endpoints) {
    const row = document.createElement("tr");
    row.dataset.endpoint = e.endpoint;
    cell(row, "endpoint", null, e.endpoint);
    cell(row, "requests", e.requests, String(e.requests));
    const was = before[e.endpoint];
    const r = dt > 0 ? Math.max(0, (e.requests - (was ? was.requests : 0)) / dt) : null;
    cell(row, "rate", r, fixed(r, 2));
    cell(row, "errors", e.errors, String(e.errors));
    for (const q of ["p50", "p95", "p99"]) {
      const s = e.latency_s[q];
      cell(row, q, s === null ? null : s * 1000, s === null ? "-" : (s * 1000).toFixed(2));
    }
    body.appendChild(row);
  }
}

function render(status) {
  const badge = document.getElementById("ready");
  badge.textContent = status.ready ? "ready" : "not ready";
  badge.className = `badge ${status.ready ? "ready" : "unready"}`;
  document.getElementById("updated").textContent = `updated ${new Date(status.time * 1000).toLocaleTimeString()}`;
  const r = rate(status, previous);
  setFigure("rate", r, fixed(r, 2));
  setFigure("requests", status.requests, String(status.requests));
  setFigure("in-flight", status.in_flight, String(status.in_flight));
  const mib = status.resident_memory_bytes === null ? null : status.resident_memory_bytes / 2 ** 20;
  setFigure("memory", mib, fixed(mib, 1));
  renderModels(status);
  renderEndpoints(status);
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
}

// With SDLGM_AUTH_METRICS the status needs a token: the page asks for one on a 401 and keeps it in this
// tab's sessionStorage (never in the URL, which logs and history keep).
const TOKEN_KEY = "sdlgm-token";
const tokenForm = document.getElementById("token-form");
tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  window.sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  tokenForm.hidden = true;
});

function statusHeaders() {
  const token = window.sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const answer = await fetch("/v1/status", { cache: "no-store", headers: statusHeaders() });
    if (answer.status === 401) {
      tokenForm.hidden = false;
      throw new Error(window.sessionStorage.getItem(TOKEN_KEY) ? "the token was refused" : "a token is needed");
    }
    if (!answer.ok) throw new Error(`/v1/status answered ${answer.status}`);
    const status = await answer.json();
    render(status);
    previous = status;
    problem.hidden = true;
  } catch (err) {
    problem.textContent = `status unavailable: ${err.message}`;
    problem.hidden = false;
  }
  window.setTimeout(refresh, INTERVAL_MS);
}

document.getElementById("interval").textContent = (INTERVAL_MS / 1000).toFixed(1);
refresh();

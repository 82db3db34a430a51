"use strict";
// The price-estimate page: builds the form from /api/form, draws the training listings on a
// canvas (no map tiles: it works offline), posts the answers and the photo to /api/estimate.

const state = { spec: null, marker: null, similar: [], view: null };
const $ = (id) => document.getElementById(id);
const eur = (x) => "\u20ac\u00a0" + x.toFixed(2);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fieldInput(f) {
  if (f.kind === "choice") {
    const select = el("select", { id: "f-" + f.key, name: f.key });
    if (!f.required) select.appendChild(el("option", { value: "" }, "(not given)"));
    for (const c of f.choices) select.appendChild(el("option", { value: c }, c));
    select.value = f.default ?? "";
    return select;
  }
  if (f.kind === "textarea") {
    const area = el("textarea", { id: "f-" + f.key, name: f.key });
    area.value = f.default ?? "";
    return area;
  }
  if (f.kind === "flag") {
    const box = el("input", { id: "f-" + f.key, name: f.key, type: "checkbox" });
    box.checked = f.default === true;
    return box;
  }
  const attrs = { id: "f-" + f.key, name: f.key, type: f.kind === "date" ? "date" : "text" };
  if (f.kind === "number") attrs.inputmode = "decimal";
  if (f.kind === "date") { attrs.min = f.low; attrs.max = f.high; }
  const input = el("input", attrs);
  input.value = f.default ?? "";
  return input;
}

function fieldNote(f) {
  if (f.kind === "number" && f.low !== undefined) {
    const range = `${f.integer ? "whole number, " : ""}${f.low} to ${f.high}`;
    return f.main ? range : `${range}; default ${f.default ?? "empty"}: ${f.default_note}`;
  }
  if (f.main) return "";
  if (f.kind === "flag") return `default ${f.default ? "yes" : "no"}: ${f.default_note}`;
  const shown = f.default === "" || f.default === undefined ? "empty" : f.default;
  return `default ${shown}: ${f.default_note}`;
}

function buildForm(spec) {
  const targets = { place: $("place"), where: $("where"), host: $("host") };
  let extra = 0;
  for (const f of spec.fields) {
    const where = ["Latitude", "Longitude", "Neighbourhood Cleansed"].includes(f.key) ? "where"
      : f.main ? "place" : "host";
    if (where === "host") extra += 1;
    const label = el("label", { class: "field" + (f.kind === "flag" ? " flag" : "")
      + (["textarea", "list"].includes(f.kind) ? " wide" : ""), for: "f-" + f.key });
    const input = fieldInput(f);
    if (f.kind === "flag") { label.appendChild(input); label.appendChild(document.createTextNode(f.label)); }
    else { label.appendChild(document.createTextNode(f.label)); label.appendChild(input); }
    const note = fieldNote(f);
    if (note) label.appendChild(el("span", { class: "note" }, note));
    targets[where].appendChild(label);
  }
  $("more-count").textContent = `(${extra} fields)`;
  if (!extra) $("more").hidden = true;
  if (!$("f-Latitude")) $("where-section").querySelector("canvas").hidden = true;
  for (const id of ["f-Latitude", "f-Longitude"]) {
    const input = $(id);
    if (input) input.addEventListener("input", () => drawMap());
  }
}

// ------------------------------------------------------------------ the map

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
}

function mapView(spec) {
  // the box of the central 99% of the listings (a few far-out ones would shrink the city to a dot)
  const lats = spec.map.lat, lons = spec.map.lon, pad = 0.01;
  let [s, n, w, e] = lats.length
    ? [quantile(lats, 0.005), quantile(lats, 0.995), quantile(lons, 0.005), quantile(lons, 0.995)]
    : [spec.centre[0] - 0.1, spec.centre[0] + 0.1, spec.centre[1] - 0.1, spec.centre[1] + 0.1];
  s -= pad; n += pad; w -= pad; e += pad;
  const canvas = $("map");
  const kx = Math.cos(((s + n) / 2) * Math.PI / 180);  // metres per degree of longitude shrink
  const scale = Math.min(canvas.width / ((e - w) * kx), canvas.height / (n - s));
  const x0 = (canvas.width - (e - w) * kx * scale) / 2, y0 = (canvas.height - (n - s) * scale) / 2;
  return {
    toXY: (lat, lon) => [x0 + (lon - w) * kx * scale, y0 + (n - lat) * scale],
    toLatLon: (x, y) => [n - (y - y0) / scale, w + (x - x0) / (kx * scale)],
  };
}

function drawMap() {
  const canvas = $("map"), ctx = canvas.getContext("2d"), spec = state.spec, view = state.view;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "rgba(40, 90, 160, 0.35)";
  for (let i = 0; i < spec.map.lat.length; i++) {
    const [x, y] = view.toXY(spec.map.lat[i], spec.map.lon[i]);
    ctx.fillRect(x - 1, y - 1, 2, 2);
  }
  ctx.strokeStyle = "#e08a00"; ctx.lineWidth = 2;
  for (const s of state.similar) {
    if (s.lat === null || s.lon === null) continue;
    const [x, y] = view.toXY(s.lat, s.lon);
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
  }
  const lat = parseFloat($("f-Latitude")?.value), lon = parseFloat($("f-Longitude")?.value);
  if (Number.isFinite(lat) && Number.isFinite(lon)) {
    const [x, y] = view.toXY(lat, lon);
    ctx.fillStyle = "#d62828"; ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
  }
  ctx.fillStyle = "#3a4352"; ctx.font = "12px sans-serif";
  ctx.fillText(`${spec.map.lat.length} training listings`, 8, canvas.height - 8);
}

function nearestHood(lat, lon) {
  const m = state.spec.map;
  let best = -1, bestD = Infinity;
  for (let i = 0; i < m.lat.length; i++) {
    const d = (m.lat[i] - lat) ** 2 + ((m.lon[i] - lon) * 0.76) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  }
  return best < 0 ? null : m.hoods[m.hood[best]];
}

function onMapClick(event) {
  const canvas = $("map"), rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  const [lat, lon] = state.view.toLatLon(x, y);
  $("f-Latitude").value = lat.toFixed(6);
  $("f-Longitude").value = lon.toFixed(6);
  const hood = nearestHood(lat, lon), select = $("f-Neighbourhood Cleansed");
  if (hood && select && [...select.options].some((o) => o.value === hood)) select.value = hood;
  drawMap();
}

// ------------------------------------------------------------------ the answer

function showError(message, field) {
  document.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  const box = $("error");
  box.textContent = message; box.hidden = false;
  const input = field ? $(field === "photo" ? "photo" : "f-" + field) : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    if ($("more").contains(input)) $("more").open = true;
  }
}

function showModel(prefix, model, title) {
  $(prefix + "-label").textContent = `${title} (${model.name})`;
  if (model.price === undefined) {
    $(prefix + "-price").textContent = "\u2014";
    $(prefix + "-range").textContent = model.note;
    return;
  }
  $(prefix + "-price").textContent = eur(model.price) + " / night";
  $(prefix + "-range").textContent = `${Math.round(state.answer.coverage * 100)}% range ${eur(model.low)} \u2013 ${eur(model.high)}`;
}

function showAnswer(answer) {
  state.answer = answer;
  $("error").hidden = true; $("empty").hidden = true; $("result").hidden = false;
  showModel("fusion", answer.models.fusion, "With the photo");
  showModel("tabular", answer.models.tabular, "Without the photo");
  const change = answer.photo_change_eur;
  $("change").textContent = change === null ? ""
    : `The photo changed the estimate by ${change >= 0 ? "+" : "\u2212"}${eur(Math.abs(change))}.`;
  const notes = $("notes"); notes.replaceChildren();
  for (const text of answer.notes) notes.appendChild(el("li", {}, text));
  const body = $("similar").querySelector("tbody"); body.replaceChildren();
  for (const s of answer.similar) {
    const row = el("tr");
    for (const v of [s.id, eur(s.price), s.km === null ? "?" : `${s.km.toFixed(2)} km`, s.room_type,
      s.guests, s.bedrooms, s.neighbourhood]) row.appendChild(el("td", {}, v ?? ""));
    body.appendChild(row);
  }
  state.similar = answer.similar;
  const derived = Object.entries(answer.derived).filter(([, v]) => v);
  $("derived").textContent = derived.length
    ? "Filled in for you: " + derived.map(([k, v]) => `${k} ${v}`).join(", ") + "." : "";
  $("csv-link").href = URL.createObjectURL(new Blob([answer.csv], { type: "text/csv" }));
  $("timing").textContent = `Answered in ${answer.seconds.toFixed(2)} s on the server.`;
  drawMap();
}

async function onSubmit(event) {
  event.preventDefault();
  const button = $("submit");
  button.disabled = true; button.textContent = "Estimating\u2026";
  try {
    const response = await fetch("/api/estimate", { method: "POST", body: new FormData($("listing")) });
    const body = await response.json().catch(() => ({ error: `The server answered ${response.status}` }));
    if (!response.ok) showError(body.error || `The server answered ${response.status}`, body.field);
    else { document.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid")); showAnswer(body); }
  } catch (err) {
    showError("The server could not be reached: " + err.message, "");
  } finally {
    button.disabled = false; button.textContent = "Estimate the price";
  }
}

function onPhoto() {
  const file = $("photo").files[0], preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  if (file && ["image/jpeg", "image/png"].includes(file.type)) { preview.src = URL.createObjectURL(file); preview.hidden = false; }
  else { preview.removeAttribute("src"); preview.hidden = true; }
}

async function start() {
  const response = await fetch("/api/form");
  const spec = await response.json();
  state.spec = spec;
  const m = spec.models;
  $("subtitle").textContent = `Fusion model ${m.fusion.name} (listing + photo) beside the tabular-only model ${m.tabular.name}; `
    + `choices, defaults and the map from ${spec.listings} training listings (${spec.listings_source}).`;
  $("max-mb").textContent = spec.max_photo_mb;
  $("footer").textContent = "Runs on this machine: nothing is sent anywhere else, and no training photo is shown.";
  buildForm(spec);
  state.view = mapView(spec);
  drawMap();
  $("map").addEventListener("click", onMapClick);
  $("listing").addEventListener("submit", onSubmit);
  $("photo").addEventListener("change", onPhoto);
  document.body.dataset.ready = "true";
}

start().catch((err) => showError("The page could not load its form: " + err.message, ""));

// The mattecam control page: preview, background, pause and status through /api/.
// Every API call carries the per-run token from the link mattecam printed (?token=...).
"use strict";

const $ = (id) => document.getElementById(id);
const PREVIEW_MS = 200;
const STATUS_MS = 1000;

function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem("mattecam-token", fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search);  // keep it out of history
  }
  return sessionStorage.getItem("mattecam-token") || "";
}

const token = takeToken();
let current = null;       // settings as last reported
let shownKind = null;     // the panel on screen
let previewUrl = null;

function showMessage(text, info = false) {
  const m = $("message");
  m.textContent = text;
  m.classList.toggle("info", info);
  m.hidden = !text;
}

async function api(method, path, body, contentType = "application/json") {
  const headers = { "X-Mattecam-Token": token };
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = contentType || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  const type = r.headers.get("Content-Type") || "";
  if (!r.ok) {
    let text = `${r.status} ${r.statusText}`;
    if (type.startsWith("application/json")) text = (await r.json()).error || text;
    throw new Error(text);
  }
  return type.startsWith("application/json") ? r.json() : r.blob();
}

async function act(fn) {
  try {
    const result = await fn();
    showMessage("");
    if (result && result.settings) applySettings(result.settings);
    return result;
  } catch (e) {
    showMessage(e.message);
    return null;
  }
}

function setBackground(body) {
  return act(() => api("POST", "/api/background", body));
}

// --- settings -> page ---------------------------------------------------------------------

function applySettings(s) {
  current = s;
  const info = s.background_info;
  for (const b of document.querySelectorAll(".kinds button")) {
    b.setAttribute("aria-checked", String(b.dataset.kind === info.kind));
  }
  showPanel(info.kind);
  $("blur").value = s.blur_strength;
  $("blur-value").textContent = Math.round(s.blur_strength);
  if (info.kind === "color") $("color").value = info.color;
  $("mirror").checked = s.mirror;
  for (const b of document.querySelectorAll(".library button")) {
    b.setAttribute("aria-checked", String(b.dataset.name === info.name));
  }
}

function showPanel(kind) {
  shownKind = kind;
  document.body.dataset.kind = kind;
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.dataset.panel !== kind;
}

// --- library ------------------------------------------------------------------------------

async function loadLibrary() {
  const data = await api("GET", "/api/backgrounds");
  const images = $("images");
  const videos = $("videos");
  images.replaceChildren();
  videos.replaceChildren();
  for (const entry of data.backgrounds) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.name = entry.name;
    b.title = entry.name;
    b.setAttribute("role", "radio");
    b.addEventListener("click", () => setBackground({ kind: entry.kind, name: entry.name }));
    if (entry.kind === "image") {
      const img = document.createElement("img");
      img.alt = entry.name;
      b.append(img);
      images.append(b);
      api("GET", `/api/backgrounds/${encodeURIComponent(entry.name)}`)
        .then((blob) => { img.src = URL.createObjectURL(blob); })
        .catch(() => { b.classList.add("text"); b.textContent = entry.name; });
    } else {
      b.classList.add("text");
      b.textContent = entry.name;
      videos.append(b);
    }
  }
  if (current) applySettings(current);
}

// --- preview and status loops ---------------------------------------------------------------

async function previewLoop() {
  const img = $("preview");
  for (;;) {
    const started = performance.now();
    try {
      const blob = await api("GET", "/api/preview.jpg");
      const url = URL.createObjectURL(blob);
      await new Promise((resolve) => {
        img.onload = img.onerror = resolve;
        img.src = url;
      });
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = url;
      img.dataset.frames = String(Number(img.dataset.frames) + 1);
    } catch (e) {
      // No picture yet, or mattecam stopped: the status line says which.
    }
    const wait = PREVIEW_MS - (performance.now() - started);
    await new Promise((r) => setTimeout(r, Math.max(20, wait)));
  }
}

function fmt(value, digits = 0, unit = "") {
  return value === null || value === undefined ? "–" : `${value.toFixed(digits)}${unit}`;
}

function describeWatching(w) {
  return w === null ? "unknown" : w ? "yes" : "no one";
}

async function statusLoop() {
  for (;;) {
    try {
      const s = await api("GET", "/api/status");
      if (!current || JSON.stringify(current) !== JSON.stringify(s.settings)) {
        applySettings(s.settings);
      }
      $("status").textContent =
        `${fmt(s.fps.out, 1)} fps · CPU ${fmt(s.cpu_percent)}% · ` +
        `latency ${fmt(s.latency_ms.p50)} ms · watching: ${describeWatching(s.watching)}` +
        (s.paused ? " · paused" : "");
      $("paused-note").hidden = !s.paused;
      const rows = [
        ["frames per second", `in ${fmt(s.fps.in, 1)}, processed ${fmt(s.fps.processed, 1)}, out ${fmt(s.fps.out, 1)}`],
        ["CPU", `${fmt(s.cpu_percent)}% of one core`],
        ["latency", `median ${fmt(s.latency_ms.p50, 1)} ms, 95% ${fmt(s.latency_ms.p95, 1)} ms`],
        ["dropped", `${s.dropped.before_process} before processing, ${s.dropped.before_output} before output`],
        ["repeated frames", String(s.frames.repeats)],
        ["someone watching", describeWatching(s.watching)],
        ["paused", s.paused ? (s.pause === "still" ? "frozen picture" : "be right back") : "no"],
      ];
      if (s.restart_needed.length) rows.push(["waiting for a restart", s.restart_needed.join(", ")]);
      if (s.config_error) rows.push(["config file error", s.config_error]);
      const dl = $("details");
      dl.replaceChildren(...rows.flatMap(([k, v]) => {
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = k;
        dd.textContent = v;
        return [dt, dd];
      }));
    } catch (e) {
      $("status").textContent = `not connected: ${e.message}`;
    }
    await new Promise((r) => setTimeout(r, STATUS_MS));
  }
}

// --- controls -------------------------------------------------------------------------------

function wire() {
  for (const b of document.querySelectorAll(".kinds button")) {
    b.addEventListener("click", () => {
      const kind = b.dataset.kind;
      if (kind === "blur") setBackground({ kind, strength: Number($("blur").value) });
      else if (kind === "off") setBackground({ kind });
      else if (kind === "color") setBackground({ kind, color: $("color").value });
      else showPanel(kind);  // image or video: pick one from the library
    });
  }
  let blurTimer = null;
  $("blur").addEventListener("input", () => {
    $("blur-value").textContent = $("blur").value;
    clearTimeout(blurTimer);
    blurTimer = setTimeout(() => {
      const strength = Number($("blur").value);
      if (current && current.background_info.kind === "blur") setBackground({ kind: "blur", strength });
      else act(() => api("POST", "/api/settings", { blur_strength: strength }));
    }, 150);
  });
  $("color").addEventListener("input", () => setBackground({ kind: "color", color: $("color").value }));
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    const result = await act(() => api("POST", "/api/upload?apply=1", file, file.type));
    $("upload").value = "";
    if (result) await loadLibrary().catch((e) => showMessage(e.message));
  });
  $("mirror").addEventListener("change", () =>
    act(() => api("POST", "/api/settings", { mirror: $("mirror").checked })));
  $("pause-still").addEventListener("click", () => act(() => api("POST", "/api/pause", { kind: "still" })));
  $("pause-brb").addEventListener("click", () => act(() => api("POST", "/api/pause", { kind: "brb" })));
  $("resume").addEventListener("click", () => act(() => api("POST", "/api/resume", {})));
}

async function main() {
  if (!token) {
    showMessage("Open this page through the link mattecam printed when it started " +
      "(it carries a private token), or run `mattecam ctl url` to see it again.", true);
    $("status").textContent = "no token";
    return;
  }
  wire();
  try {
    applySettings(await api("GET", "/api/settings"));
    await loadLibrary();
  } catch (e) {
    showMessage(e.message);
    return;
  }
  $("app").hidden = false;
  previewLoop();
  statusLoop();
}

main();

// seedserve dashboard: a little JavaScript over the manager's /api, with the
// session cookie and the page's CSRF token. No build step, no dependencies.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { "X-CSRF-Token": csrf(), ...headers }, credentials: "same-origin" };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(path, init);
  const text = await response.text();
  let data;
  try { data = JSON.parse(text); } catch { data = { raw: text }; }
  if (!response.ok) {
    const e = data.error || {};
    const error = new Error(`${response.status} ${e.code || ""}: ${e.message || text}${e.input ? ` (input: ${e.input})` : ""}`);
    error.status = response.status;
    error.retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw error;
  }
  return data;
}

function showSecret(el, label, secret) {
  el.hidden = false;
  el.textContent = "";
  el.append(`${label} (shown only once, copy it now): `);
  const code = document.createElement("code");
  code.textContent = secret;
  el.append(code);
}

// ---- register page: a manifest form per input kind, built from each kind's JSON schema
function fieldFor(name, prop, required) {
  const label = document.createElement("label");
  label.textContent = name + (required ? " *" : "") + " ";
  let input;
  const type = prop.type;
  if (prop.enum) {
    input = document.createElement("select");
    for (const v of prop.enum) { const o = document.createElement("option"); o.textContent = v; input.append(o); }
    if (prop.default !== undefined) input.value = prop.default;
    input.dataset.type = "string";
  } else if (type === "integer" || type === "number") {
    input = document.createElement("input");
    input.type = "number"; input.step = type === "integer" ? "1" : "any";
    if (prop.default !== undefined && prop.default !== null) input.value = prop.default;
    input.dataset.type = type;
  } else if (type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox"; input.checked = !!prop.default; input.dataset.type = "boolean";
  } else if (type === "string") {
    input = document.createElement("input");
    if (prop.default !== undefined && prop.default !== null) input.value = prop.default;
    input.dataset.type = "string";
  } else {  // arrays, objects, nullable values: JSON
    input = document.createElement("input");
    input.placeholder = "JSON";
    if (prop.default !== undefined && prop.default !== null) input.value = JSON.stringify(prop.default);
    input.dataset.type = "json";
  }
  input.dataset.field = name;
  input.dataset.required = required ? "1" : "";
  label.append(input);
  return label;
}

function addInput(kind, schemas) {
  const schema = schemas[kind];
  const box = document.createElement("fieldset");
  box.className = "input-spec";
  box.dataset.kind = kind;
  const legend = document.createElement("legend");
  legend.textContent = `${kind} input`;
  box.append(legend);
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties)) {
    if (name === "kind") continue;
    box.append(fieldFor(name, prop.anyOf ? { ...prop, type: undefined } : prop, required.has(name)));
  }
  const remove = document.createElement("button");
  remove.type = "button"; remove.textContent = "Remove"; remove.className = "link";
  remove.onclick = () => { box.remove(); preview(); };
  box.append(remove);
  $("#inputs").append(box);
  box.addEventListener("input", preview);
  preview();
}

function readSpec(box) {
  const spec = { kind: box.dataset.kind };
  for (const input of $$("[data-field]", box)) {
    const name = input.dataset.field, type = input.dataset.type;
    if (type === "boolean") { spec[name] = input.checked; continue; }
    const raw = input.value.trim();
    if (raw === "") {
      if (input.dataset.required) throw new Error(`input ${spec.name || "?"}: ${name} is required`);
      continue;
    }
    if (type === "integer" || type === "number") spec[name] = Number(raw);
    else if (type === "json") {
      try { spec[name] = JSON.parse(raw); } catch { throw new Error(`input ${spec.name || "?"}: ${name} is not valid JSON`); }
    } else spec[name] = raw;
  }
  return spec;
}

function buildManifest() {
  const manifest = {
    name: $("#model-name").value.trim(),
    inputs: $$(".input-spec").map(readSpec),
    outputs: $("#outputs").value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
      const [name, labels] = line.split(":");
      const out = { name: name.trim() };
      if (labels) out.labels = labels.split(",").map((s) => s.trim()).filter(Boolean);
      return out;
    }),
    scaling: { min_replicas: Number($("#min-replicas").value), max_replicas: Number($("#max-replicas").value) },
  };
  const description = $("#model-description").value.trim();
  if (description) manifest.description = description;
  const latency = $("#latency-ms").value.trim();
  if (latency) manifest.objective = { latency_ms: Number(latency), percentile: $("#percentile").value,
                                      peak_rps: Number($("#peak-rps").value || 1) };
  return manifest;
}

function preview() {
  try { $("#manifest-preview").textContent = JSON.stringify(buildManifest(), null, 2); }
  catch (e) { $("#manifest-preview").textContent = e.message; }
}

function setUpRegister(form) {
  const schemas = JSON.parse($("#kind-schemas").textContent);
  $("#add-input").onclick = () => addInput($("#new-input-kind").value, schemas);
  form.addEventListener("input", preview);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const error = $("#register-error");
    error.hidden = true;
    let manifest;
    try { manifest = buildManifest(); } catch (e) { error.textContent = e.message; error.hidden = false; return; }
    const file = $("#artifact").files[0];
    const name = file.name.toLowerCase();
    const format = $("#format").value || (name.endsWith(".pt2") ? "export" : name.endsWith(".zip") ? "handler" : "torchscript");
    const body = new FormData();
    body.append("manifest", JSON.stringify(manifest));
    body.append("format", format);
    body.append("artifact", file, file.name);
    // XMLHttpRequest, not fetch: it reports upload progress.
    const xhr = new XMLHttpRequest();
    const bar = $("#upload-progress");
    bar.hidden = false; bar.value = 0;
    $("#register-submit").disabled = true;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
      $("#upload-status").textContent = bar.value >= 100 ? "uploaded; test-loading and profiling..." : `${bar.value.toFixed(0)} %`;
    };
    xhr.onload = () => {
      $("#register-submit").disabled = false;
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status !== 201) {
        const e = data.error || {};
        error.textContent = `${xhr.status} ${e.code || ""}: ${e.message || xhr.responseText}${e.input ? ` (input: ${e.input})` : ""}`;
        error.hidden = false;
        $("#upload-status").textContent = "";
        return;
      }
      $("#upload-status").textContent = "done";
      $("#register-result").hidden = false;
      $("#register-message").textContent = `${data.name}: version ${data.version} registered. ${data.message}`
        + (data.warnings || []).map((w) => ` Warning: ${w}`).join("");
      if (data.key) showSecret($("#register-key"), "Key", data.key);
      $("#register-link").href = `/dashboard/models/${data.name}`;
    };
    xhr.onerror = () => { $("#register-submit").disabled = false; error.textContent = "the upload failed (network)"; error.hidden = false; };
    xhr.open("POST", "/api/models");
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.send(body);
  });
  preview();
}

// ---- model page: keys, versions, try it, delete
function setUpModel(title) {
  const name = title.dataset.model;
  const base = `/api/models/${encodeURIComponent(name)}`;
  const fail = (e) => alert(e.message);
  $("#create-key").onclick = async () => {
    try {
      const key = await api("POST", `${base}/keys`, { label: $("#key-label").value || "default" });
      showSecret($("#new-key"), `Key ${key.id}`, key.key);
      $("#try-key").value = key.key;
    } catch (e) { fail(e); }
  };
  for (const button of $$(".rotate-key")) button.onclick = async () => {
    try {
      const key = await api("POST", `${base}/keys/${button.dataset.id}/rotate`);
      showSecret($("#new-key"), `Key ${key.id} (replaces ${key.replaces})`, key.key);
      $("#try-key").value = key.key;
      button.closest("tr").remove();
    } catch (e) { fail(e); }
  };
  for (const button of $$(".revoke-key")) button.onclick = async () => {
    if (!confirm(`Revoke key ${button.dataset.id}? Clients using it stop working within seconds.`)) return;
    try { await api("DELETE", `${base}/keys/${button.dataset.id}`); button.closest("tr").remove(); } catch (e) { fail(e); }
  };
  for (const button of $$(".pin")) button.onclick = async () => {
    const version = button.dataset.version ? Number(button.dataset.version) : null;
    try { await api("PUT", `${base}/pin`, { version }); location.reload(); } catch (e) { fail(e); }
  };
  $("#delete-model").onclick = async () => {
    if (!confirm(`Delete ${name} and every version? This cannot be undone.`)) return;
    try { await api("DELETE", base); location.href = "/dashboard"; } catch (e) { fail(e); }
  };
  $("#try-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("#try-output");
    out.textContent = "running...";
    const body = new FormData();
    try {
      for (const box of $$("fieldset[data-input]")) {
        const read = FORM_READERS[box.dataset.form];
        if (!read) throw new Error(`${box.dataset.input}: no form for ${box.dataset.kind} inputs`);
        read(box, box.dataset.input, body);
      }
      const result = await tryUntilServed(`${base}/try`, body, $("#try-key").value.trim(), out);
      out.textContent = JSON.stringify(result, null, 2);
      out.classList.remove("error");
    } catch (e) { out.textContent = e.message; out.classList.add("error"); }
  });
}

// How the "try it" form reads each input into the multipart body, by the
// widget its kind asks for (the fieldset's data-form, from the kind registry).
const FORM_READERS = {
  file(box, input, body) {
    const file = $("input[type=file]", box).files[0];
    if (!file) throw new Error(`choose a file for ${input}`);
    body.append(input, file, file.name);
  },
  columns(box, input, body) {
    const record = {};
    for (const field of $$("[data-column]", box)) {
      const type = field.dataset.type;
      record[field.dataset.column] = type === "bool" ? field.checked
        : type === "int" ? parseInt(field.value, 10) : type === "float" ? Number(field.value) : field.value;
    }
    body.append(input, JSON.stringify(record));
  },
  text(box, input, body) {
    body.append(input, $("textarea", box).value);
  },
  json(box, input, body) {
    const raw = $("textarea", box).value;
    try { JSON.parse(raw); } catch { throw new Error(`${input}: not valid JSON`); }
    body.append(input, raw);
  },
};

// A model that is still starting answers 503 with Retry-After: wait and
// send the query again, for up to two minutes, saying so on the page.
async function tryUntilServed(path, body, key, out) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      return await api("POST", path, body, { "X-Model-Key": key });
    } catch (e) {
      if (e.status !== 503 || !e.retryAfter || Date.now() + e.retryAfter * 1000 > deadline) throw e;
      out.textContent = `${e.message}\nretrying in ${e.retryAfter} s...`;
      await new Promise((resolve) => setTimeout(resolve, e.retryAfter * 1000));
    }
  }
}

// ---- models list and model page: status and live numbers, refreshed from /api/cluster
function setUpLive(rows) {
  const ms = (v) => (v == null ? "—" : v < 10 ? v.toFixed(2) : v.toFixed(0));
  const refresh = async () => {
    let cluster;
    try { cluster = await api("GET", "/api/cluster"); } catch { return; }
    for (const row of rows) {
      const live = cluster.models[row.dataset.live];
      if (!live) continue;
      $(".status", row).textContent = live.reason ? `${live.status}: ${live.reason}` : live.status;
      $(".replicas", row).textContent = live.replicas;
      $(".requests_per_s", row).textContent = live.requests_per_s == null ? "—" : live.requests_per_s.toFixed(1);
      $(".p50_ms", row).textContent = ms(live.p50_ms);
      $(".p99_ms", row).textContent = ms(live.p99_ms);
    }
  };
  setInterval(refresh, 3000);
}

// ---- tokens page
function setUpTokens() {
  $("#create-token").onclick = async () => {
    try {
      const token = await api("POST", "/api/tokens", { label: $("#token-label").value || "api" });
      showSecret($("#new-token"), `Token ${token.id}`, token.token);
    } catch (e) { alert(e.message); }
  };
  for (const button of $$(".revoke-token")) button.onclick = async () => {
    try { await api("DELETE", `/api/tokens/${button.dataset.id}`); button.closest("tr").remove(); } catch (e) { alert(e.message); }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const register = $("#register-form");
  if (register) setUpRegister(register);
  const title = $("#model-title");
  if (title) setUpModel(title);
  if ($("#create-token")) setUpTokens();
  const live = $$("[data-live]");
  if (live.length) setUpLive(live);
});

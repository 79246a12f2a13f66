// vramest web: the form becomes a query string (the CLI's flag names without dashes); the
// server answers with the CLI's JSON, its figures formatted as the terminal prints them, and
// the chart. Nothing is computed here; the page only draws and keeps its state in the URL.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = { weights: "weights", kv_cache: "KV cache", activations: "activations",
  overhead: "overhead" };
// The form's fields in the order they go into the query and the command line.
const FIELDS = ["dtype", "kv-dtype", "ctx", "batch", "engine", "gpu-memory-utilization",
  "max-model-len", "n-gpu-layers", "flash-attn", "fit", "gpu", "num-gpus"];
const DEFAULTS = { batch: "1", engine: "generic", "num-gpus": "1" };
const ENGINE_FIELDS = { vllm: ["gpu-memory-utilization", "max-model-len"],
  llamacpp: ["n-gpu-layers", "flash-attn", "fit"] };
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const MAX_GGUF_HEADER_BYTES = 48 * 1024 * 1024;  // vramest/web/uploads.py

function ladder(lo, hi, halfSteps) {
  const out = [];
  for (let v = lo; v <= hi; v *= 2) {
    out.push(v);
    if (halfSteps && v >= 2 && v * 1.5 < hi) out.push(v * 1.5);
  }
  return out;
}
const CTX = ladder(512, 1024 * 1024, true);
const BATCH = [1].concat(ladder(2, 1024, true));

let upload = null;  // {model: "upload:ID", name}
let timer = 0, controller = null, sequence = 0;

function tokensText(n) {  // as vramest.units.format_tokens
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}k` : String(n);
}

function parseCount(text) {
  const m = /^\s*(\d+(?:\.\d*)?)\s*([km]?)\s*$/i.exec(text || "");
  if (!m) return NaN;
  return Math.round(parseFloat(m[1]) * ({ "": 1, k: 1024, m: 1024 * 1024 })[m[2].toLowerCase()]);
}

function nearestIndex(values, x) {
  let best = 0;
  values.forEach((v, i) => { if (Math.abs(Math.log(v / x)) < Math.abs(Math.log(values[best] / x))) best = i; });
  return best;
}

function source() {
  return document.querySelector('input[name="source"]:checked').value;
}

function setSource(value) {
  document.querySelector(`input[name="source"][value="${value}"]`).checked = true;
  document.querySelectorAll("[data-source]").forEach((el) => { el.hidden = el.dataset.source !== value; });
}

function showEngineFields() {
  $("num-gpus").disabled = !$("gpu").value;  // the table of common GPUs takes no count
  const engine = $("engine").value;
  document.querySelectorAll("[data-engine]").forEach((el) => {
    el.hidden = !engine.startsWith(el.dataset.engine);
  });
}

function fieldValue(name) {
  const el = $(name);
  if (el.type === "checkbox") return el.checked ? "1" : "";
  return el.value.trim();
}

function query() {
  const q = new URLSearchParams();
  const from = source();
  if (from === "catalog" && $("model").value.trim()) q.set("model", $("model").value.trim());
  if (from === "params" && $("params").value.trim()) q.set("params", $("params").value.trim());
  if (from === "file" && upload) q.set("model", upload.model);
  const engine = $("engine").value;
  for (const name of FIELDS) {
    const owner = Object.keys(ENGINE_FIELDS).find((e) => ENGINE_FIELDS[e].includes(name));
    if (owner && !engine.startsWith(owner)) continue;
    if (name === "num-gpus" && !$("gpu").value) continue;
    const value = fieldValue(name);
    if (value && value !== DEFAULTS[name]) q.set(name, value);
  }
  return q.toString();
}

function schedule(delay) {
  clearTimeout(timer);
  timer = setTimeout(refresh, delay);
}

async function refresh() {
  if (source() === "file" && !upload) {
    $("file-status").textContent = "Drop or choose a model's files to see its answer.";
    return;
  }
  const q = query();
  history.replaceState(null, "", q ? `?${q}` : location.pathname);
  $("json-link").href = `/api/estimate?${q}`;
  if (controller) controller.abort();
  controller = new AbortController();
  const mine = ++sequence;
  document.body.dataset.state = "loading";
  $("results").setAttribute("aria-busy", "true");
  try {
    const response = await fetch(`/api/view?${q}`, { signal: controller.signal });
    const answer = await response.json();
    if (mine !== sequence) return;
    if (!response.ok) showError(answer.error || `The server answered ${response.status}.`);
    else render(answer);
    document.body.dataset.query = q;
    document.body.dataset.state = response.ok ? "ready" : "error";
    if (response.ok) drawChart(q, mine, controller.signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    showError("The vramest server cannot be reached; is `vramest web` still running?");
    document.body.dataset.query = q;
    document.body.dataset.state = "error";
  } finally {
    if (mine === sequence) $("results").setAttribute("aria-busy", "false");
  }
}

async function drawChart(q, mine, signal) {
  // after the figures: the chart changes with every input but the context, and is kept
  try {
    const response = await fetch(`/api/chart?${q}`, { signal });
    const answer = await response.json();
    if (mine !== sequence || !response.ok) return;
    $("chart").innerHTML = answer.svg;  // SVG drawn by vramest.render.plots.svg
    document.body.dataset.chart = q;
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("results").classList.add("stale");
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(list, items) {
  list.replaceChildren(...items.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

function render(answer) {
  const f = answer.formatted;
  $("error").hidden = true;
  $("results").classList.remove("stale");
  $("headline").textContent = f.headline;

  const bar = $("bar");
  bar.replaceChildren(...f.parts.filter((p) => p.bytes > 0).map((p) => {
    const span = document.createElement("span");
    span.className = `part-${p.name}`;
    span.style.width = `${(100 * p.bytes) / f.total.bytes}%`;
    span.title = `${LABELS[p.name]} ${p.text} (${p.share})`;
    return span;
  }));
  bar.setAttribute("aria-label", "Memory by part: " +
    f.parts.map((p) => `${LABELS[p.name]} ${p.text}`).join(", ") + `; total ${f.total.text}`);

  $("parts").tBodies[0].replaceChildren(...f.parts.map((p) => {
    const row = document.createElement("tr");
    row.dataset.part = p.name;
    const th = document.createElement("th");
    th.scope = "row";
    const swatch = document.createElement("span");
    swatch.className = `swatch part-${p.name}`;
    th.append(swatch, LABELS[p.name]);
    row.appendChild(th);
    cell(row, p.text, "num").dataset.bytes = p.bytes;
    cell(row, p.share, "num");
    return row;
  }));
  $("total").textContent = f.total.text;
  $("total").dataset.bytes = f.total.bytes;

  $("fit-section").hidden = !f.fit;
  if (f.fit) {
    const row = document.createElement("tr");
    cell(row, f.fit.gpu);
    cell(row, String(f.fit.num_gpus), "num");
    cell(row, f.fit.per_gpu, "num");
    cell(row, f.fit.usable, "num");
    cell(row, f.fit.headroom, "num").id = "headroom";
    cell(row, f.fit.fits ? "fits" : "does NOT fit", f.fit.fits ? "fits" : "nofit").id = "verdict";
    $("fit-table").tBodies[0].replaceChildren(row);
    $("fit-lines").textContent = f.fit.lines.join("\n");
  }
  $("gpus-section").hidden = !f.gpus;
  if (f.gpus) {
    $("gpus-table").tBodies[0].replaceChildren(...f.gpus.map((g) => {
      const row = document.createElement("tr");
      cell(row, g.gpu);
      if (!g.fits) {
        cell(row, "—", "num");
        cell(row, g.reason).colSpan = 3;
      } else {
        cell(row, String(g.cards), "num");
        cell(row, g.per_gpu, "num");
        cell(row, g.headroom, "num");
        cell(row, g.decode, "num");
      }
      return row;
    }));
  }
  $("engine-section").hidden = !f.engine;
  if (f.engine) $("engine-lines").textContent = f.engine.join("\n");

  fill($("assumptions"), f.assumptions);
  fill($("formulas"), f.parts.map((p) => `${LABELS[p.name]} = ${p.formula}`));
  $("text").textContent = answer.text;
  $("command").textContent = answer.command;
  // what a screen reader announces after each change: the total and the verdict, not the page
  $("summary").textContent = `Total ${f.total.text}. ` + (f.fit ? `${f.fit.describe}.` : "");
}

function syncSlider(name, values) {
  const n = parseCount($(name).value);
  if (Number.isFinite(n) && n > 0) $(`${name}-slider`).value = nearestIndex(values, n);
  const shown = Number.isFinite(n) && n > 0 ? (name === "ctx" ? `${tokensText(n)} tokens` : `${n}`) : "";
  $(`${name}-out`).textContent = shown;
  $(`${name}-slider`).setAttribute("aria-valuetext", shown || $(name).value);
}

function setUpSlider(name, values) {
  const slider = $(`${name}-slider`);
  slider.max = values.length - 1;
  slider.addEventListener("input", () => {
    $(name).value = String(values[slider.value]);
    syncSlider(name, values);
    schedule(30);
  });
  $(name).addEventListener("input", () => { syncSlider(name, values); schedule(150); });
  syncSlider(name, values);
}

function option(select, value, text) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = text;
  select.appendChild(el);
}

async function getJSON(url) {
  const response = await fetch(url);
  return response.json();
}

async function readPart(file) {
  const name = file.name;
  if (name.endsWith(".json")) {
    if (file.size > MAX_JSON_BYTES) throw new Error(`${name} is larger than 16 MiB: expected a small JSON file.`);
    return { name, size: file.size, blob: file };
  }
  if (name.endsWith(".safetensors")) {
    if (file.size < 8) throw new Error(`${name} is shorter than a safetensors header.`);
    const head = new DataView(await file.slice(0, 8).arrayBuffer());
    const length = Number(head.getBigUint64(0, true));
    if (length > 64 * 1024 * 1024 || 8 + length > file.size) {
      throw new Error(`${name} does not start with a safetensors header of at most 64 MiB.`);
    }
    return { name, size: file.size, blob: file.slice(0, 8 + length) };
  }
  if (name.endsWith(".gguf")) {
    return { name, size: file.size, blob: file.slice(0, Math.min(file.size, MAX_GGUF_HEADER_BYTES)) };
  }
  throw new Error(`${name} is not read here: give a config.json, a safetensors index and headers, or a .gguf file.`);
}

// What vramest reads of a model folder (vramest/readers/folder.py): its config, a GPTQ
// quantize_config, the safetensors index and shards, or GGUF files; tokenizers and pickles stay.
const FOLDER_FILE = /^(config\.json|quantize_config\.json|model\.safetensors\.index\.json|.*\.safetensors|.*\.gguf)$/;

// A folder dropped on the page: the files at its top level, as File objects.
async function folderFiles(entry) {
  const reader = entry.createReader();
  const entries = [];
  for (let batch = await new Promise((ok, fail) => reader.readEntries(ok, fail)); batch.length;
    batch = await new Promise((ok, fail) => reader.readEntries(ok, fail))) entries.push(...batch);
  const files = await Promise.all(entries.filter((e) => e.isFile && FOLDER_FILE.test(e.name))
    .map((e) => new Promise((ok, fail) => e.file(ok, fail))));
  return { folder: entry.name, files };
}

async function uploadFiles(fileList, folderName) {
  let files = Array.from(fileList).filter((f) => !f.name.startsWith("."));
  // a chosen folder (webkitdirectory) names its files folder/name; keep its top level
  const folder = folderName || (files[0]?.webkitRelativePath || "").split("/")[0] || null;
  if (folder) {
    files = files.filter((f) => !f.webkitRelativePath || f.webkitRelativePath.split("/").length === 2)
      .filter((f) => FOLDER_FILE.test(f.name));
  }
  if (!files.length) {
    if (folder) showError(`${folder} holds no config.json, safetensors or GGUF file at its top level.`);
    return;
  }
  $("file-status").textContent = "Reading the headers…";
  try {
    const parts = await Promise.all(files.map(readPart));
    // the server takes plain names; the folder's only names the model
    const plain = folder && folder.replace(/[^A-Za-z0-9_.+-]+/g, "-").replace(/^[^A-Za-z0-9_]+/, "");
    const manifest = { folder: plain || (parts.length > 1 ? "model" : null), files: parts.map((p) => ({ name: p.name, length: p.blob.size, size: p.size })) };
    const body = new Blob([JSON.stringify(manifest) + "\n", ...parts.map((p) => p.blob)]);
    const response = await fetch("/api/upload", { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
    upload = answer;
    $("file-status").textContent = `Using ${answer.name} (kept by this server until it stops).`;
    setSource("file");
    refresh();
  } catch (err) {
    upload = null;
    $("file-status").textContent = "";
    showError(err.message);
    document.body.dataset.state = "error";
  }
}

function fromURL() {
  const q = new URLSearchParams(location.search);
  if (q.has("params")) {
    setSource("params");
    $("params").value = q.get("params");
  } else if ((q.get("model") || "").startsWith("upload:")) {
    upload = { model: q.get("model"), name: "the uploaded file" };
    setSource("file");
    $("file-status").textContent = "Using the file uploaded earlier to this server.";
  } else if (q.has("model")) {
    setSource("catalog");
    $("model").value = q.get("model");
  }
  for (const name of FIELDS) {
    if (!q.has(name)) continue;
    const el = $(name);
    if (el.type === "checkbox") el.checked = q.get(name) !== "0";
    else {
      if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === q.get(name))) {
        option(el, q.get(name), q.get(name));  // keep what the link says; the server judges it
      }
      el.value = q.get(name);
    }
  }
}

async function copyCommand() {
  const text = $("command").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("command"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  $("copy-status").textContent = "copied";
  setTimeout(() => { $("copy-status").textContent = ""; }, 2000);
}

async function start() {
  const [models, gpus, choices] = await Promise.all(
    [getJSON("/api/models"), getJSON("/api/gpus"), getJSON("/api/choices")]);
  for (const m of models.models) {
    const el = document.createElement("option");
    el.value = m.id;
    el.label = `${m.params} · ${m.family}${m.aliases.length ? " · " + m.aliases.join(", ") : ""}`;
    $("model-list").appendChild(el);
  }
  $("model-count").textContent = `${models.models.length} models in the catalog`;
  for (const g of gpus.gpus) option($("gpu"), g.id, `${g.name} (${g.memory})`);
  for (const d of choices.dtypes) option($("dtype"), d, d);
  for (const d of choices.kv_dtypes) option($("kv-dtype"), d, d);
  for (const e of choices.engines) option($("engine"), e, e);
  $("engine").value = "generic";

  fromURL();
  setSource(source());
  showEngineFields();
  setUpSlider("ctx", CTX);
  setUpSlider("batch", BATCH);

  document.querySelectorAll('input[name="source"]').forEach((el) => el.addEventListener("change", () => {
    setSource(source());
    schedule(0);
  }));
  for (const id of ["model", "params", ...FIELDS.filter((n) => n !== "ctx" && n !== "batch")]) {
    const el = $(id);
    el.addEventListener(el.tagName === "SELECT" || el.type === "checkbox" ? "change" : "input", () => {
      if (id === "engine" || id === "gpu") showEngineFields();
      schedule(el.tagName === "SELECT" ? 0 : 150);
    });
  }
  $("file").addEventListener("change", () => uploadFiles($("file").files));
  $("folder").addEventListener("change", () => uploadFiles($("folder").files));
  const drop = $("model-set");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const entry = e.dataTransfer.items?.[0]?.webkitGetAsEntry?.();
    if (entry && entry.isDirectory) {
      folderFiles(entry).then(({ folder, files }) => uploadFiles(files, folder), (err) => showError(err.message));
    } else {
      uploadFiles(e.dataTransfer.files);
    }
  });
  $("inputs").addEventListener("submit", (e) => { e.preventDefault(); schedule(0); });
  $("copy").addEventListener("click", copyCommand);
  refresh();
}

start();

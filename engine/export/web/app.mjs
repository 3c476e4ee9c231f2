// The page: load the exported student in onnxruntime-web (WebAssembly), make its input from 1-4 photos,
// run it, time it and show the mesh. For tests: window.lastVertices (Float32Array, V * 3),
// window.lastInput (the Float32Array fed to the model), window.lastLatencyMs, and #status[data-state]
// = loading | ready | running | done | error.
import {VIEW_NAMES, calibratedView, decodePng, photoViews, stackViews} from "./views.mjs";
import {Viewer} from "./viewer.mjs";

const WARMUP = 3, RUNS = 15;  // latency: the median of RUNS calls after WARMUP
const ort = globalThis.ort;
const $ = sel => document.querySelector(sel);
let session, meta, faces, viewer, threads;

function setStatus(state, text) {
  const el = $("#status");
  el.dataset.state = state;
  el.textContent = text;
}

async function fetchJson(name) {
  const res = await fetch(name);
  if (!res.ok) throw new Error(`${name}: HTTP ${res.status}`);
  return res.json();
}

async function readImage(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const png = await decodePng(bytes).catch(() => null);  // exact bytes, as Pillow reads them
  if (png) return png;
  const bmp = await createImageBitmap(new Blob([bytes]), {premultiplyAlpha: "none", colorSpaceConversion: "none"});
  const canvas = document.createElement("canvas");
  canvas.width = bmp.width; canvas.height = bmp.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bmp, 0, 0);
  return {width: bmp.width, height: bmp.height, data: ctx.getImageData(0, 0, bmp.width, bmp.height).data, hasAlpha: true};
}

function preview(view, rgba, size) {
  const canvas = $(`#preview-${view}`);
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, size, size);
  if (rgba) ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba), size, size), 0, 0);
}

const median = xs => { const s = [...xs].sort((a, b) => a - b), n = s.length; return n % 2 ? s[(n - 1) >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2; };

async function init() {
  try {
    let bundle;
    [meta, {faces}, bundle] = await Promise.all(["student.json", "student.faces.json", "bundle.json"].map(fetchJson));
    ort.env.wasm.wasmPaths = new URL("./", location.href).href;  // the .mjs / .wasm beside this page
    threads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.numThreads = threads;
    session = await ort.InferenceSession.create(new URL("student.onnx", location.href).href,
                                                {executionProviders: ["wasm"], graphOptimizationLevel: "all"});
    viewer = new Viewer($("#viewer"));
    $("#model").textContent = `run ${meta.run} (${meta.checkpoint}, epoch ${meta.epoch}): ${meta.image_size} px views, ` +
      `${meta.vertices} vertices; onnxruntime-web ${bundle["onnxruntime-web"]}, WebAssembly, ${threads} thread` +
      `${threads > 1 ? "s" : ""}${self.crossOriginIsolated ? "" : " (the page is not cross-origin isolated)"}`;
    $("#run").disabled = false;
    setStatus("ready", "ready: choose 1-4 photos and press Run");
  } catch (e) {
    setStatus("error", `could not load the student: ${e.message || e}`);
  }
}

async function run() {
  const size = meta.image_size, mode = $("input[name=mode]:checked").value, images = {};
  $("#run").disabled = true;
  setStatus("running", "reading the photos");
  try {
    for (const view of VIEW_NAMES) {
      const file = $(`#view-${view}`).files[0];
      if (file) images[view] = await readImage(file);
    }
    if (!Object.keys(images).length) throw new Error("no photos chosen: give at least one view, ideally the front");
    let views = {}, notes = {}, errors = {};
    if (mode === "calibrated") {
      for (const [view, img] of Object.entries(images)) {
        try { const v = calibratedView(img, size, `${view} view`); views[view] = v.rgba; notes[view] = v.method; }
        catch (e) { errors[view] = e.message; }
      }
    } else {
      ({views, notes, errors} = photoViews(images, size));
    }
    VIEW_NAMES.forEach(v => preview(v, views[v], size));
    const used = VIEW_NAMES.filter(v => views[v]);
    if (!used.length) throw new Error(`no usable photo: ${Object.values(errors).join("; ")}`);
    const input = stackViews(views, size);
    window.lastInput = input;
    const feeds = {[session.inputNames[0]]: new ort.Tensor("float32", input, [1, VIEW_NAMES.length, 4, size, size])};
    setStatus("running", "running the student");
    let out;
    for (let i = 0; i < WARMUP; i++) out = await session.run(feeds);
    const times = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      out = await session.run(feeds);
      times.push(performance.now() - t0);
    }
    const ms = median(times), vertices = new Float32Array(out[session.outputNames[0]].data);
    window.lastVertices = vertices;
    window.lastLatencyMs = ms;
    $("#latency").textContent = `latency per shoe: ${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
    $("#latency-how").textContent = ` (median of ${RUNS} runs after ${WARMUP} warm-up runs, batch 1, ` +
      `WebAssembly, ${threads} thread${threads > 1 ? "s" : ""}, on this device)`;
    viewer.show(vertices, faces);
    const missing = VIEW_NAMES.filter(v => !views[v]);
    $("#notes").textContent = [
      `views given: ${used.length} of 4 (${used.map(v => `${v}: ${notes[v]}`).join(", ")})` +
        (missing.length ? `; missing: ${missing.join(", ")} (left blank, as in training: fewer views give a rougher mesh)` : ""),
      ...Object.values(errors).map(e => `left out: ${e}`)].join("\n");
    setStatus("done", `${vertices.length / 3} vertices, ${faces.length} faces`);
  } catch (e) {
    setStatus("error", e.message || String(e));
  } finally {
    $("#run").disabled = false;
  }
}

$("#run").addEventListener("click", run);
init();

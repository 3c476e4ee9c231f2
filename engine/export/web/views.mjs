// Photos -> the student's input, as engine/data/photos.py and engine/data/views.py make it.
// Pure functions (no DOM): node runs them in tests/test_web_bundle.py against Pillow.
//
// An image is {width, height, data: Uint8ClampedArray RGBA, hasAlpha} (hasAlpha: the file has an alpha
// channel or a transparency key, as Pillow sees it). PNGs are decoded here, byte for byte as Pillow
// decodes them (a browser's canvas would premultiply alpha and may colour-manage).

export const VIEW_NAMES = ["front", "left", "back", "right"];
export const MIN_SIDE = 32, MAX_SIDE = 4096;               // photos.MIN_SIDE / MAX_SIDE
const BG_TOLERANCE = 24, BORDER_PLAIN_FRACTION = 0.95;      // segment.py
const CUT_OFF_FRACTION = 0.03;                              // photos.CUT_OFF_FRACTION
const ORTHO_EXTENT = 1.2, LENGTH_PER_HEIGHT_PRIOR = 2.4;    // geometry/camera.py
const SIDE_VIEWS = ["left", "right"];

// ---- PNG -------------------------------------------------------------------------------------------
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A non-interlaced 1/2/4/8-bit PNG as an image; null for what it does not handle (16-bit, interlaced). */
export async function decodePng(bytes) {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || sig.some((b, i) => bytes[i] !== b)) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8, ihdr = null, palette = null, trns = null;
  const idat = [];
  while (pos + 8 <= bytes.length) {
    const len = dv.getUint32(pos), type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const body = bytes.subarray(pos + 8, pos + 8 + len);
    if (type === "IHDR") ihdr = {w: dv.getUint32(pos + 8), h: dv.getUint32(pos + 12), depth: body[8],
                                 color: body[9], interlace: body[12]};
    else if (type === "PLTE") palette = body;
    else if (type === "tRNS") trns = body;
    else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") break;
    pos += 12 + len;
  }
  if (!ihdr || ihdr.interlace || ihdr.depth === 16) return null;
  const {w, h, depth, color} = ihdr;
  const channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color];
  if (!channels || (color !== 0 && color !== 3 && depth !== 8) || (color === 3 && !palette)) return null;
  const total = idat.reduce((n, c) => n + c.length, 0), joined = new Uint8Array(total);
  let off = 0;
  for (const c of idat) { joined.set(c, off); off += c.length; }
  const raw = await inflate(joined);
  const bpp = Math.max(1, (channels * depth) >> 3), stride = (w * channels * depth + 7) >> 3;
  const px = new Uint8Array(h * stride);
  for (let y = 0; y < h; y++) {  // undo the scanline filters
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride, prev = out - stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? px[out + i - bpp] : 0, b = y ? px[prev + i] : 0, c = y && i >= bpp ? px[prev + i - bpp] : 0;
      let v = line[i];
      if (f === 1) v += a; else if (f === 2) v += b; else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[out + i] = v & 255;
    }
  }
  const data = new Uint8ClampedArray(w * h * 4);
  const sample = (y, x) => {  // a 1/2/4/8-bit sample of row y, column x (one channel)
    const bit = x * depth, byte = px[y * stride + (bit >> 3)];
    return depth === 8 ? byte : (byte >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
  };
  const key = trns && (color === 0 ? [(trns[0] << 8) | trns[1]] : color === 2 ?
    [(trns[0] << 8) | trns[1], (trns[2] << 8) | trns[3], (trns[4] << 8) | trns[5]] : null);
  for (let y = 0, o = 0; y < h; y++) {
    for (let x = 0; x < w; x++, o += 4) {
      const r = y * stride + x * channels;
      if (color === 6) { data.set(px.subarray(r, r + 4), o); continue; }
      if (color === 2) { data[o] = px[r]; data[o + 1] = px[r + 1]; data[o + 2] = px[r + 2];
        data[o + 3] = key && px[r] === key[0] && px[r + 1] === key[1] && px[r + 2] === key[2] ? 0 : 255; continue; }
      if (color === 4) { data[o] = data[o + 1] = data[o + 2] = px[r]; data[o + 3] = px[r + 1]; continue; }
      const s = sample(y, x);
      if (color === 3) { data[o] = palette[3 * s]; data[o + 1] = palette[3 * s + 1]; data[o + 2] = palette[3 * s + 2];
        data[o + 3] = trns && s < trns.length ? trns[s] : 255; continue; }
      const g = depth === 8 ? s : Math.round(s * 255 / ((1 << depth) - 1));  // grey
      data[o] = data[o + 1] = data[o + 2] = g; data[o + 3] = key && s === key[0] ? 0 : 255;
    }
  }
  return {width: w, height: h, data, hasAlpha: color === 4 || color === 6 || !!trns};
}

// ---- masks (photos.mask_photo, segment.plain_backdrop_mask) -----------------------------------------
function median(values) {
  const s = Float64Array.from(values).sort(), n = s.length;
  return n % 2 ? s[(n - 1) >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** Connected components (4- or 8-neighbours) of the true cells of a (h, w) 0/1 array: labels, sizes. */
function components(cells, w, h, eight) {
  const labels = new Int32Array(w * h), sizes = [0], stack = [];
  const steps = eight ? [[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]] : [[1, 0], [-1, 0], [0, 1], [0, -1]];
  for (let i = 0; i < w * h; i++) {
    if (!cells[i] || labels[i]) continue;
    const id = sizes.length;
    let n = 0;
    labels[i] = id; stack.push(i);
    while (stack.length) {
      const j = stack.pop(), x = j % w, y = (j - x) / w;
      n++;
      for (const [dx, dy] of steps) {
        const xx = x + dx, yy = y + dy, k = yy * w + xx;
        if (xx >= 0 && yy >= 0 && xx < w && yy < h && cells[k] && !labels[k]) { labels[k] = id; stack.push(k); }
      }
    }
    sizes.push(n);
  }
  return {labels, sizes};
}

function borderLabels(labels, w, h) {
  const out = new Set();
  for (let x = 0; x < w; x++) { out.add(labels[x]); out.add(labels[(h - 1) * w + x]); }
  for (let y = 0; y < h; y++) { out.add(labels[y * w]); out.add(labels[y * w + w - 1]); }
  out.delete(0);
  return out;
}

/** Object mask (Uint8Array 0/1) of an image on a plain backdrop, or null when its border is not plain. */
export function plainBackdropMask(img) {
  const {width: w, height: h, data} = img, k = Math.max(1, Math.floor(Math.min(w, h) / 50));
  const ring = [];
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++)
    if (y < k || y >= h - k || x < k || x >= w - k) ring.push(4 * (y * w + x));
  const bg = [0, 1, 2].map(c => median(ring.map(i => data[i + c])));
  const near = i => Math.max(...[0, 1, 2].map(c => Math.abs(data[i + c] - bg[c]))) <= BG_TOLERANCE;
  if (ring.filter(near).length / ring.length < BORDER_PLAIN_FRACTION) return null;
  const bgLike = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) bgLike[i] = near(4 * i) ? 1 : 0;
  const {labels} = components(bgLike, w, h, false), outside = borderLabels(labels, w, h);
  const mask = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) mask[i] = outside.has(labels[i]) ? 0 : 1;
  // the largest 8-connected region, its holes filled (segment._largest_filled)
  const obj = components(mask, w, h, true);
  if (obj.sizes.length < 2) return mask;
  const best = obj.sizes.indexOf(Math.max(...obj.sizes.slice(1)));
  const rest = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) rest[i] = obj.labels[i] === best ? 0 : 1;
  const holes = components(rest, w, h, false), open = borderLabels(holes.labels, w, h);
  for (let i = 0; i < w * h; i++) mask[i] = rest[i] && open.has(holes.labels[i]) ? 0 : 1;
  return mask;
}

/** photos.mask_photo: a copy whose alpha is the mask (0 / 255) and how it was found; throws Error. */
export function maskImage(img, name) {
  const {width: w, height: h} = img;
  if (Math.min(w, h) < MIN_SIDE || Math.max(w, h) > MAX_SIDE)
    throw new Error(`${name}: image of ${w}x${h} px; use ${MIN_SIDE}-${MAX_SIDE} px a side`);
  const data = new Uint8ClampedArray(img.data);
  let alpha = false;
  if (img.hasAlpha) for (let i = 3; i < data.length && !alpha; i += 4) alpha = data[i] < 255;
  let method = "alpha";
  if (alpha) {
    for (let i = 3; i < data.length; i += 4) data[i] = data[i] >= 128 ? 255 : 0;
  } else {
    const mask = plainBackdropMask(img);
    if (!mask) throw new Error(`${name}: the background is not plain; use a cut-out (PNG with transparency) or a ` +
                               "photo on a plain backdrop (the studio's Export tab also segments other backgrounds)");
    for (let i = 0; i < w * h; i++) data[4 * i + 3] = mask[i] ? 255 : 0;
    method = "plain backdrop";
  }
  let covered = 0;
  for (let i = 3; i < data.length; i += 4) covered += data[i] > 0;
  if (covered / (w * h) < 0.002) throw new Error(`${name}: no subject found`);
  return {width: w, height: h, data, method};
}

// ---- Pillow's resize (Image.resize on RGBA: premultiply, two separable passes, un-premultiply) ---------
const BOX = {support: 0.5, f: x => (x > -0.5 && x <= 0.5 ? 1 : 0)};
const BILINEAR = {support: 1, f: x => { x = Math.abs(x); return x < 1 ? 1 - x : 0; }};
const PRECISION_BITS = 22;

function coeffs(inSize, outSize, filter) {  // libImaging/Resample.c precompute_coeffs + normalize_coeffs_8bpc
  const scale = inSize / outSize, filterscale = Math.max(scale, 1), support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1, inv = 1 / filterscale;
  const bounds = new Int32Array(outSize * 2), kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    const k = new Float64Array(xmax);
    for (let x = 0; x < xmax; x++) { k[x] = filter.f((x + xmin - center + 0.5) * inv); ww += k[x]; }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin; bounds[2 * xx + 1] = xmax;
  }
  return {bounds, kk, ksize};
}

const clip8 = ss => Math.min(255, Math.max(0, Math.floor(ss / (1 << PRECISION_BITS))));

function pass(src, w, h, outSize, filter, horizontal) {  // one separable pass over RGBA bytes
  const {bounds, kk, ksize} = coeffs(horizontal ? w : h, outSize, filter);
  const ow = horizontal ? outSize : w, oh = horizontal ? h : outSize, out = new Uint8ClampedArray(ow * oh * 4);
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) {
    const xx = horizontal ? x : y, min = bounds[2 * xx], n = bounds[2 * xx + 1];
    for (let c = 0; c < 4; c++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let t = 0; t < n; t++) {
        const i = horizontal ? 4 * (y * w + min + t) + c : 4 * ((min + t) * w + x) + c;
        ss += src[i] * kk[xx * ksize + t];
      }
      out[4 * (y * ow + x) + c] = clip8(ss);
    }
  }
  return out;
}

/** Pillow's ``Image.fromarray(rgba).resize((size, size), BOX if shrinking else BILINEAR)``, bit-exact. */
export function resizeRGBA(data, w, h, size) {
  const filter = Math.max(w, h) > size ? BOX : BILINEAR;
  let px = new Uint8ClampedArray(data.length);
  for (let i = 0; i < data.length; i += 4) {  // RGBA -> RGBa: MULDIV255
    const a = data[i + 3];
    for (let c = 0; c < 3; c++) { const t = data[i + c] * a + 128; px[i + c] = ((t >> 8) + t) >> 8; }
    px[i + 3] = a;
  }
  if (w !== size) px = pass(px, w, h, size, filter, true);
  if (h !== size) px = pass(px, size, h, size, filter, false);
  for (let i = 0; i < px.length; i += 4) {  // RGBa -> RGBA
    const a = px[i + 3];
    if (a !== 0 && a !== 255) for (let c = 0; c < 3; c++) px[i + c] = Math.min(255, Math.floor(255 * px[i + c] / a));
  }
  return px;
}

/** photos.to_rgba: a calibrated (dataset) view, masked, padded to a square (centred) and resized; never
 *  cropped or reframed. Returns (size * size * 4) RGBA bytes. */
export function calibratedView(img, size, name = "image") {
  const m = maskImage(img, name), side = Math.max(m.width, m.height);
  let data = m.data;
  if (m.width !== m.height) {
    const sq = new Uint8ClampedArray(side * side * 4), top = (side - m.height) >> 1, left = (side - m.width) >> 1;
    for (let y = 0; y < m.height; y++) sq.set(data.subarray(4 * y * m.width, 4 * (y + 1) * m.width), 4 * ((top + y) * side + left));
    data = sq;
  }
  return {rgba: side === size ? data : resizeRGBA(data, side, side, size), method: m.method};
}

// ---- photos: framed as camera.frame_boxes says (no levelling here) ---------------------------------
function box(m) {
  let x0 = m.width, y0 = m.height, x1 = 0, y1 = 0;
  for (let y = 0; y < m.height; y++) for (let x = 0; x < m.width; x++)
    if (m.data[4 * (y * m.width + x) + 3]) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1); }
  return [x0, y0, x1, y1];
}

function cutOff(m, name) {  // photos.subject_problem
  const {width: w, height: h, data} = m, band = m.method === "alpha" ? 1 : 3, on = (x, y) => data[4 * (y * w + x) + 3] > 0;
  const side = (n, hit) => { let c = 0; for (let i = 0; i < n; i++) c += hit(i); return c / n >= CUT_OFF_FRACTION; };
  const any = (f, n) => { for (let b = 0; b < n; b++) if (f(b)) return true; return false; };
  const touched = [["top", side(w, x => any(b => on(x, b), band))], ["bottom", side(w, x => any(b => on(x, h - 1 - b), band))],
                   ["left", side(h, y => any(b => on(b, y), band))], ["right", side(h, y => any(b => on(w - 1 - b, y), band))]]
    .filter(([, t]) => t).map(([s]) => s);
  if (touched.length && !(m.method === "alpha" && touched.length === 4))
    throw new Error(`${name}: subject cut off at the ${touched.join(" and ")} border; photograph the whole shoe`);
}

export function frameBoxes(boxes, size) {  // camera.frame_boxes
  const aspect = Object.fromEntries(Object.entries(boxes).map(([n, [x0, y0, x1, y1]]) => [n, (x1 - x0) / (y1 - y0)]));
  const mean = a => a.reduce((s, v) => s + v, 0) / a.length;
  const sides = Object.keys(aspect).filter(n => SIDE_VIEWS.includes(n)).map(n => aspect[n]);
  const fronts = Object.keys(aspect).filter(n => !SIDE_VIEWS.includes(n)).map(n => aspect[n]);
  const length = sides.length ? mean(sides) : LENGTH_PER_HEIGHT_PRIOR, width = fronts.length ? mean(fronts) : 0;
  const heightPx = size / ORTHO_EXTENT / Math.max(1, length, width), out = {};
  for (const [n, [x0, y0, x1, y1]] of Object.entries(boxes)) {
    const s = heightPx / (y1 - y0);
    out[n] = [s, size / 2 - s * (x0 + x1) / 2, size / 2 - s * (y0 + y1) / 2];
  }
  return out;
}

function warp(m, [scale, tx, ty], size) {  // photos._warp: premultiplied bilinear, alpha thresholded at 128
  const out = new Uint8ClampedArray(size * size * 4), {width: w, height: h, data} = m;
  const at = (x, y, c) => (x < 0 || y < 0 || x >= w || y >= h) ? 0 : data[4 * (y * w + x) + c] * (c === 3 ? 1 : data[4 * (y * w + x) + 3] / 255);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    const sx = (x + 0.5 - tx) / scale - 0.5, sy = (y + 0.5 - ty) / scale - 0.5, x0 = Math.floor(sx), y0 = Math.floor(sy);
    const fx = sx - x0, fy = sy - y0, v = [0, 0, 0, 0];
    for (let c = 0; c < 4; c++) v[c] = (at(x0, y0, c) * (1 - fx) + at(x0 + 1, y0, c) * fx) * (1 - fy) +
                                      (at(x0, y0 + 1, c) * (1 - fx) + at(x0 + 1, y0 + 1, c) * fx) * fy;
    const o = 4 * (y * size + x);
    if (v[3] >= 128) { for (let c = 0; c < 3; c++) out[o + c] = Math.round(v[c] * 255 / v[3]); out[o + 3] = 255; }
  }
  return out;
}

/** photos.prepare_views without levelling: {view: image} -> {views: {view: rgba}, notes, errors}. */
export function photoViews(images, size) {
  const masked = {}, notes = {}, errors = {};
  for (const [view, img] of Object.entries(images)) {
    try { const m = maskImage(img, `${view} view`); cutOff(m, `${view} view`); masked[view] = m; notes[view] = m.method; }
    catch (e) { errors[view] = e.message; }
  }
  const framing = frameBoxes(Object.fromEntries(Object.entries(masked).map(([v, m]) => [v, box(m)])), size);
  const views = Object.fromEntries(Object.entries(masked).map(([v, m]) => [v, warp(m, framing[v], size)]));
  return {views, notes, errors};
}

/** views.stack_views + batch_views: {view: rgba} -> Float32Array (1, 4, 4, S, S) in [0, 1], missing = 0. */
export function stackViews(views, size) {
  const out = new Float32Array(VIEW_NAMES.length * 4 * size * size), plane = size * size;
  VIEW_NAMES.forEach((name, v) => {
    const rgba = views[name];
    if (!rgba) return;
    for (let c = 0; c < 4; c++) for (let i = 0; i < plane; i++) out[(v * 4 + c) * plane + i] = rgba[4 * i + c] / 255;
  });
  return out;
}

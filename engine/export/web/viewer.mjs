// A small mesh viewer: flat shading, drag to rotate. WebGL when the browser has it, else a canvas 2D
// painter's algorithm. Nothing loaded from anywhere.

const VS = `attribute vec3 p; attribute vec3 n; uniform mat3 r; uniform vec2 s; varying vec3 vn;
void main() { vec3 q = r * p; vn = r * n; gl_Position = vec4(q.x * s.x, q.y * s.y, -q.z * 0.5, 1.0); }`;
const FS = `precision mediump float; varying vec3 vn; uniform vec3 c;
void main() { float l = abs(dot(normalize(vn), normalize(vec3(0.4, 0.6, 1.0))));
  gl_FragColor = vec4(c * (0.25 + 0.75 * l), 1.0); }`;
const COLOR = [0.35, 0.55, 0.85], BACKGROUND = [0.96, 0.96, 0.97];

function rotation(yaw, pitch) {  // column-major 3x3: pitch about x after yaw about y
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  return [cy, sp * sy, -cp * sy, 0, cp, sp, sy, -sp * cy, cp * cy];
}

function apply(r, x, y, z) {
  return [r[0] * x + r[3] * y + r[6] * z, r[1] * x + r[4] * y + r[7] * z, r[2] * x + r[5] * y + r[8] * z];
}

export class Viewer {
  constructor(canvas) {
    this.canvas = canvas;
    this.yaw = -0.6; this.pitch = 0.35;
    this.gl = canvas.getContext("webgl", {preserveDrawingBuffer: true, antialias: true});
    this.mode = this.gl ? "webgl" : "canvas";
    if (!this.gl) this.ctx = canvas.getContext("2d");
    else this.setup();
    let drag = null;
    canvas.addEventListener("pointerdown", e => { drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointerup", () => { drag = null; });
    canvas.addEventListener("pointermove", e => {
      if (!drag) return;
      this.yaw += (e.clientX - drag[0]) * 0.01;
      this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + (e.clientY - drag[1]) * 0.01));
      drag = [e.clientX, e.clientY];
      this.draw();
    });
  }

  setup() {
    const gl = this.gl, prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, VS], [gl.FRAGMENT_SHADER, FS]]) {
      const sh = gl.createShader(type);
      gl.shaderSource(sh, src); gl.compileShader(sh); gl.attachShader(prog, sh);
    }
    gl.linkProgram(prog); gl.useProgram(prog);
    this.prog = prog; this.buffers = [gl.createBuffer(), gl.createBuffer()];
    gl.enable(gl.DEPTH_TEST);
  }

  /** Show a mesh: vertices Float32Array (V * 3), faces [[a, b, c], ...]; centred and scaled to fit. */
  show(vertices, faces) {
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (let i = 0; i < vertices.length; i++) { lo[i % 3] = Math.min(lo[i % 3], vertices[i]); hi[i % 3] = Math.max(hi[i % 3], vertices[i]); }
    const c = lo.map((l, k) => (l + hi[k]) / 2), scale = 1.7 / Math.max(1e-9, ...hi.map((h, k) => h - lo[k]));
    const pos = new Float32Array(faces.length * 9), nor = new Float32Array(faces.length * 9);
    faces.forEach((f, t) => {
      const p = f.map(i => [0, 1, 2].map(k => (vertices[3 * i + k] - c[k]) * scale));
      const u = [0, 1, 2].map(k => p[1][k] - p[0][k]), v = [0, 1, 2].map(k => p[2][k] - p[0][k]);
      const n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
      for (let j = 0; j < 3; j++) { pos.set(p[j], 9 * t + 3 * j); nor.set(n, 9 * t + 3 * j); }
    });
    this.pos = pos; this.nor = nor; this.count = faces.length * 3;
    if (this.gl) {
      const gl = this.gl;
      [pos, nor].forEach((data, k) => {
        gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers[k]);
        gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
        const loc = gl.getAttribLocation(this.prog, k ? "n" : "p");
        gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
      });
    }
    this.draw();
  }

  draw() {
    if (!this.pos) return;
    const {width: w, height: h} = this.canvas, r = rotation(this.yaw, this.pitch);
    const sx = Math.min(1, h / w), sy = Math.min(1, w / h);
    if (this.gl) {
      const gl = this.gl;
      gl.viewport(0, 0, w, h);
      gl.clearColor(...BACKGROUND, 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.uniformMatrix3fv(gl.getUniformLocation(this.prog, "r"), false, r);
      gl.uniform2f(gl.getUniformLocation(this.prog, "s"), sx, sy);
      gl.uniform3f(gl.getUniformLocation(this.prog, "c"), ...COLOR);
      gl.drawArrays(gl.TRIANGLES, 0, this.count);
      return;
    }
    const ctx = this.ctx, tris = [];
    ctx.fillStyle = `rgb(${BACKGROUND.map(v => v * 255).join(",")})`; ctx.fillRect(0, 0, w, h);
    for (let t = 0; t < this.count / 3; t++) {
      const q = [0, 1, 2].map(j => apply(r, ...this.pos.subarray(9 * t + 3 * j, 9 * t + 3 * j + 3)));
      const n = apply(r, ...this.nor.subarray(9 * t, 9 * t + 3)), len = Math.hypot(...n) || 1;
      const l = Math.abs(n[0] * 0.4 + n[1] * 0.6 + n[2]) / len / Math.hypot(0.4, 0.6, 1);
      tris.push([q[0][2] + q[1][2] + q[2][2], q, 0.25 + 0.75 * l]);
    }
    tris.sort((a, b) => a[0] - b[0]);
    for (const [, q, l] of tris) {
      ctx.fillStyle = `rgb(${COLOR.map(v => Math.round(v * l * 255)).join(",")})`;
      ctx.beginPath();
      q.forEach(([x, y], j) => ctx[j ? "lineTo" : "moveTo"]((x * sx + 1) * w / 2, (1 - y * sy) * h / 2));
      ctx.fill();
    }
  }
}

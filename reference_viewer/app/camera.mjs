// Cameras of the viewer. A pose is the reference world's camera form (reference_generator/actions.py):
// {position: [x, y, z], yaw, pitch}, z up, yaw in degrees counter-clockwise from +x seen from above,
// pitch in degrees up from the horizon. The renderer wants an OpenCV world-to-camera matrix
// (+x right, +y down, +z forward; SPEC.md Appendix B), row-major.
//
// Poses live in the page's z-up frame; the page's up axis (setUpAxis, URL parameter `up`) says which
// world axis that frame's z is: 'z' (the reference world, the default: the frame is the world), '-y'
// (a COLMAP / 3DGS capture, y down), 'y' or '-z'. The frame's x is world x, its y = z x x.
const D2R = Math.PI / 180;

const UP_VECTORS = { z: [0, 0, 1], '-z': [0, 0, -1], y: [0, 1, 0], '-y': [0, -1, 0] };
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const dot3 = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
let upName = 'z';
let frameAxes = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];   // the frame's x, y, z in world coordinates

/** Set the page's up axis ('z', '-z', 'y', '-y'); an unknown name throws. */
export function setUpAxis(name) {
  const z = UP_VECTORS[name];
  if (!z) throw new Error(`up axis must be one of ${Object.keys(UP_VECTORS).join(', ')}, got ${name}`);
  upName = name;
  frameAxes = [[1, 0, 0], cross(z, [1, 0, 0]), z];
}
export const upAxis = () => upName;
/** A vector of the pose frame in world coordinates, and back. */
export const toWorld = (v) => [0, 1, 2].map((i) => frameAxes[0][i] * v[0] + frameAxes[1][i] * v[1] + frameAxes[2][i] * v[2]);
export const toFrame = (w) => frameAxes.map((a) => dot3(a, w));

export const clampPitch = (p) => Math.max(-89, Math.min(89, p));
export const wrapYaw = (y) => ((((y + 180) % 360) + 360) % 360) - 180;

/** Camera axes of a pose in world coordinates: right, down, forward (OpenCV x, y, z). */
export function axes(pose) {
  const y = pose.yaw * D2R, p = pose.pitch * D2R;
  const cp = Math.cos(p), sp = Math.sin(p), cy = Math.cos(y), sy = Math.sin(y);
  const f = [cp * cy, cp * sy, sp];
  const r = [sy, -cy, 0];                       // forward x up, normalized (|r| = 1)
  const d = [f[1] * r[2] - f[2] * r[1], f[2] * r[0] - f[0] * r[2], f[0] * r[1] - f[1] * r[0]]; // f x r
  return { right: r, down: d, forward: f };
}

/** Row-major 4x4 world-to-camera matrix [R | t; 0 0 0 1] with rows right, down, forward (in world axes). */
export function viewMatrix(pose) {
  const { right, down, forward } = axes(pose);
  const p = pose.position;
  const dot = (a) => a[0] * p[0] + a[1] * p[1] + a[2] * p[2];   // frame axes are orthonormal: dots are kept
  const [r, d, f] = [right, down, forward].map(toWorld);
  return [
    r[0], r[1], r[2], -dot(right),
    d[0], d[1], d[2], -dot(down),
    f[0], f[1], f[2], -dot(forward),
    0, 0, 0, 1,
  ];
}

/** The renderer's camera for a pose: horizontal field of view `fovDeg`, centred principal point. */
export function renderCamera(pose, width, height, fovDeg = 70) {
  const fx = width / (2 * Math.tan((fovDeg * D2R) / 2));
  return { viewMatrix: viewMatrix(pose), fx, fy: fx, cx: width / 2, cy: height / 2, width, height };
}

export const copyPose = (p) => ({ position: [...p.position], yaw: p.yaw, pitch: p.pitch });

/**
 * The local free camera: fly (move along the view, look around) and orbit (about a pivot
 * `orbitDist` ahead of the eye). Purely client side: it never talks to the server.
 */
export class FreeCamera {
  constructor(pose = { position: [2.5, 6.5, 1.7], yaw: 0, pitch: 0 }) {
    this.pose = copyPose(pose);
    this.orbitDist = 4;
    this.speed = 3;           // m/s
  }
  set(pose) { this.pose = copyPose(pose); }
  pivot() {
    const f = axes(this.pose).forward, p = this.pose.position;
    return [p[0] + f[0] * this.orbitDist, p[1] + f[1] * this.orbitDist, p[2] + f[2] * this.orbitDist];
  }
  /** Fly: move by (forward, right, up) metres in the view's heading frame (up is world +z). */
  fly(fwd, right, up) {
    const { forward, right: r } = axes(this.pose);
    const p = this.pose.position;
    for (let i = 0; i < 3; i++) p[i] += forward[i] * fwd + r[i] * right;
    p[2] += up;
  }
  /** Look around in place (degrees). */
  look(dyaw, dpitch) {
    this.pose.yaw = wrapYaw(this.pose.yaw + dyaw);
    this.pose.pitch = clampPitch(this.pose.pitch + dpitch);
  }
  /** Orbit about the pivot (degrees): the pivot stays fixed on the view axis. */
  orbit(dyaw, dpitch) {
    const c = this.pivot();
    this.look(dyaw, dpitch);
    this._placeFrom(c);
  }
  /** Dolly toward (factor < 1) or away from the pivot. */
  dolly(factor) {
    const c = this.pivot();
    this.orbitDist = Math.max(0.2, Math.min(500, this.orbitDist * factor));
    this._placeFrom(c);
  }
  _placeFrom(c) {
    const f = axes(this.pose).forward;
    this.pose.position = [c[0] - f[0] * this.orbitDist, c[1] - f[1] * this.orbitDist, c[2] - f[2] * this.orbitDist];
  }
  /**
   * Frame a box {min, max} (world coordinates): look at its centre from slightly above, along world +z
   * when up is y or -y (a capture's first camera looks that way), else along the frame's +x; the
   * distance fits the box's largest side.
   */
  frameBox(box) {
    const c = toFrame([0, 1, 2].map((i) => (box.min[i] + box.max[i]) / 2));
    const ext = Math.max(1e-3, ...[0, 1, 2].map((i) => box.max[i] - box.min[i]));
    const look = toFrame([0, 0, 1]);
    const yaw = Math.abs(look[2]) > 0.5 ? 0 : Math.atan2(look[1], look[0]) / D2R;
    this.pose = { position: [0, 0, 0], yaw, pitch: -20 };
    this.orbitDist = ext * 1.1;
    this.speed = Math.max(0.2, ext / 6);
    this._placeFrom(c);
  }
}

/**
 * The box to frame a SceneStore's live Gaussians (position = the first 3 floats of a slot): per axis
 * the 2nd to 98th percentile of the positions (of an even sample of at most 65 536 slots), so a few
 * far outliers (floaters, a sky shell) do not push the camera away; min / max below 50 Gaussians.
 */
export function storeBounds(store) {
  if (!store || !store.highWater) return null;
  const { data, stride } = store;
  const step = Math.max(1, Math.floor(store.highWater / 65536));
  const xs = [[], [], []];
  for (let s = 0; s < store.highWater; s += step) {
    const b = s * stride;
    if (!(data[b + 3] > -1e29)) continue;       // a freed slot (opacity logit -inf-like)
    for (let i = 0; i < 3; i++) xs[i].push(data[b + i]);
  }
  const n = xs[0].length;
  if (!n) return null;
  const lo = n < 50 ? 0 : Math.floor(0.02 * (n - 1)), hi = n < 50 ? n - 1 : Math.ceil(0.98 * (n - 1));
  const min = [], max = [];
  for (const a of xs) {
    const v = Float64Array.from(a).sort();
    min.push(v[lo]); max.push(v[hi]);
  }
  return { min, max };
}

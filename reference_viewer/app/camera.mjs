// Cameras of the viewer. A pose is the reference world's camera form (reference_generator/actions.py):
// {position: [x, y, z], yaw, pitch}, z up, yaw in degrees counter-clockwise from +x seen from above,
// pitch in degrees up from the horizon. The renderer wants an OpenCV world-to-camera matrix
// (+x right, +y down, +z forward; SPEC.md Appendix B), row-major.
const D2R = Math.PI / 180;

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

/** Row-major 4x4 world-to-camera matrix [R | t; 0 0 0 1] with rows right, down, forward. */
export function viewMatrix(pose) {
  const { right, down, forward } = axes(pose);
  const p = pose.position;
  const dot = (a) => a[0] * p[0] + a[1] * p[1] + a[2] * p[2];
  return [
    right[0], right[1], right[2], -dot(right),
    down[0], down[1], down[2], -dot(down),
    forward[0], forward[1], forward[2], -dot(forward),
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
  /** Frame a bounding box {min, max}: look at its centre from the -x side, slightly above. */
  frameBox(box) {
    const c = [0, 1, 2].map((i) => (box.min[i] + box.max[i]) / 2);
    const ext = Math.max(1e-3, ...[0, 1, 2].map((i) => box.max[i] - box.min[i]));
    this.pose = { position: [0, 0, 0], yaw: 0, pitch: -20 };
    this.orbitDist = ext * 1.1;
    this.speed = Math.max(1, ext / 6);
    this._placeFrom(c);
  }
}

/** Bounding box of the live slots of a SceneStore (position = the first 3 floats of a slot). */
export function storeBounds(store) {
  if (!store || !store.highWater) return null;
  const { data, stride } = store;
  const min = [Infinity, Infinity, Infinity], max = [-Infinity, -Infinity, -Infinity];
  for (let s = 0, b = 0; s < store.highWater; s++, b += stride) {
    if (!(data[b + 3] > -1e29)) continue;       // a freed slot (opacity logit -inf-like)
    for (let i = 0; i < 3; i++) {
      const v = data[b + i];
      if (v < min[i]) min[i] = v;
      if (v > max[i]) max[i] = v;
    }
  }
  return min[0] <= max[0] ? { min, max } : null;
}

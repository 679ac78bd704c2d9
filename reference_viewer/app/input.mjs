// Keyboard and mouse. Two disjoint key sets:
//   LOCAL keys move the viewer's own free camera (no server round trip);
//   WORLD keys send gsd/1 actions (reference_generator/actions.py vocabulary) to the server.
// Keys are matched on KeyboardEvent.code (physical keys, layout independent).

export const LOCAL_KEYS = {
  KeyW: 'forward', KeyS: 'back', KeyA: 'left', KeyD: 'right', KeyR: 'up', KeyF: 'down',
};

export const WORLD_KEYS = {
  ArrowUp: ['move', { distance: 0.25 }], KeyI: ['move', { distance: 0.25 }],
  ArrowDown: ['move', { distance: -0.25 }], KeyK: ['move', { distance: -0.25 }],
  ArrowLeft: ['turn', { degrees: 10 }], KeyJ: ['turn', { degrees: 10 }],
  ArrowRight: ['turn', { degrees: -10 }], KeyL: ['turn', { degrees: -10 }],
  KeyU: ['strafe', { distance: -0.25 }], KeyO: ['strafe', { distance: 0.25 }],
  PageUp: ['look', { degrees: 5 }], KeyT: ['look', { degrees: 5 }],
  PageDown: ['look', { degrees: -5 }], KeyG: ['look', { degrees: -5 }],
  Space: ['jump', {}], KeyE: ['interact', {}], Period: ['idle', {}],
  // KeyP sends a `pose` built from the local camera (handled by the app)
};

export const COMMAND_KEYS = {
  KeyC: 'follow', KeyP: 'pose', Home: 'home', KeyH: 'help', Slash: 'help', KeyX: 'resync', Backquote: 'hud',
  Enter: 'playpause',
};

export const HELP = [
  ['local camera (this browser only)', ''],
  ['W / S, A / D', 'fly forward / back, left / right'],
  ['R / F', 'fly up / down (Shift: 4x faster)'],
  ['left drag', 'orbit about the point ahead'],
  ['right drag, Ctrl+drag', 'look around'],
  ['wheel', 'dolly toward / away from the pivot'],
  ['C', 'follow the world camera on / off'],
  ['Home', 'reset the view (world camera, or frame the scene)'],
  ['world actions (sent to the server)', ''],
  ['Up / Down, I / K', 'move 0.25 m forward / back'],
  ['Left / Right, J / L', 'turn 10 deg left / right'],
  ['U / O', 'strafe 0.25 m left / right'],
  ['PgUp / PgDn, T / G', 'look 5 deg up / down'],
  ['Space', 'jump'],
  ['E', 'interact (open / close the nearest door)'],
  ['. (period)', 'idle: let one world step pass'],
  ['P', 'pose: move the world camera to the local camera'],
  ['other', ''],
  ['X', 'ask for a fresh keyframe (resync)'],
  ['Enter', 'offline playback: play / pause'],
  ['H or ?', 'this help'],
  ['` (backquote)', 'HUD on / off'],
  ['drop a .gsd file', 'offline playback (or use the file button)'],
];

/** Wires DOM events; calls handlers.world(kind, params), handlers.command(name), handlers.local(). */
export class Input {
  constructor(target, handlers) {
    this.h = handlers;
    this.down = new Set();
    this.drag = null;
    this.lastWorld = new Map();  // code -> time of last send (auto-repeat limited to 20/s per key)
    const typing = (e) => e.target && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
    window.addEventListener('keydown', (e) => {
      if (typing(e) || e.altKey || e.metaKey) return;
      const c = e.code;
      if (c === 'ShiftLeft' || c === 'ShiftRight') { this.down.add(c); return; }
      if (c in LOCAL_KEYS) { this.down.add(c); this.h.localKey?.(c); e.preventDefault(); return; }
      if (c in WORLD_KEYS) {
        const now = performance.now();
        if (e.repeat && now - (this.lastWorld.get(c) || 0) < 50) { e.preventDefault(); return; }
        this.lastWorld.set(c, now);
        const [kind, params] = WORLD_KEYS[c];
        this.h.world?.(kind, { ...params }, c);
        e.preventDefault();
        return;
      }
      if (c in COMMAND_KEYS && !e.repeat && !(e.ctrlKey && c !== 'Home')) {
        this.h.command?.(COMMAND_KEYS[c]);
        e.preventDefault();
      }
    });
    window.addEventListener('keyup', (e) => this.down.delete(e.code));
    window.addEventListener('blur', () => this.down.clear());
    target.addEventListener('contextmenu', (e) => e.preventDefault());
    target.addEventListener('pointerdown', (e) => {
      this.drag = { x: e.clientX, y: e.clientY, look: e.button === 2 || e.ctrlKey };
      target.setPointerCapture?.(e.pointerId);
    });
    target.addEventListener('pointermove', (e) => {
      if (!this.drag) return;
      const dx = e.clientX - this.drag.x, dy = e.clientY - this.drag.y;
      this.drag.x = e.clientX; this.drag.y = e.clientY;
      this.h.drag?.(dx, dy, this.drag.look);
    });
    const end = () => { this.drag = null; };
    target.addEventListener('pointerup', end);
    target.addEventListener('pointercancel', end);
    target.addEventListener('wheel', (e) => { this.h.wheel?.(e.deltaY); e.preventDefault(); }, { passive: false });
  }

  /** Fly velocity from the held local keys: [forward, right, up] in {-1, 0, 1}, and a speed factor. */
  flyAxes() {
    const d = this.down;
    const a = [(d.has('KeyW') ? 1 : 0) - (d.has('KeyS') ? 1 : 0), (d.has('KeyD') ? 1 : 0) - (d.has('KeyA') ? 1 : 0),
               (d.has('KeyR') ? 1 : 0) - (d.has('KeyF') ? 1 : 0)];
    return { axes: a, fast: d.has('ShiftLeft') || d.has('ShiftRight') };
  }
}

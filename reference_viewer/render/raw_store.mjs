// A minimal SceneStore (the decoder's contract) over raw slot floats, for tests and benchmarks that do
// not go through the decoder: load(floats, count) fills slots [0, count); write(slot, floats) and
// free(slot) edit single slots and mark them dirty, as the decoder does. The slot layout is the
// decoder's (decoder/layout.mjs), without an SH palette (the SH rest floats are in the slots).
import { restCount, slotStride, SLOT, FREED_OPACITY } from '../decoder/layout.mjs';

export class RawStore {
  constructor(shDegree, capacity) {
    this.shDegree = shDegree;
    this.restCount = restCount(shDegree);
    this.stride = slotStride(shDegree);
    this.capacity = capacity;
    this.data = new Float32Array(capacity * this.stride);
    this.highWater = 0;
    this.live = 0;
    this.generation = 1;
    this._dirty = [];                        // slots written since takeDirty, each once (_marked)
    this._marked = new Uint8Array(capacity);
    this._full = true;
    this.paletteSize = 0;
    this.paletteData = new Float32Array(0);
  }
  takePaletteDirty() { return new Uint32Array(0); }
  load(floats, count) {
    if (count > this.capacity) {
      this.capacity = count;
      this.data = new Float32Array(count * this.stride);
      this._marked = new Uint8Array(count);
    }
    this.data.fill(0);
    this.data.set(floats.subarray(0, count * this.stride));
    this.highWater = count;
    this.live = count;
    this.generation += 1;
    this._full = true;
    this._clearDirty();
  }
  write(slot, floats) {
    if (slot >= this.capacity) {
      const cap = Math.max(slot + 1, Math.ceil(this.capacity * 1.5));
      const d = new Float32Array(cap * this.stride);
      d.set(this.data);
      this.data = d;
      const m = new Uint8Array(cap);
      m.set(this._marked);
      this._marked = m;
      this.capacity = cap;
      this.generation += 1;
      this._full = true;
    }
    this.data.set(floats.subarray(0, this.stride), slot * this.stride);
    if (slot >= this.highWater) { this.live += 1; this.highWater = slot + 1; }
    this._mark(slot);
  }
  free(slot) {
    this.data.fill(0, slot * this.stride, (slot + 1) * this.stride);
    this.data[slot * this.stride + SLOT.OPACITY] = FREED_OPACITY;
    this.live -= 1;
    this._mark(slot);
  }
  takeDirty() {
    const slots = Uint32Array.from(this._dirty).sort();
    const full = this._full;
    this._clearDirty();
    this._full = false;
    return { full, slots };
  }
  _mark(slot) {
    if (!this._marked[slot]) { this._marked[slot] = 1; this._dirty.push(slot); }
  }
  _clearDirty() {
    for (const s of this._dirty) this._marked[s] = 0;
    this._dirty.length = 0;
  }
}

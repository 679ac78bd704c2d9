// GPU radix sort of (u32 key, u32 value) pairs (see SORT_WGSL in shaders.mjs).
import { SORT_WGSL, SORT_BLOCK } from './shaders.mjs';

const U = GPUBufferUsage;
const PARAM_STRIDE = 256;   // one pass's 16-byte params at 256-byte offsets (minUniformBufferOffsetAlignment)
export const SORT_CALLER_OFFSET = 4 * PARAM_STRIDE;   // bytes: past the passes' params, 64 free for the caller's use
export const SORT_PARAMS_BYTES = SORT_CALLER_OFFSET + 64;

export class RadixSort {
  /**
   * 1 to 4 8-bit passes sort the low 8 * passes bits of the keys (the others must be zero or equal). The
   * sorted pairs end in keysA/valsA; callers write the input where `input(passes)` says (A for an even
   * number of passes, B for an odd one, so that the passes' ping-pong ends in A without a copy). The
   * pair count is the CPU's (encode) or the GPU's (encodeUpTo: a shader writes params, bound as
   * storage: u32 [64 k + 0..2] = n, 8 k, blocks of pass k, before the sort runs).
   */
  constructor(device, { label = 'sort' } = {}) {
    this.device = device;
    this.label = label;
    const module = device.createShaderModule({ code: SORT_WGSL, label: 'radix sort' });
    this.layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
        { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
        { binding: 2, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
        { binding: 3, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 4, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 5, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 6, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
      ],
    });
    const layout = device.createPipelineLayout({ bindGroupLayouts: [this.layout] });
    const mk = (entryPoint) => device.createComputePipeline({ layout, compute: { module, entryPoint } });
    this.pHist = mk('hist');
    this.pScanChunks = mk('scanChunks');
    this.pScanSums = mk('scanSums');
    this.pScatter = mk('scatter');
    this.params = device.createBuffer({
      size: SORT_PARAMS_BYTES, usage: U.UNIFORM | U.STORAGE | U.COPY_DST | U.COPY_SRC, label: label + ' params',
    });
    this.capacity = 0;
    this.n = -1;
  }

  /** (Re)allocate for up to `capacity` pairs. keysA/valsA are where callers write input and read output. */
  ensure(capacity) {
    if (capacity <= this.capacity) return false;
    for (const b of [this.keysA, this.valsA, this.keysB, this.valsB, this.hist, this.chunkSums]) b?.destroy();
    const bytes = Math.max(capacity, 1) * 4;
    const usage = U.STORAGE | U.COPY_SRC | U.COPY_DST;
    this.keysA = this.device.createBuffer({ size: bytes, usage, label: this.label + ' keys A' });
    this.valsA = this.device.createBuffer({ size: bytes, usage, label: this.label + ' vals A' });
    this.keysB = this.device.createBuffer({ size: bytes, usage, label: this.label + ' keys B' });
    this.valsB = this.device.createBuffer({ size: bytes, usage, label: this.label + ' vals B' });
    const maxBlocks = Math.ceil(Math.max(capacity, 1) / SORT_BLOCK);
    this.hist = this.device.createBuffer({ size: 256 * maxBlocks * 4, usage: U.STORAGE });
    this.chunkSums = this.device.createBuffer({ size: maxBlocks * 4, usage: U.STORAGE });
    const bg = (k, ki, vi, ko, vo) => this.device.createBindGroup({
      layout: this.layout,
      entries: [{ buffer: this.params, offset: k * PARAM_STRIDE, size: 16 }, ...[ki, vi, ko, vo, this.hist, this.chunkSums].map((buffer) => ({ buffer }))]
        .map((resource, binding) => ({ binding, resource })),
    });
    const A = [this.keysA, this.valsA], B = [this.keysB, this.valsB];
    this.groups = [0, 1, 2, 3].map((k) => (k % 2 === 0 ? bg(k, ...A, ...B) : bg(k, ...B, ...A)));
    this.groupsOdd = [0, 1, 2].map((k) => (k % 2 === 0 ? bg(k, ...B, ...A) : bg(k, ...A, ...B)));
    this.capacity = capacity;
    this.n = -1;
    return true;
  }

  /** [keys, values] buffers that a sort of `passes` passes reads its input from. */
  input(passes = 4) {
    return passes % 2 ? [this.keysB, this.valsB] : [this.keysA, this.valsA];
  }

  /** Record the passes sorting the first n pairs of input(passes) into keysA/valsA (ascending, stable). */
  encode(pass, n, passes = 4) {
    if (n === 0) return;
    const numBlocks = Math.ceil(n / SORT_BLOCK);
    if (n !== this.n) {
      for (let k = 0; k < 4; k++) this.device.queue.writeBuffer(this.params, k * PARAM_STRIDE, new Uint32Array([n, 8 * k, numBlocks, 0]));
      this.n = n;
    }
    this._passes(pass, passes, numBlocks);
  }

  /** The same with the pair count and blocks a shader wrote into params (see the constructor): the
   *  workgroups for the whole capacity are dispatched and those past the count leave at once. Direct
   *  dispatches, not indirect ones: Dawn validates each indirect dispatch with a pass of its own, which
   *  cost ~4 ms a frame on an H100 (a 1.8 ms frame took 6). */
  encodeUpTo(pass, passes) {
    this.n = -1;
    this._passes(pass, passes, Math.ceil(Math.max(this.capacity, 1) / SORT_BLOCK));
  }

  /** Each pass's four dispatches over `blocks` workgroups (those past params' block count leave at once). */
  _passes(pass, passes, blocks) {
    const groups = passes % 2 ? this.groupsOdd : this.groups;
    for (let k = 0; k < passes; k++) {
      pass.setBindGroup(0, groups[k]);
      pass.setPipeline(this.pHist);
      pass.dispatchWorkgroups(blocks);
      pass.setPipeline(this.pScanChunks);
      pass.dispatchWorkgroups(blocks);
      pass.setPipeline(this.pScanSums);
      pass.dispatchWorkgroups(1);
      pass.setPipeline(this.pScatter);
      pass.dispatchWorkgroups(blocks);
    }
  }
}

// GPU radix sort of (u32 key, u32 value) pairs (see SORT_WGSL in shaders.mjs).
import { SORT_WGSL, SORT_BLOCK } from './shaders.mjs';

const U = GPUBufferUsage;

export class RadixSort {
  constructor(device) {
    this.device = device;
    const module = device.createShaderModule({ code: SORT_WGSL, label: 'radix sort' });
    this.layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
        { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
        { binding: 2, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } },
        { binding: 3, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 4, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 5, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
      ],
    });
    const layout = device.createPipelineLayout({ bindGroupLayouts: [this.layout] });
    const mk = (entryPoint) => device.createComputePipeline({ layout, compute: { module, entryPoint } });
    this.pHist = mk('hist');
    this.pScan = mk('scan');
    this.pScatter = mk('scatter');
    this.params = [0, 1, 2, 3].map(() => device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST }));
    this.capacity = 0;
    this.n = -1;
  }

  /** (Re)allocate for up to `capacity` pairs. keysA/valsA are where callers write input and read output. */
  ensure(capacity) {
    if (capacity <= this.capacity) return false;
    for (const b of [this.keysA, this.valsA, this.keysB, this.valsB, this.hist]) b?.destroy();
    const bytes = Math.max(capacity, 1) * 4;
    const usage = U.STORAGE | U.COPY_SRC | U.COPY_DST;
    this.keysA = this.device.createBuffer({ size: bytes, usage, label: 'sort keys A' });
    this.valsA = this.device.createBuffer({ size: bytes, usage, label: 'sort vals A' });
    this.keysB = this.device.createBuffer({ size: bytes, usage, label: 'sort keys B' });
    this.valsB = this.device.createBuffer({ size: bytes, usage, label: 'sort vals B' });
    const maxBlocks = Math.ceil(Math.max(capacity, 1) / SORT_BLOCK);
    this.hist = this.device.createBuffer({ size: 256 * maxBlocks * 4, usage: U.STORAGE });
    const bg = (p, ki, vi, ko, vo) => this.device.createBindGroup({
      layout: this.layout,
      entries: [p, ki, vi, ko, vo, this.hist].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const A = [this.keysA, this.valsA], B = [this.keysB, this.valsB];
    this.groups = [0, 1, 2, 3].map((k) => (k % 2 === 0 ? bg(this.params[k], ...A, ...B) : bg(this.params[k], ...B, ...A)));
    this.capacity = capacity;
    this.n = -1;
    return true;
  }

  /** Record the four passes sorting the first n pairs of keysA/valsA in place (ascending, stable). */
  encode(pass, n) {
    if (n === 0) return;
    const numBlocks = Math.ceil(n / SORT_BLOCK);
    if (n !== this.n) {
      for (let k = 0; k < 4; k++) this.device.queue.writeBuffer(this.params[k], 0, new Uint32Array([n, 8 * k, numBlocks, 0]));
      this.n = n;
    }
    for (let k = 0; k < 4; k++) {
      pass.setBindGroup(0, this.groups[k]);
      pass.setPipeline(this.pHist);
      pass.dispatchWorkgroups(numBlocks);
      pass.setPipeline(this.pScan);
      pass.dispatchWorkgroups(1);
      pass.setPipeline(this.pScatter);
      pass.dispatchWorkgroups(numBlocks);
    }
  }
}

/**
 * The CPU's physical slow path: an access that is not in the first RAM region's fast path —
 * another RAM region, or MMIO (a device on the bus) — and accesses that cross a region's end,
 * split into bytes.
 */
import type { GuestMemory } from '../../machine/memory.js';
import type { Bus } from '../../machine/bus.js';

export function physRead(mem: GuestMemory, mmio: Bus, phys: number, size: 1 | 2 | 4): number {
  const r = mem.regionOf(phys);
  if (r === undefined) return mmio.read(phys, size);
  if (phys + size <= r.base + r.size) {
    const o = phys - r.base;
    return size === 1 ? r.bytes[o]! : size === 2 ? r.view.getUint16(o, true) : r.view.getUint32(o, true);
  }
  let v = 0;
  for (let k = 0; k < size; k++) v += physRead(mem, mmio, phys + k, 1) * 2 ** (8 * k);
  return v;
}

export function physWrite(mem: GuestMemory, mmio: Bus, phys: number, size: 1 | 2 | 4, v: number): void {
  const r = mem.regionOf(phys);
  if (r === undefined) {
    mmio.write(phys, size, v >>> 0);
    return;
  }
  if (phys + size <= r.base + r.size) {
    const o = phys - r.base;
    if (size === 1) r.bytes[o] = v;
    else if (size === 2) r.view.setUint16(o, v, true);
    else r.view.setUint32(o, v >>> 0, true);
    return;
  }
  for (let k = 0; k < size; k++) physWrite(mem, mmio, phys + k, 1, (v >>> (8 * k)) & 0xff);
}

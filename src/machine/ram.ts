/**
 * Where guest RAM goes around the 32-bit MMIO hole: everything below MMIO32_START first, the
 * rest from 4 GiB up, in regions of at most 4 GiB (one ArrayBuffer / one KVM slot each).
 */
import { GiB, MMIO32_START, RAM_ABOVE_4G_START } from './layout.js';

export interface RamRegionSpec {
  base: number;
  size: number;
}

const MAX_REGION = 4 * GiB;

export function ramRegionSpecs(sizeBytes: number): RamRegionSpec[] {
  const low = Math.min(sizeBytes, MMIO32_START);
  const out: RamRegionSpec[] = [{ base: 0, size: low }];
  let rest = sizeBytes - low;
  let base = RAM_ABOVE_4G_START;
  while (rest > 0) {
    const size = Math.min(rest, MAX_REGION);
    out.push({ base, size });
    base += size;
    rest -= size;
  }
  return out;
}

/**
 * KVM's paravirtual clock ("kvm-clock"), as the software CPU offers it: the guest gives the
 * guest-physical address of a pvclock_vcpu_time_info (MSR_KVM_SYSTEM_TIME_NEW) and of a
 * pvclock_wall_clock (MSR_KVM_WALL_CLOCK_NEW); we fill them once, because our TSC runs at a
 * fixed rate from the host's monotonic clock:
 *
 *   time_ns = system_time + ((tsc - tsc_timestamp) * tsc_to_system_mul) >> 32   (tsc_shift 0)
 *
 * plus CpuState.kvmClockOffsetNs, which is 0 unless the guest moved here from KVM: its kvm-clock
 * then continues from the time KVM's showed (refreshSystemTime rewrites the structure KVM left,
 * with KVM's scale, in ours at the restore).
 *
 * Layouts from Linux's include/asm/pvclock-abi.h. Addresses come from the guest: a structure
 * that does not lie entirely in RAM is ignored (the guest then sees no clock updates).
 */
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import type { SystemHost } from '../system-api.js';

export const MSR_KVM_WALL_CLOCK_NEW = 0x4b564d00;
export const MSR_KVM_SYSTEM_TIME_NEW = 0x4b564d01;
/** The old numbers (same layouts). */
export const MSR_KVM_WALL_CLOCK = 0x11;
export const MSR_KVM_SYSTEM_TIME = 0x12;

const PVCLOCK_TSC_STABLE_BIT = 1 << 0;
const TIME_INFO_SIZE = 32;
const WALL_CLOCK_SIZE = 12;

/** ns per TSC tick as a 32.32 fixed-point multiplier (TSC_FREQUENCY_HZ ≥ 1 GHz). */
const TSC_TO_NS_MUL = Math.round((1e9 / TSC_FREQUENCY_HZ) * 2 ** 32);

/** Current TSC and the matching guest time in ns (time 0 = TSC 0, plus the offset of a guest moved from KVM). */
function now(h: SystemHost): { tsc: number; ns: number } {
  const lo = h.readTsc() >>> 0;
  const tsc = (h.scratchHi >>> 0) * 2 ** 32 + lo;
  return { tsc, ns: (tsc * 1e9) / TSC_FREQUENCY_HZ + h.s.kvmClockOffsetNs };
}

/** MSR_KVM_SYSTEM_TIME(_NEW) write: bit 0 enables, the rest is the structure's address. */
export function writeSystemTime(h: SystemHost, lo: number, hi: number): void {
  if ((lo & 1) === 0) return;
  const gpa = hi * 2 ** 32 + ((lo & ~1) >>> 0);
  const mem = h.memory;
  if (!mem.isRam(gpa, TIME_INFO_SIZE)) return;
  const { tsc, ns } = now(h);
  const tscHi = Math.floor(tsc / 2 ** 32);
  const nsInt = Math.floor(ns);
  mem.write32(gpa + 0, 1); // version odd: update in progress
  mem.write32(gpa + 8, tsc >>> 0);
  mem.write32(gpa + 12, tscHi >>> 0);
  mem.write32(gpa + 16, nsInt >>> 0);
  mem.write32(gpa + 20, Math.floor(nsInt / 2 ** 32) >>> 0);
  mem.write32(gpa + 24, TSC_TO_NS_MUL >>> 0);
  mem.write8(gpa + 28, 0); // tsc_shift
  mem.write8(gpa + 29, PVCLOCK_TSC_STABLE_BIT);
  mem.write32(gpa + 0, 2); // version even: consistent
}

/**
 * After a restore, with the guest's system-time MSR value (lo, hi): where the structure there
 * holds another scale than ours (KVM's, after a move from the kvm engine), write it again with
 * ours, so the guest stops extrapolating with KVM's rate. Ours already: left as it is.
 */
export function refreshSystemTime(h: SystemHost, lo: number, hi: number): void {
  if ((lo & 1) === 0) return;
  const gpa = hi * 2 ** 32 + ((lo & ~1) >>> 0);
  const mem = h.memory;
  if (!mem.isRam(gpa, TIME_INFO_SIZE)) return;
  if (mem.read32(gpa + 24) === TSC_TO_NS_MUL >>> 0 && mem.read8(gpa + 28) === 0) return;
  writeSystemTime(h, lo, hi);
}

/** MSR_KVM_WALL_CLOCK(_NEW) write: the wall-clock time at guest time 0. */
export function writeWallClock(h: SystemHost, lo: number, hi: number): void {
  const gpa = hi * 2 ** 32 + (lo >>> 0);
  const mem = h.memory;
  if (!mem.isRam(gpa, WALL_CLOCK_SIZE)) return;
  const bootNs = Date.now() * 1e6 - now(h).ns;
  const sec = Math.floor(bootNs / 1e9);
  const nsec = Math.floor(bootNs - sec * 1e9);
  mem.write32(gpa + 0, 1);
  mem.write32(gpa + 4, sec >>> 0);
  mem.write32(gpa + 8, nsec >>> 0);
  mem.write32(gpa + 0, 2);
}

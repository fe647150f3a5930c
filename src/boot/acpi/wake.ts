/**
 * The firmware's part of an ACPI S3 wake (ACPI 6.5 §7.4.2.4 and §5.2.10, the FACS): where the
 * boot CPU starts once a wake event ends the sleeping state. Before it sleeps, the OS writes its
 * waking vector into the FACS; our FACS is at the fixed ACPI_FACS_START, as a BIOS knows where
 * it put its own. Guest RAM is the guest's to scribble on, so every field is checked:
 *
 * - X_Firmware_Waking_Vector (offset 24, FACS version >= 1) non-zero: it wins. Our FACS flags do
 *   not offer 64BIT_WAKE_SUPPORTED_F, so the OS gets 32-bit protected mode, paging off, flat
 *   segments, at that address (which must be RAM below 4 GiB).
 * - else Firmware_Waking_Vector (offset 12): real mode at CS = vector >> 4, IP = vector & 0xF; it
 *   must be non-zero, below 1 MiB and RAM. Linux sets this one (acpi_set_waking_vector, with
 *   the 64-bit field 0) to its real-mode wakeup trampoline.
 *
 * Anything else has no wake target: the caller resets the machine, as SeaBIOS does when it
 * finds no resume vector.
 */
import type { EntryState } from '../../machine/engine.js';
import { ACPI_FACS_START, HIGH_MEMORY_START } from '../../machine/layout.js';
import type { GuestMemory } from '../../machine/memory.js';
import { FACS_FIRMWARE_WAKING_VECTOR, FACS_SIZE, FACS_VERSION, FACS_X_FIRMWARE_WAKING_VECTOR } from './tables.js';

export type WakeTarget = { ok: true; entry: EntryState } | { ok: false; reason: string };

const FOUR_GIB = 2 ** 32;
const FACS_SIGNATURE = 0x53434146; // "FACS", little-endian

/** Where the boot CPU starts on an S3 wake, from the waking vectors in the FACS at `facs`. */
export function facsWakeTarget(memory: GuestMemory, facs = ACPI_FACS_START): WakeTarget {
  if (!memory.isRam(facs, FACS_SIZE)) return { ok: false, reason: `the FACS at 0x${facs.toString(16)} is not in RAM` };
  if (memory.read32(facs) !== FACS_SIGNATURE) return { ok: false, reason: 'the FACS signature was overwritten' };
  const x = memory.read64(facs + FACS_X_FIRMWARE_WAKING_VECTOR);
  if (memory.read8(facs + FACS_VERSION) >= 1 && x !== 0n) {
    const hex = x.toString(16);
    if (x >= BigInt(FOUR_GIB)) return { ok: false, reason: `X_Firmware_Waking_Vector 0x${hex} is above 4 GiB (a 32-bit wake)` };
    const rip = Number(x);
    if (!memory.isRam(rip, 1)) return { ok: false, reason: `X_Firmware_Waking_Vector 0x${hex} is not RAM` };
    // no GDT of the firmware's: a limit of 0 makes the loader's segments flat (entry.ts)
    return { ok: true, entry: { mode: 'protected32', rip, regs: {}, gdt: { base: 0, limit: 0, cs: 0x10, ds: 0x18 } } };
  }
  const vector = memory.read32(facs + FACS_FIRMWARE_WAKING_VECTOR) >>> 0;
  const hex = vector.toString(16);
  if (vector === 0) return { ok: false, reason: 'the OS left no waking vector in the FACS' };
  if (vector >= HIGH_MEMORY_START) return { ok: false, reason: `Firmware_Waking_Vector 0x${hex} is above 1 MiB (real mode cannot reach it)` };
  if (!memory.isRam(vector, 1)) return { ok: false, reason: `Firmware_Waking_Vector 0x${hex} is not RAM` };
  return { ok: true, entry: { mode: 'real16', rip: vector, realCs: vector >>> 4, regs: {} } };
}

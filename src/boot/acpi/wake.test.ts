import { describe, expect, it } from 'vitest';
import { ACPI_FACS_START, MiB } from '../../machine/layout.js';
import { GuestMemory } from '../../machine/memory.js';
import { FACS_FIRMWARE_WAKING_VECTOR, FACS_VERSION, FACS_X_FIRMWARE_WAKING_VECTOR, writeAcpiTables } from './tables.js';
import { facsWakeTarget } from './wake.js';

function machine(ram = 2 * MiB): GuestMemory {
  const m = new GuestMemory([{ base: 0, size: ram }]);
  writeAcpiTables(m, { cpus: 1, s3: true });
  return m;
}

describe('facsWakeTarget (the S3 waking vector in the FACS)', () => {
  it('real mode at CS = vector >> 4, IP = vector & 0xF from Firmware_Waking_Vector', () => {
    const m = machine();
    m.write32(ACPI_FACS_START + FACS_FIRMWARE_WAKING_VECTOR, 0x9a123);
    const t = facsWakeTarget(m);
    expect(t).toEqual({ ok: true, entry: { mode: 'real16', rip: 0x9a123, realCs: 0x9a12, regs: {} } });
  });

  it('X_Firmware_Waking_Vector, when set, wins: flat 32-bit protected mode (no 64BIT_WAKE_SUPPORTED_F)', () => {
    const m = machine();
    m.write32(ACPI_FACS_START + FACS_FIRMWARE_WAKING_VECTOR, 0x9a000);
    m.write64(ACPI_FACS_START + FACS_X_FIRMWARE_WAKING_VECTOR, 0x12_3450n);
    const t = facsWakeTarget(m);
    expect(t.ok && t.entry.mode).toBe('protected32');
    expect(t.ok && t.entry.rip).toBe(0x12_3450);
    // a version-0 FACS has no X field: the 32-bit vector then
    m.write8(ACPI_FACS_START + FACS_VERSION, 0);
    expect(facsWakeTarget(m)).toMatchObject({ ok: true, entry: { mode: 'real16', rip: 0x9a000 } });
  });

  it('refuses what a hostile guest leaves: no vector, above 1 MiB, outside RAM, a clobbered FACS', () => {
    const m = machine();
    expect(facsWakeTarget(m)).toEqual({ ok: false, reason: 'the OS left no waking vector in the FACS' });
    m.write32(ACPI_FACS_START + FACS_FIRMWARE_WAKING_VECTOR, 0x10_0000);
    expect(facsWakeTarget(m)).toMatchObject({ ok: false, reason: expect.stringMatching(/above 1 MiB/) });
    m.write32(ACPI_FACS_START + FACS_FIRMWARE_WAKING_VECTOR, 0xffff_ffff);
    expect(facsWakeTarget(m)).toMatchObject({ ok: false, reason: expect.stringMatching(/above 1 MiB/) });
    m.write64(ACPI_FACS_START + FACS_X_FIRMWARE_WAKING_VECTOR, 0x1_0000_0000n);
    expect(facsWakeTarget(m)).toMatchObject({ ok: false, reason: expect.stringMatching(/above 4 GiB/) });
    m.write64(ACPI_FACS_START + FACS_X_FIRMWARE_WAKING_VECTOR, 0xf000_0000n);
    expect(facsWakeTarget(m)).toMatchObject({ ok: false, reason: expect.stringMatching(/not RAM/) });
    m.write64(ACPI_FACS_START + FACS_X_FIRMWARE_WAKING_VECTOR, 0n);
    m.write32(ACPI_FACS_START, 0);
    expect(facsWakeTarget(m)).toMatchObject({ ok: false, reason: expect.stringMatching(/signature/) });
    // real-mode vector into a hole of the guest's memory map
    const holey = new GuestMemory([{ base: 0, size: 0x9_0000 }, { base: 0xe_0000, size: 0x2_0000 }]);
    writeAcpiTables(holey, { cpus: 1 });
    holey.write32(ACPI_FACS_START + FACS_FIRMWARE_WAKING_VECTOR, 0xa_0000);
    expect(facsWakeTarget(holey)).toMatchObject({ ok: false, reason: expect.stringMatching(/not RAM/) });
    expect(facsWakeTarget(new GuestMemory([{ base: 0, size: MiB / 2 }]))).toMatchObject({ ok: false, reason: expect.stringMatching(/not in RAM/) });
  });
});

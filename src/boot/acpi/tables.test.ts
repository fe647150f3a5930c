import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ACPI_FACS_START,
  ACPI_RSDP_START,
  ACPI_S3_SLP_TYP,
  ACPI_S5_SLP_TYP,
  ACPI_SCI_IRQ,
  ACPI_TABLES_END,
  ACPI_TABLES_START,
  IOAPIC_START,
  LAPIC_START,
  MiB,
  PORT_ACPI_GPE0,
  PORT_ACPI_PM1A_CNT,
  PORT_ACPI_PM1A_EVT,
  PORT_ACPI_PM_TMR,
} from '../../machine/layout.js';
import { GuestMemory } from '../../machine/memory.js';
import { buildAcpiTables, checksum, writeAcpiTables, type AcpiTables } from './tables.js';

const IASL = ['/usr/bin/iasl', '/usr/local/bin/iasl'].find((p) => existsSync(p));

const byName = (t: AcpiTables, sig: string): { address: number; bytes: Uint8Array; v: DataView } => {
  const tb = t.tables.find((x) => x.signature === sig);
  if (!tb) throw new Error(`no ${sig}`);
  return { ...tb, v: new DataView(tb.bytes.buffer, tb.bytes.byteOffset, tb.bytes.byteLength) };
};

describe('ACPI tables', () => {
  const t = buildAcpiTables({ cpus: 4, pci: true });

  it('have valid lengths and checksums and fit the BIOS area', () => {
    expect(t.rsdp).toBe(ACPI_RSDP_START);
    expect(checksum(t.rsdpBytes, 0, 20)).toBe(0);
    expect(checksum(t.rsdpBytes)).toBe(0);
    expect(new TextDecoder().decode(t.rsdpBytes.subarray(0, 8))).toBe('RSD PTR ');
    expect(t.rsdpBytes[15]).toBe(2);
    for (const tb of t.tables) {
      const v = new DataView(tb.bytes.buffer);
      expect(v.getUint32(4, true), tb.signature).toBe(tb.bytes.length);
      if (tb.signature !== 'FACS') expect(checksum(tb.bytes), tb.signature).toBe(0);
      expect(tb.address).toBeGreaterThanOrEqual(ACPI_TABLES_START);
      expect(tb.address + tb.bytes.length).toBeLessThanOrEqual(ACPI_TABLES_END + 1);
    }
    expect(byName(t, 'FACS').address % 64).toBe(0);
    expect(byName(t, 'FACS').address).toBe(ACPI_FACS_START); // where an S3 wake reads the waking vector
  });

  it('link RSDP -> XSDT/RSDT -> FADT, MADT and FADT -> FACS, DSDT', () => {
    const rv = new DataView(t.rsdpBytes.buffer);
    const xsdt = byName(t, 'XSDT');
    const rsdt = byName(t, 'RSDT');
    expect(Number(rv.getBigUint64(24, true))).toBe(xsdt.address);
    expect(rv.getUint32(16, true)).toBe(rsdt.address);
    const fadt = byName(t, 'FACP');
    const madt = byName(t, 'APIC');
    expect([Number(xsdt.v.getBigUint64(36, true)), Number(xsdt.v.getBigUint64(44, true))]).toEqual([fadt.address, madt.address]);
    expect([rsdt.v.getUint32(36, true), rsdt.v.getUint32(40, true)]).toEqual([fadt.address, madt.address]);
    expect(fadt.v.getUint32(36, true)).toBe(byName(t, 'FACS').address);
    expect(fadt.v.getUint32(40, true)).toBe(byName(t, 'DSDT').address);
    expect(Number(fadt.v.getBigUint64(140, true))).toBe(byName(t, 'DSDT').address);
    expect(fadt.v.getBigUint64(132, true)).toBe(0n); // only one FACS pointer
  });

  it('describe the fixed hardware in the FADT', () => {
    const f = byName(t, 'FACP').v;
    expect(f.getUint16(46, true)).toBe(ACPI_SCI_IRQ);
    expect(f.getUint32(48, true)).toBe(0); // SMI_CMD
    expect(f.getUint32(56, true)).toBe(PORT_ACPI_PM1A_EVT);
    expect(f.getUint32(64, true)).toBe(PORT_ACPI_PM1A_CNT);
    expect(f.getUint32(76, true)).toBe(PORT_ACPI_PM_TMR);
    expect(f.getUint32(80, true)).toBe(PORT_ACPI_GPE0);
    expect([f.getUint8(88), f.getUint8(89), f.getUint8(91), f.getUint8(92)]).toEqual([4, 2, 4, 8]);
    expect(f.getUint16(109, true) & 0x2).toBe(0x2); // 8042 present
    expect(f.getUint32(112, true) & (1 << 10)).not.toBe(0); // RESET_REG_SUP
    expect(f.getUint32(112, true) & (1 << 6)).toBe(0); // FIX_RTC clear: RTC_STS/RTC_EN are in PM1
    expect(f.getUint8(116)).toBe(1); // reset register in system I/O
    expect(Number(f.getBigUint64(120, true))).toBe(0xcf9);
    expect(f.getUint8(128)).toBe(0x06);
    expect(Number(f.getBigUint64(208 + 4, true))).toBe(PORT_ACPI_PM_TMR); // X_PM_TMR_BLK
  });

  it('list every vCPU, the IOAPIC and the overrides in the MADT', () => {
    const m = byName(t, 'APIC');
    expect(m.v.getUint32(36, true)).toBe(LAPIC_START);
    expect(m.v.getUint32(40, true)).toBe(1);
    const entries: number[][] = [];
    for (let o = 44; o < m.bytes.length; o += m.bytes[o + 1]!) entries.push([...m.bytes.subarray(o, o + m.bytes[o + 1]!)]);
    expect(entries.filter((e) => e[0] === 0).map((e) => e[3])).toEqual([0, 1, 2, 3]);
    const ioapic = entries.find((e) => e[0] === 1)!;
    expect(new DataView(Uint8Array.from(ioapic).buffer).getUint32(4, true)).toBe(IOAPIC_START);
    expect(entries.filter((e) => e[0] === 2).map((e) => [e[3], e[4], e[8]])).toEqual([
      [0, 2, 0],
      [9, 9, 0x0d],
    ]);
    expect(entries.find((e) => e[0] === 4)).toEqual([4, 6, 0xff, 0, 0, 1]);
    expect(() => buildAcpiTables({ cpus: 0 })).toThrow(/1 to 254/);
    expect(() => buildAcpiTables({ cpus: 255 })).toThrow(/1 to 254/);
  });

  it('put \\_S5 in the DSDT', () => {
    const d = byName(t, 'DSDT').bytes;
    // NameOp "_S5_" PackageOp len 4 elements: BytePrefix SLP_TYP BytePrefix SLP_TYP Zero Zero
    const s5 = Uint8Array.from([0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08, 0x04, 0x0a, ACPI_S5_SLP_TYP, 0x0a, ACPI_S5_SLP_TYP, 0, 0]);
    expect(Buffer.from(d).includes(Buffer.from(s5))).toBe(true);
  });

  it('put \\_S3 in the DSDT only when asked to (the engine can wake the guest)', () => {
    // NameOp "_S3_" PackageOp len 4 elements: One One Zero Zero (SLP_TYP 1 is AML's One)
    const s3 = Buffer.from([0x08, 0x5f, 0x53, 0x33, 0x5f, 0x12, 0x06, 0x04, 0x01, 0x01, 0, 0]);
    expect(ACPI_S3_SLP_TYP).toBe(1);
    expect(ACPI_S3_SLP_TYP).not.toBe(ACPI_S5_SLP_TYP);
    expect(Buffer.from(byName(t, 'DSDT').bytes).includes(Buffer.from('_S3_'))).toBe(false);
    const d = Buffer.from(byName(buildAcpiTables({ cpus: 1, s3: true }), 'DSDT').bytes);
    expect(d.includes(s3)).toBe(true);
  });

  it('route PCI INTx in \\_SB.PCI0._PRT: slot 1 INTA# is GSI 17', () => {
    const d = Buffer.from(byName(t, 'DSDT').bytes);
    // NameOp "_PRT" PackageOp
    expect(d.includes(Buffer.from([0x08, 0x5f, 0x50, 0x52, 0x54, 0x12]))).toBe(true);
    // Package (4) { DWordConst 0x0001FFFF, Zero, Zero, BytePrefix 17 }
    expect(d.includes(Buffer.from([0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x0a, 17]))).toBe(true);
    expect(Buffer.from(buildAcpiTables({ cpus: 1 }).tables[0]!.bytes).includes(Buffer.from('_PRT'))).toBe(false);
  });

  it('are written into guest memory', () => {
    const m = new GuestMemory([{ base: 0, size: 2 * MiB }]);
    const w = writeAcpiTables(m, { cpus: 1 });
    expect(m.readBytes(ACPI_RSDP_START, 8)).toEqual(new TextEncoder().encode('RSD PTR '));
    const dsdt = w.tables.find((x) => x.signature === 'DSDT')!;
    expect(m.readBytes(dsdt.address, dsdt.bytes.length)).toEqual(dsdt.bytes);
  });

  it.skipIf(!IASL)('disassemble cleanly with iasl -d (needs acpica-tools)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tv-acpi-'));
    try {
      for (const opts of [{ cpus: 1 }, { cpus: 8, pci: true, com1: false, s3: true }]) {
        const tables = buildAcpiTables(opts);
        // The RSDP is not a table with a standard header; this iasl refuses it, so it is checked above.
        const files = tables.tables.map((x): [string, Uint8Array] => [x.signature.toLowerCase(), x.bytes]);
        for (const [name, bytes] of files) {
          const file = join(dir, `${name}.dat`);
          writeFileSync(file, bytes);
          const r = spawnSync(IASL!, ['-d', file], { encoding: 'utf8', cwd: dir });
          const out = `${r.stdout}\n${r.stderr}`;
          expect(r.status, `${name}: ${out}`).toBe(0);
          expect(out, name).not.toMatch(/Error|Warning/i);
          expect(existsSync(join(dir, `${name}.dsl`)), name).toBe(true);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

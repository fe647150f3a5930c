/**
 * ACPI tables for typevisor's machine (ACPI 6.x): RSDP -> XSDT/RSDT -> FADT (-> FACS, DSDT),
 * MADT. Built as plain byte arrays at fixed addresses from ACPI_TABLES_START (so they are
 * testable without guest memory), then copied into the BIOS area where Linux's legacy scan of
 * 0xe0000..0xfffff also finds the RSDP.
 *
 * Fixed hardware described by the FADT: PM1a event/control blocks, the PM timer and GPE0 at
 * the PORT_ACPI_* ports; SCI on ACPI_SCI_IRQ; no SMI command port (the machine is always in
 * ACPI mode, so the OS never does the SMI handshake: the PM device must report SCI_EN = 1);
 * reset by writing 0x06 to port 0xcf9. Sleep states: \_S5 (power off), and \_S3 (suspend to
 * RAM) when the engine can wake the guest (AcpiOptions.s3); the FACS, first at ACPI_FACS_START,
 * holds the waking vector the OS leaves for an S3 wake (wake.ts).
 */
import {
  ACPI_FACS_START,
  ACPI_RSDP_START,
  ACPI_S3_SLP_TYP,
  ACPI_S5_SLP_TYP,
  ACPI_SCI_IRQ,
  ACPI_TABLES_END,
  ACPI_TABLES_START,
  IOAPIC_START,
  IRQ_COM1,
  LAPIC_START,
  PCI_MMIO_SIZE,
  PCI_MMIO_START,
  pciIntxGsi,
  PORT_ACPI_GPE0,
  PORT_ACPI_PM1A_CNT,
  PORT_ACPI_PM1A_EVT,
  PORT_ACPI_PM_TMR,
  PORT_COM1,
  PORT_PCI_CONFIG_ADDRESS,
  PORT_PVPANIC,
  PORT_RESET_CONTROL,
} from '../../machine/layout.js';
import type { GuestMemory } from '../../machine/memory.js';
import { BootError } from '../errors.js';
import * as aml from './aml.js';

export const OEM_ID = 'TYPEVI';
export const OEM_TABLE_ID = 'TYPEVISR';
const CREATOR_ID = 'TYPV';
const HEADER_SIZE = 36;
export const RSDP_SIZE = 36;
/** Most vCPUs the MADT describes (8-bit xAPIC IDs; 0xff is broadcast). */
export const MAX_ACPI_CPUS = 254;
/** The reset register value: PIIX RCR "full reset" (SYS_RST | RST_CPU). */
export const ACPI_RESET_VALUE = 0x06;

export interface AcpiOptions {
  /** Number of vCPUs (one Processor Local APIC entry each, APIC IDs 0..cpus-1). */
  cpus: number;
  /** Describe a PCI host bridge \_SB.PCI0 (config ports 0xcf8, bus 0-255, the PCI MMIO window). */
  pci?: boolean;
  /** Describe COM1 (PNP0501) at PORT_COM1 / IRQ_COM1. Default true. */
  com1?: boolean;
  /** Describe the pvpanic port (QEMU0001) at PORT_PVPANIC. Default true. */
  pvpanic?: boolean;
  /** IOAPIC ID in the MADT. Default 0 (as QEMU; the IOAPIC's ID register resets to 0). */
  ioapicId?: number;
  /**
   * Advertise S3 (suspend to RAM) with a \_S3 package: only on an engine that can stop the
   * vCPUs and restart them at the FACS waking vector (the bt engine). Default false: a guest
   * never offered S3 never tries it.
   */
  s3?: boolean;
}

export interface AcpiTable {
  signature: string;
  address: number;
  bytes: Uint8Array;
}

export interface AcpiTables {
  /** Address of the RSDP (for boot_params.acpi_rsdp_addr). */
  rsdp: number;
  rsdpBytes: Uint8Array;
  /** Every table with its guest address, in placement order. */
  tables: AcpiTable[];
}

/** Sum of all bytes mod 256. */
export function checksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let s = 0;
  for (let i = start; i < end; i++) s = (s + bytes[i]!) & 0xff;
  return s;
}

/** Set the checksum byte at `at` so bytes[start, end) sums to zero. */
function fixChecksum(bytes: Uint8Array, at: number, start = 0, end = bytes.length): void {
  bytes[at] = 0;
  bytes[at] = (0x100 - checksum(bytes, start, end)) & 0xff;
}

function ascii(v: DataView, off: number, s: string): void {
  for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i));
}

/** A table with its standard 36-byte header filled (checksum done by finish()). */
function table(signature: string, length: number, revision: number): { bytes: Uint8Array; v: DataView } {
  const bytes = new Uint8Array(length);
  const v = new DataView(bytes.buffer);
  ascii(v, 0, signature);
  v.setUint32(4, length, true);
  v.setUint8(8, revision);
  ascii(v, 10, OEM_ID);
  ascii(v, 16, OEM_TABLE_ID);
  v.setUint32(24, 1, true); // OEM revision
  ascii(v, 28, CREATOR_ID);
  v.setUint32(32, 1, true); // creator revision
  return { bytes, v };
}

function finish(bytes: Uint8Array): Uint8Array {
  fixChecksum(bytes, 9);
  return bytes;
}

// ---- Generic Address Structure ------------------------------------------------------------------
const GAS_SYSTEM_IO = 1;
const ACCESS_BYTE = 1;
const ACCESS_WORD = 2;
const ACCESS_DWORD = 3;

function gas(v: DataView, off: number, port: number, bitWidth: number, accessSize: number): void {
  v.setUint8(off, GAS_SYSTEM_IO);
  v.setUint8(off + 1, bitWidth);
  v.setUint8(off + 2, 0); // bit offset
  v.setUint8(off + 3, accessSize);
  v.setBigUint64(off + 4, BigInt(port), true);
}

// ---- DSDT -----------------------------------------------------------------------------------------
/**
 * \_SB.PCI0._PRT: every slot's INTA#..INTD# straight to its IOAPIC GSI (no link devices):
 * Package { address 0xSSSS_FFFF (any function), pin 0..3, source 0, GSI }.
 */
function pciRoutingTable(): Uint8Array {
  const entries: Uint8Array[] = [];
  for (let slot = 1; slot < 32; slot++) {
    for (let pin = 0; pin < 4; pin++) {
      entries.push(aml.pkg([aml.integer(((slot << 16) | 0xffff) >>> 0), aml.integer(pin), aml.integer(0), aml.integer(pciIntxGsi(slot, pin))]));
    }
  }
  return aml.pkg(entries);
}

export function buildDsdt(opts: AcpiOptions): Uint8Array {
  const sb: Uint8Array[] = [];
  if (opts.com1 ?? true) {
    sb.push(
      aml.device('COM1', [
        aml.name('_HID', aml.eisaId('PNP0501')),
        aml.name('_UID', aml.integer(1)),
        aml.name('_CRS', aml.resourceTemplate([aml.ioPort(PORT_COM1, PORT_COM1, 0, 8), aml.irqNoFlags([IRQ_COM1])])),
      ]),
    );
  }
  if (opts.pvpanic ?? true) {
    // the guest's pvpanic driver binds to QEMU0001 and takes the port from _CRS
    sb.push(
      aml.device('PEVT', [
        aml.name('_HID', aml.string('QEMU0001')),
        aml.name('_CRS', aml.resourceTemplate([aml.ioPort(PORT_PVPANIC, PORT_PVPANIC, 1, 1)])),
        aml.name('_STA', aml.integer(0x0f)),
      ]),
    );
  }
  if (opts.pci) {
    const mmioEnd = PCI_MMIO_START + PCI_MMIO_SIZE - 1;
    sb.push(
      aml.device('PCI0', [
        aml.name('_HID', aml.eisaId('PNP0A03')),
        aml.name('_ADR', aml.integer(0)),
        aml.name('_BBN', aml.integer(0)),
        aml.name('_UID', aml.integer(0)),
        aml.name(
          '_CRS',
          aml.resourceTemplate([
            aml.wordBusNumber(0, 0xff),
            aml.ioPort(PORT_PCI_CONFIG_ADDRESS, PORT_PCI_CONFIG_ADDRESS, 1, 8),
            aml.wordIo(0x0000, PORT_PCI_CONFIG_ADDRESS - 1),
            aml.wordIo(0x0d00, 0xffff),
            aml.dwordMemory(PCI_MMIO_START, mmioEnd),
          ]),
        ),
        aml.name('_PRT', pciRoutingTable()),
      ]),
    );
  }
  const sleep: Uint8Array[] = [];
  // \_S3 like \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved}; Linux offers `mem` once it exists
  if (opts.s3) sleep.push(aml.name('_S3', aml.pkg([aml.integer(ACPI_S3_SLP_TYP), aml.integer(ACPI_S3_SLP_TYP), aml.integer(0), aml.integer(0)])));
  const body = aml.concat([
    ...sleep,
    // \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved}; Linux writes SLP_TYPa | SLP_EN to PM1a_CNT to power off.
    aml.name('_S5', aml.pkg([aml.integer(ACPI_S5_SLP_TYP), aml.integer(ACPI_S5_SLP_TYP), aml.integer(0), aml.integer(0)])),
    aml.scope('\\_SB', sb),
  ]);
  const { bytes } = table('DSDT', HEADER_SIZE + body.length, 2); // revision 2: 64-bit integers
  bytes.set(body, HEADER_SIZE);
  return finish(bytes);
}

// ---- FACS -----------------------------------------------------------------------------------------
export const FACS_SIZE = 64;
/** FACS fields (ACPI 6.5 table 5.14) the OS writes before a sleep and the firmware reads on a wake. */
export const FACS_FIRMWARE_WAKING_VECTOR = 12;
export const FACS_FLAGS = 16;
export const FACS_X_FIRMWARE_WAKING_VECTOR = 24;
export const FACS_VERSION = 32;
export const FACS_OSPM_FLAGS = 36;
export function buildFacs(): Uint8Array {
  const bytes = new Uint8Array(FACS_SIZE);
  const v = new DataView(bytes.buffer);
  ascii(v, 0, 'FACS');
  v.setUint32(4, FACS_SIZE, true);
  v.setUint8(FACS_VERSION, 2); // version (ACPI 4.0+)
  // Flags stay 0: no S4BIOS, and no 64BIT_WAKE_SUPPORTED_F — a wake through
  // X_Firmware_Waking_Vector enters 32-bit protected mode (src/boot/acpi/wake.ts).
  return bytes; // the FACS has no checksum
}

// ---- FADT -----------------------------------------------------------------------------------------
export const FADT_SIZE = 276;
const FADT_REVISION = 6;
const FADT_MINOR_REVISION = 0;
// Flags (ACPI 6.5 table 5.10). PWR_BUTTON (bit 4) stays clear: the power button is the fixed
// feature in PM1 (PWRBTN_STS/EN, src/devices/acpi/pm.ts), the host's graceful stop.
const FADT_WBINVD = 1 << 0;
const FADT_PROC_C1 = 1 << 2;
const FADT_SLP_BUTTON = 1 << 5; // no fixed-feature sleep button
// FIX_RTC (bit 6) stays clear: the RTC alarm's wake status is PM1's RTC_STS/RTC_EN.
const FADT_RESET_REG_SUP = 1 << 10;
// IA-PC boot architecture flags.
const BOOT_ARCH_LEGACY_DEVICES = 1 << 0;
const BOOT_ARCH_8042 = 1 << 1;
const BOOT_ARCH_VGA_NOT_PRESENT = 1 << 2;
/** MC146818 CMOS register holding the century (as on PCs and QEMU). */
const RTC_CENTURY_INDEX = 0x32;
const PM1_EVT_LEN = 4;
const PM1_CNT_LEN = 2;
const PM_TMR_LEN = 4;
const GPE0_LEN = 8;

export function buildFadt(facs: number, dsdt: number): Uint8Array {
  const { bytes, v } = table('FACP', FADT_SIZE, FADT_REVISION);
  v.setUint32(36, facs, true); // FIRMWARE_CTRL
  v.setUint32(40, dsdt, true); // DSDT
  v.setUint8(45, 0); // preferred PM profile: unspecified
  v.setUint16(46, ACPI_SCI_IRQ, true); // SCI_INT
  v.setUint32(48, 0, true); // SMI_CMD: none, always in ACPI mode
  v.setUint32(56, PORT_ACPI_PM1A_EVT, true);
  v.setUint32(64, PORT_ACPI_PM1A_CNT, true);
  v.setUint32(76, PORT_ACPI_PM_TMR, true);
  v.setUint32(80, PORT_ACPI_GPE0, true);
  v.setUint8(88, PM1_EVT_LEN);
  v.setUint8(89, PM1_CNT_LEN);
  v.setUint8(91, PM_TMR_LEN);
  v.setUint8(92, GPE0_LEN);
  v.setUint16(96, 101, true); // P_LVL2_LAT > 100: C2 not supported
  v.setUint16(98, 1001, true); // P_LVL3_LAT > 1000: C3 not supported
  v.setUint8(108, RTC_CENTURY_INDEX);
  v.setUint16(109, BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042 | BOOT_ARCH_VGA_NOT_PRESENT, true);
  v.setUint32(112, FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP, true);
  gas(v, 116, PORT_RESET_CONTROL, 8, ACCESS_BYTE); // RESET_REG
  v.setUint8(128, ACPI_RESET_VALUE);
  v.setUint8(131, FADT_MINOR_REVISION);
  // X_FIRMWARE_CTRL stays 0: the spec wants only one of the two FACS pointers set (Linux
  // installs the FACS twice otherwise), and ours is below 4 GiB.
  v.setBigUint64(140, BigInt(dsdt), true); // X_DSDT
  gas(v, 148, PORT_ACPI_PM1A_EVT, PM1_EVT_LEN * 8, ACCESS_WORD);
  gas(v, 172, PORT_ACPI_PM1A_CNT, PM1_CNT_LEN * 8, ACCESS_WORD);
  gas(v, 208, PORT_ACPI_PM_TMR, PM_TMR_LEN * 8, ACCESS_DWORD);
  gas(v, 220, PORT_ACPI_GPE0, GPE0_LEN * 8, ACCESS_BYTE);
  ascii(v, 268, 'TYPEVISR'); // hypervisor vendor identity
  return finish(bytes);
}

// ---- MADT -----------------------------------------------------------------------------------------
const MADT_REVISION = 5;
const MADT_PCAT_COMPAT = 1; // dual 8259s present
const MADT_LOCAL_APIC = 0;
const MADT_IO_APIC = 1;
const MADT_INT_SRC_OVERRIDE = 2;
const MADT_LOCAL_APIC_NMI = 4;
const LAPIC_ENABLED = 1;
const MPS_INTI_ACTIVE_HIGH = 0x1;
const MPS_INTI_LEVEL = 0x3 << 2;
/** The PIT's IRQ 0 arrives on IOAPIC pin 2 (the 8259 cascade occupies pin 0's place). */
const PIT_GSI = 2;

export function buildMadt(opts: AcpiOptions): Uint8Array {
  const cpus = opts.cpus;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_ACPI_CPUS) {
    throw new BootError(`cannot describe ${cpus} vCPUs in the MADT: use 1 to ${MAX_ACPI_CPUS} CPUs`);
  }
  const ioapicId = opts.ioapicId ?? 0;
  const length = HEADER_SIZE + 8 + cpus * 8 + 12 + 2 * 10 + 6;
  const { bytes, v } = table('APIC', length, MADT_REVISION);
  v.setUint32(36, LAPIC_START, true);
  v.setUint32(40, MADT_PCAT_COMPAT, true);
  let o = 44;
  for (let i = 0; i < cpus; i++) {
    v.setUint8(o, MADT_LOCAL_APIC);
    v.setUint8(o + 1, 8);
    v.setUint8(o + 2, i); // ACPI processor UID
    v.setUint8(o + 3, i); // APIC ID
    v.setUint32(o + 4, LAPIC_ENABLED, true);
    o += 8;
  }
  v.setUint8(o, MADT_IO_APIC);
  v.setUint8(o + 1, 12);
  v.setUint8(o + 2, ioapicId);
  v.setUint32(o + 4, IOAPIC_START, true);
  v.setUint32(o + 8, 0, true); // GSI base
  o += 12;
  const override = (irq: number, gsi: number, flags: number): void => {
    v.setUint8(o, MADT_INT_SRC_OVERRIDE);
    v.setUint8(o + 1, 10);
    v.setUint8(o + 2, 0); // bus: ISA
    v.setUint8(o + 3, irq);
    v.setUint32(o + 4, gsi, true);
    v.setUint16(o + 8, flags, true);
    o += 10;
  };
  override(0, PIT_GSI, 0);
  override(ACPI_SCI_IRQ, ACPI_SCI_IRQ, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL);
  v.setUint8(o, MADT_LOCAL_APIC_NMI);
  v.setUint8(o + 1, 6);
  v.setUint8(o + 2, 0xff); // all processors
  v.setUint16(o + 3, 0, true); // flags: conforms to the bus
  v.setUint8(o + 5, 1); // LINT1
  o += 6;
  if (o !== length) throw new BootError(`internal: MADT length ${o} != ${length}`);
  return finish(bytes);
}

// ---- XSDT / RSDT / RSDP -------------------------------------------------------------------------
export function buildXsdt(entries: readonly number[]): Uint8Array {
  const { bytes, v } = table('XSDT', HEADER_SIZE + 8 * entries.length, 1);
  entries.forEach((a, i) => v.setBigUint64(HEADER_SIZE + 8 * i, BigInt(a), true));
  return finish(bytes);
}

export function buildRsdt(entries: readonly number[]): Uint8Array {
  const { bytes, v } = table('RSDT', HEADER_SIZE + 4 * entries.length, 1);
  entries.forEach((a, i) => v.setUint32(HEADER_SIZE + 4 * i, a, true));
  return finish(bytes);
}

export function buildRsdp(rsdt: number, xsdt: number): Uint8Array {
  const bytes = new Uint8Array(RSDP_SIZE);
  const v = new DataView(bytes.buffer);
  ascii(v, 0, 'RSD PTR ');
  ascii(v, 9, OEM_ID);
  v.setUint8(15, 2); // revision: ACPI 2.0+ (XSDT)
  v.setUint32(16, rsdt, true);
  v.setUint32(20, RSDP_SIZE, true);
  v.setBigUint64(24, BigInt(xsdt), true);
  fixChecksum(bytes, 8, 0, 20); // ACPI 1.0 checksum: first 20 bytes
  fixChecksum(bytes, 32, 0, RSDP_SIZE); // extended checksum: whole structure
  return bytes;
}

// ---- layout -------------------------------------------------------------------------------------
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Build every table at its final address (pure). */
export function buildAcpiTables(opts: AcpiOptions): AcpiTables {
  const tables: AcpiTable[] = [];
  let next = ACPI_TABLES_START;
  const place = (signature: string, make: (addr: number) => Uint8Array, alignment = 16): number => {
    const address = align(next, alignment);
    const bytes = make(address);
    tables.push({ signature, address, bytes });
    next = address + bytes.length;
    if (next > ACPI_TABLES_END + 1) {
      throw new BootError(`ACPI tables do not fit in ${ACPI_TABLES_START.toString(16)}..${ACPI_TABLES_END.toString(16)}: use fewer vCPUs`);
    }
    return address;
  };
  // the FACS first, at its fixed address (64-byte aligned, as it must be): the wake path reads it
  const facs = place('FACS', () => buildFacs(), 64);
  if (facs !== ACPI_FACS_START) throw new BootError(`internal: the FACS is at 0x${facs.toString(16)}, not ACPI_FACS_START`);
  const dsdt = place('DSDT', () => buildDsdt(opts));
  const fadt = place('FACP', () => buildFadt(facs, dsdt));
  const madt = place('APIC', () => buildMadt(opts));
  const xsdt = place('XSDT', () => buildXsdt([fadt, madt]));
  const rsdt = place('RSDT', () => buildRsdt([fadt, madt]));
  return { rsdp: ACPI_RSDP_START, rsdpBytes: buildRsdp(rsdt, xsdt), tables };
}

/** Build the tables and copy them into guest memory; returns where everything went. */
export function writeAcpiTables(memory: GuestMemory, opts: AcpiOptions): AcpiTables {
  const t = buildAcpiTables(opts);
  if (!memory.isRam(ACPI_RSDP_START, ACPI_TABLES_END + 1 - ACPI_RSDP_START)) {
    throw new BootError('guest RAM does not cover the ACPI area 0xe0000..0xfffff: give the guest at least 1 MiB of memory');
  }
  memory.fill(ACPI_RSDP_START, ACPI_TABLES_END + 1 - ACPI_RSDP_START, 0);
  memory.writeBytes(t.rsdp, t.rsdpBytes);
  for (const tb of t.tables) memory.writeBytes(tb.address, tb.bytes);
  return t;
}

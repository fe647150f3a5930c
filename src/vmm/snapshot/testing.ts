/**
 * Test support for snapshots: a complete bt-engine machine built in-process (every device the
 * builder can attach, a fake clock, a deterministic "random" source, an in-memory disk), a
 * sequence of guest-like register writes that puts every device in a non-trivial state, and a
 * full dump of the CPU's fields for comparisons.
 */
import { Cpu } from '../../cpu/core/cpu.js';
import { simdUnit } from '../../cpu/fpu/index.js';
import { withArena } from '../../cpu/wasm/arena.js';
import { FakeClock } from '../../devices/testing/fake-clock.js';
import { APIC_BASE_BSP } from '../../devices/legacy/lapic/lapic.js';
import { setCpuidApicId } from '../../cpu/system/cpuid.js';
import { MemoryDiskBackend } from '../../devices/virtio/blk/backend.js';
import { buildMachine, type BuiltMachine } from '../../machine/builder.js';
import type { Clock } from '../../machine/clock.js';
import * as L from '../../machine/layout.js';
import { GuestMemory } from '../../machine/memory.js';
import { ramRegionSpecs } from '../../machine/ram.js';

export interface Rig {
  built: BuiltMachine;
  cpu: Cpu;
  /** With RigOptions.cpus > 1: the application processors, waiting for STARTUP. */
  aps: { cpu: Cpu; waitingSipi: boolean }[];
  memory: GuestMemory;
  clock: Clock;
  /** Everything the guest wrote to COM1. */
  out: number[];
  disk: MemoryDiskBackend;
}

export interface RigOptions {
  /** CPU back end (default js). */
  /** 'wasm': RAM in a wasm arena, hot blocks translated (default threshold); 'interp': interpreted only. */
  cpu?: 'interp' | 'wasm';
  /** Default: a FakeClock at 1 s. */
  clock?: Clock;
  ramBytes?: number;
  diskBytes?: number;
  mac?: Uint8Array;
  /** Attach the virtio devices (default true). */
  virtio?: boolean;
  /** vCPUs (default 1): each one with its local APIC. */
  cpus?: number;
}

/** A bt machine with PIC, IOAPIC, LAPIC, PIT, RTC, UART, i8042, ACPI, pvpanic, PCI and four virtio functions. */
export function buildRig(opts: RigOptions = {}): Rig {
  const specs = ramRegionSpecs(opts.ramBytes ?? 16 * L.MiB);
  const translate = (opts.cpu ?? 'interp') === 'wasm';
  const memory = new GuestMemory(translate ? withArena(specs) : specs);
  const clock = opts.clock ?? new FakeClock(1e9);
  const out: number[] = [];
  let seed = 1;
  const disk = new MemoryDiskBackend(opts.diskBytes ?? 1 << 20);
  const virtio = opts.virtio ?? true;
  const built = buildMachine({
    memory,
    interruptModel: 'emulated',
    serialOut: (b) => out.push(...b),
    clock,
    fillRandom: virtio ? (b) => b.forEach((_, i) => (b[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24)) : undefined,
    disks: virtio ? [{ backend: disk, serial: 'snap' }] : [],
    virtioConsoleOut: virtio ? () => {} : undefined,
    net: virtio ? { mac: opts.mac ?? Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56), transmit: () => {} } : undefined,
    cpus: opts.cpus,
  });
  const cpus = built.lapics.map((interrupts, vcpu) => {
    const c = new Cpu({ memory, pio: built.machine.pio, mmio: built.machine.mmio, interrupts, clock, simd: simdUnit, jitThreshold: translate ? undefined : Infinity, vcpu });
    setCpuidApicId(c.s, vcpu);
    if (vcpu !== 0) c.s.apicBase = (c.s.apicBase & ~APIC_BASE_BSP) >>> 0;
    return c;
  });
  const cpu = cpus[0]!;
  memory.onDmaWrite((a, n) => cpu.notifyPhysWrite(a, n));
  return { built, cpu, aps: cpus.slice(1).map((c) => ({ cpu: c, waitingSipi: true })), memory, clock, out, disk };
}

/** Copy guest RAM from one rig to another (what the memory file does). */
export function copyRam(from: GuestMemory, to: GuestMemory): void {
  from.regions.forEach((r, i) => to.regions[i]!.bytes.set(r.bytes));
}

// ---- putting devices in interesting states -------------------------------------------------------

const VIRTIO_RING = 0x30_0000;

/**
 * Guest-like programming of every device: PIC and IOAPIC initialized, LAPIC enabled with a
 * periodic timer, PIT channel 0 periodic, RTC periodic interrupt, UART with FIFO and input
 * waiting, i8042 output queued, ACPI enables, PCI CONFIG_ADDRESS left set, virtio-rng driven
 * through a request (queue indices advanced, MSI-X on), virtio-blk features negotiated.
 */
export function exerciseDevices(r: Rig): void {
  const { pio, mmio } = r.built.machine;
  const out = (port: number, v: number, size: 1 | 2 | 4 = 1): void => pio.write(port, size, v);
  // 8259 pair: ICW1..4, then masks
  for (const [base, vec, icw3] of [[L.PORT_PIC_MASTER, 0x20, 4], [L.PORT_PIC_SLAVE, 0x28, 2]] as const) {
    out(base, 0x11);
    out(base + 1, vec);
    out(base + 1, icw3);
    out(base + 1, 0x01);
  }
  out(L.PORT_PIC_MASTER + 1, 0xb8);
  out(L.PORT_PIC_SLAVE + 1, 0x8e);
  out(L.PORT_PIC_MASTER, 0x0a); // OCW3: read ISR
  // IOAPIC: pin 4 (COM1) and pin 9 (SCI, level) unmasked
  const ioapic = (reg: number, v: number): void => {
    mmio.write(L.IOAPIC_START, 4, reg);
    mmio.write(L.IOAPIC_START + 0x10, 4, v);
  };
  ioapic(0x10 + 8, 0x34);
  ioapic(0x10 + 18, 0x39 | (1 << 15));
  ioapic(0x11 + 18, 0);
  // LAPIC: enabled, TPR, periodic timer
  const apic = (reg: number, v: number): void => mmio.write(L.LAPIC_START + reg, 4, v);
  apic(0xf0, 0x1ff);
  apic(0x80, 0x10);
  apic(0x3e0, 0x3);
  apic(0x320, 0xec | (1 << 17));
  apic(0x380, 100_000);
  apic(0x350, 0x700); // LINT0 ExtINT
  // PIT: channel 0 mode 2, channel 2 mode 0 gated on
  out(L.PORT_PIT + 3, 0x34);
  out(L.PORT_PIT, 0x9c);
  out(L.PORT_PIT, 0x2e);
  out(L.PORT_PIT + 3, 0xb0);
  out(L.PORT_PIT + 2, 0x00);
  out(L.PORT_PIT + 2, 0x10);
  out(L.PORT_SYSTEM_CONTROL_B, 0x01);
  // RTC: periodic interrupt at 64 Hz, binary mode
  out(L.PORT_RTC, 0x0a);
  out(L.PORT_RTC + 1, 0x2a);
  out(L.PORT_RTC, 0x0b);
  out(L.PORT_RTC + 1, 0x46);
  out(L.PORT_RTC, 0x8f); // index with NMI disabled
  // UART: 115200 8N1, FIFO, interrupts, RTS; host input waiting
  out(L.PORT_COM1 + 3, 0x83);
  out(L.PORT_COM1, 0x01);
  out(L.PORT_COM1 + 1, 0x00);
  out(L.PORT_COM1 + 3, 0x03);
  out(L.PORT_COM1 + 2, 0xc7);
  out(L.PORT_COM1 + 1, 0x05);
  out(L.PORT_COM1 + 4, 0x0b);
  out(L.PORT_COM1 + 7, 0x5a);
  r.built.uart.receive(new TextEncoder().encode('hello'));
  // i8042: command byte, then a self-test result waiting
  out(L.PORT_I8042_COMMAND, 0x60);
  out(L.PORT_I8042_DATA, 0x47);
  out(L.PORT_I8042_COMMAND, 0xaa);
  // ACPI: PM1 enables, SCI_EN stays
  pio.write(L.PORT_ACPI_PM1A_EVT + 2, 2, 0x0121);
  // pvpanic: a crash kernel was loaded (the VM goes on)
  out(L.PORT_PVPANIC, 0x02);
  // virtio-rng: the driver's whole set-up, one request served
  const rng = r.built.virtioFunctions.find((f) => f.name === 'virtio-rng')!.fn;
  driveVirtio(r, rng, true);
  const blk = r.built.virtioFunctions.find((f) => f.name.startsWith('virtio-blk'))!.fn;
  driveVirtio(r, blk, false);
  // leave CONFIG_ADDRESS pointing somewhere
  out(L.PORT_PCI_CONFIG_ADDRESS, 0x8000_1810, 4);
}

/** virtio_pci_modern's set-up of queue 0 (+ MSI-X); with `request`, one 64-byte buffer is posted and notified. */
function driveVirtio(r: Rig, fn: import('../../devices/virtio/pci/transport.js').VirtioPciDevice, request: boolean): void {
  const mmio = r.built.machine.mmio;
  const mem = r.memory;
  const bar = (fn.configRead(0x10, 4) & ~0xf) >>> 0;
  const w = (off: number, size: 1 | 2 | 4, v: number): void => mmio.write(bar + off, size, v);
  const ring = VIRTIO_RING + ((bar >>> 15) & 0xf) * 0x4000;
  w(0x14, 1, 0);
  w(0x14, 1, 3); // ACKNOWLEDGE | DRIVER
  w(0x08, 4, 0);
  w(0x0c, 4, (1 << 28) | (1 << 29)); // INDIRECT_DESC, EVENT_IDX
  w(0x08, 4, 1);
  w(0x0c, 4, 1); // VERSION_1
  w(0x14, 1, 0xb); // FEATURES_OK
  // MSI-X on: Message Control enable, vector 1 unmasked
  const cap = fn.msix.capOffset;
  fn.configWrite(cap + 2, 2, 0x8000);
  mmio.write(bar + 0x6000 + 16, 4, 0xfee0_0000);
  mmio.write(bar + 0x6000 + 16 + 8, 4, 0x51);
  mmio.write(bar + 0x6000 + 16 + 12, 4, 0);
  w(0x10, 2, 0); // config vector 0
  w(0x16, 2, 0);
  w(0x18, 2, 16);
  w(0x1a, 2, 1);
  w(0x20, 4, ring);
  w(0x24, 4, 0);
  w(0x28, 4, ring + 0x1000);
  w(0x2c, 4, 0);
  w(0x30, 4, ring + 0x2000);
  w(0x34, 4, 0);
  w(0x1c, 2, 1);
  w(0x14, 1, 0xf); // DRIVER_OK
  if (!request) return;
  // descriptor 0: 64 writable bytes at ring + 0x3000; avail ring: head 0, idx 1
  mem.write64(ring, BigInt(ring + 0x3000));
  mem.write32(ring + 8, 64);
  mem.write16(ring + 12, 2);
  mem.write16(ring + 0x1000 + 4, 0);
  mem.write16(ring + 0x1000 + 2, 1);
  w(0x3000, 2, 0);
}

// ---- comparing CPUs ----------------------------------------------------------------------------------

/** Every field of the CPU's architectural state (CpuState), with typed arrays as plain arrays. */
export function cpuFields(cpu: Cpu): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cpu.s)) {
    if (k === 'xmmU8' || k === 'xmmF32' || k === 'xmmF64') continue; // views of xmm
    o[k] = ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>, (x) => (Object.is(x, -0) ? 0 : x)) : typeof v === 'bigint' ? `0x${v.toString(16)}` : Object.is(v, -0) ? 0 : v;
  }
  o.rflags = cpu.getRflags();
  delete o.rflagsRest; // the arithmetic flags may be lazy: compare the full value
  o.rflagsRest = cpu.s.rflagsRest & ~0x8d5;
  return o;
}

/**
 * Every device of a bt-engine machine as a snapshot section: how to save it, how to check an
 * untrusted section against the device this machine has (schema, ranges, and that it is the
 * same device: PCI identity, queue count, disk size, MAC), and how to apply a checked one.
 *
 * Sections are keyed by device name. Restore applies them in an order that keeps interrupt
 * state exact: devices that drive interrupt lines first (they re-drive their lines on restore),
 * then the PCI functions and the host (which maps the BARs where the restored configuration
 * spaces put them), and the interrupt controllers last, so the PIC, IOAPIC and local APIC end
 * with exactly their saved line levels, requests and in-service bits.
 */
import type { BuiltMachine } from '../../machine/builder.js';
import type { I8042State } from '../../devices/legacy/i8042/i8042.js';
import type { IoApicState } from '../../devices/legacy/ioapic/ioapic.js';
import type { LocalApicState } from '../../devices/legacy/lapic/lapic.js';
import type { PicState } from '../../devices/legacy/pic/pic.js';
import type { PitState } from '../../devices/legacy/pit/pit.js';
import type { PvPanicState } from '../../devices/legacy/pvpanic/pvpanic.js';
import type { CmosRtcState } from '../../devices/legacy/rtc/rtc.js';
import { UART_FIFO_SIZE, type UartState } from '../../devices/legacy/uart/uart.js';
import type { AcpiPmState } from '../../devices/acpi/pm.js';
import { PCI_CONFIG_SPACE_SIZE, PCI_STATUS, PCI_STATUS_INTERRUPT, RESET_CONTROL_LATCHED, type PciHostState } from '../../devices/pci/host.js';
import { MSIX_CONTROL_ENABLE, MSIX_CONTROL_FUNCTION_MASK, MSIX_ENTRY_SIZE } from '../../devices/pci/msix.js';
import { STATUS_FEATURES_OK, TRANSPORT_FEATURES, VIRTIO_F_VERSION_1, bit } from '../../devices/virtio/device.js';
import { VIRTIO_MSI_NO_VECTOR, type VirtioPciDevice, type VirtioPciState } from '../../devices/virtio/pci/transport.js';
import { SplitQueue, MAX_QUEUE_SIZE } from '../../devices/virtio/queue/queue.js';
import { BlockDevice, type BlockState } from '../../devices/virtio/blk/blk.js';
import { EntropyDevice } from '../../devices/virtio/rng/rng.js';
import { VirtioConsole, type ConsoleState } from '../../devices/virtio/console/console.js';
import { VirtioNet, type NetState } from '../../devices/virtio/net/net.js';
import { IOAPIC_PINS } from '../../machine/layout.js';
import { SnapshotError, arr, bool, hex64, int, invalid, num, obj, parse, u16, u32, u8, uint, type Schema } from './check.js';

/** One device's section of the state. */
export interface DeviceSection {
  name: string;
  save(): unknown;
  /** Check an untrusted section against this device; returns what `apply` takes. Throws SnapshotError. */
  parse(raw: unknown, path: string): unknown;
  apply(parsed: unknown): void;
}

function section<T>(name: string, save: () => T, check: (raw: unknown, path: string) => T, apply: (s: T) => void): DeviceSection {
  return { name, save, parse: check, apply: (s) => apply(s as T) };
}

/** A schema-only check. */
const by = <T>(schema: Schema) => (raw: unknown, path: string): T => parse<T>(schema, raw, path);

// ---- legacy devices ----------------------------------------------------------------------------

const picChip = obj({
  irr: u8, isr: u8, imr: u8, elcr: u8, lines: u8, vectorBase: u8, priorityAdd: int(0, 7), readIsr: bool, poll: bool, specialMask: bool,
  initState: int(0, 3), icw4Needed: bool, single: bool, autoEoi: bool, rotateOnAutoEoi: bool, specialFullyNested: bool,
});
const picSchema = obj({ master: picChip, slave: picChip });
const pinBits = int(0, 2 ** IOAPIC_PINS - 1);
const ioapicSchema = obj({ id: int(0, 15), ioregsel: u8, redirection: arr(u32, IOAPIC_PINS * 2), levels: pinBits, pendingEdges: pinBits });
const lapicSchema = obj({
  apicBase: u32, id: u8, tpr: u8, ldr: u32, dfr: u32, svr: int(0, 0x3ff), esr: u8, esrPending: u8, icrLow: u32, icrHigh: u32,
  lvt: arr(u32, 6), irr: arr(u32, 8), isr: arr(u32, 8), tmr: arr(u32, 8), divideConfig: int(0, 0xb), initialCount: u32,
  timerStartNs: num, timerPending: bool, nmiPending: bool, extIntPending: bool,
});
const pitChannel = obj({
  mode: int(0, 5), rw: int(1, 3), bcd: bool, countRegister: u16, gate: bool, running: bool, startNs: num, heldTicks: uint,
  nullCount: bool, writeLowPending: bool, writeLatch: u8, readHighNext: bool, latchedCount: u16, latchedBytes: int(0, 2),
  latchedStatus: u8, statusLatched: bool,
});
const pitSchema = obj({ channels: arr(pitChannel, 3), speakerData: bool, portBLow: int(0, 15), irqPending: bool });
const rtcSchema = obj({ cmos: arr(u8, 128), index: int(0, 0x7f), nmiDisabled: bool, offsetMs: num, flagsC: u8, lastUpdateSecond: num, epochMs: num });
const uartSchema = obj({
  rx: arr(u8, 0, UART_FIFO_SIZE), ier: int(0, 0xf), lcr: u8, mcr: int(0, 0x1f), scr: u8, dll: u8, dlm: u8, fifoEnabled: bool,
  rxTrigger: int(1, 14), overrun: bool, msrDeltas: int(0, 0xf), thrInterrupt: bool,
});
const i8042Schema = obj({
  commandByte: u8, outputPort: u8, pendingCommand: u8, pendingKbdCommand: u8, lastWriteWasCommand: bool, scanCodeSet: int(1, 3),
  buffer: arr(obj({ byte: u8, aux: bool }), 0, 16), lastByte: u8,
});
const pmSchema = obj({ pm1Status: u16, pm1Enable: u16, pm1Control: u16, gpe0Status: u32, gpe0Enable: u32, timerCarryEpoch: uint });
const pvpanicSchema = obj({ events: int(0, 3) });
const pciHostSchema = obj({ address: u32, bridge: arr(u8, PCI_CONFIG_SPACE_SIZE), resetControl: u8 });

// ---- virtio PCI functions ----------------------------------------------------------------------

const queueSchema = obj({
  size: int(1, MAX_QUEUE_SIZE), descAddr: int(0, 2 ** 52), availAddr: int(0, 2 ** 52), usedAddr: int(0, 2 ** 52), ready: bool,
  lastAvail: u16, usedIdx: u16, signalledUsed: u16, indirect: bool, eventIdx: bool, vector: u16,
});

function transportSchema(fn: VirtioPciDevice): Schema {
  const nq = fn.device.queueSizes.length;
  return obj({
    config: arr(u8, PCI_CONFIG_SPACE_SIZE), status: u8, deviceFeatureSelect: u32, driverFeatureSelect: u32, driverFeatures: arr(u32, 2),
    negotiated: hex64, configGeneration: u8, configVector: u16, queueSelect: u16, isr: int(0, 3), broken: bool,
    queues: arr(queueSchema, nq),
    msix: obj({ enabled: bool, functionMasked: bool, table: arr(u8, fn.msix.vectors * MSIX_ENTRY_SIZE), pba: arr(u8, fn.msix.pbaSize) }),
  });
}

/** The device behind a virtio function: its own state's schema and identity checks. */
function deviceSection(fn: VirtioPciDevice): { save(): unknown; parse(raw: unknown, path: string): unknown; apply(s: unknown): void } {
  const dev = fn.device;
  if (dev instanceof BlockDevice) {
    return {
      save: () => dev.save(),
      parse: (raw, path) => {
        const s = parse<BlockState>(obj({ capacityBytes: uint, readOnly: bool }), raw, path);
        if (s.capacityBytes !== dev.backend.size) throw invalid(path, `is a disk of ${s.capacityBytes} bytes, this machine's has ${dev.backend.size}: restore with the disk the snapshot was taken with`);
        if (s.readOnly !== dev.backend.readOnly) throw invalid(path, `is a ${s.readOnly ? 'read-only' : 'writable'} disk, this machine's is not: attach it as it was`);
        if (dev.inFlight !== 0) throw invalid(path, `cannot be restored into a disk with ${dev.inFlight} requests in flight`);
        return s;
      },
      apply: (s) => dev.restore(s as BlockState),
    };
  }
  if (dev instanceof VirtioNet) {
    return {
      save: () => dev.save(),
      parse: (raw, path) => {
        const s = parse<NetState>(obj({ config: arr(u8, dev.configSize) }), raw, path);
        const mine = dev.save().config;
        const mac = (c: number[]): string => c.slice(0, 6).map((b) => b.toString(16).padStart(2, '0')).join(':');
        if (mac(s.config) !== mac(mine)) throw invalid(`${path}.config`, `holds MAC ${mac(s.config)}, this machine's card has ${mac(mine)}: give the card the snapshot's MAC`);
        return s;
      },
      apply: (s) => dev.restore(s as NetState),
    };
  }
  if (dev instanceof VirtioConsole) {
    return {
      save: () => dev.save(),
      parse: by<ConsoleState>(obj({ live: bool, cols: u16, rows: u16 })),
      apply: (s) => dev.restore(s as ConsoleState),
    };
  }
  if (dev instanceof EntropyDevice) {
    return { save: () => dev.save(), parse: by(obj({})), apply: () => dev.restore({}) };
  }
  throw new SnapshotError(`Cannot snapshot a virtio device of type ${dev.deviceType}: it has no snapshot support yet`);
}

function virtioSection(name: string, slot: number, fn: VirtioPciDevice): DeviceSection {
  const dev = deviceSection(fn);
  const offered = fn.device.features | TRANSPORT_FEATURES;
  const schema = obj({ slot: int(0, 31), transport: transportSchema(fn) });
  return {
    name,
    save: () => ({ slot, transport: fn.save(), device: dev.save() }),
    parse: (raw, path) => {
      // `device` is the device's to check; the rest the schema's
      checkExcept(schema, raw, path, 'device');
      const r = raw as { slot: number; transport: VirtioPciState; device: unknown };
      if (r.slot !== slot) throw invalid(`${path}.slot`, `is ${r.slot}, this machine has ${name} in slot ${slot}`);
      const t = r.transport;
      checkTransport(fn, t, offered, `${path}.transport`);
      return { transport: t, device: dev.parse(r.device, `${path}.device`) };
    },
    apply: (p) => {
      const { transport, device } = p as { transport: VirtioPciState; device: unknown };
      fn.restore(transport);
      dev.apply(device);
    },
  };
}

/** Check an object against `schema`, which leaves out field `deferred` (it must be present: another checker takes it). */
function checkExcept(schema: Schema, raw: unknown, path: string, deferred: string): void {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(path, 'is not an object (a corrupt or hand-edited state file)');
  const rest: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  if (!(deferred in rest)) throw invalid(`${path}.${deferred}`, 'is missing (a corrupt or hand-edited state file)');
  delete rest[deferred];
  parse(schema, rest, path);
}

/** Semantic checks of a transport section against the function this machine has. */
function checkTransport(fn: VirtioPciDevice, t: VirtioPciState, offered: bigint, path: string): void {
  // Read-only configuration bytes identify the function (IDs, class, capabilities, BAR types):
  // they must be this machine's, except the status register's interrupt bit, which follows INTx.
  for (let i = 0; i < PCI_CONFIG_SPACE_SIZE; i++) {
    let ro = ~fn.writeMask[i]! & 0xff;
    if (i === PCI_STATUS) ro &= ~PCI_STATUS_INTERRUPT;
    if ((t.config[i]! & ro) !== (fn.bytes[i]! & ro)) {
      throw invalid(`${path}.config[0x${i.toString(16)}]`, `is 0x${t.config[i]!.toString(16)}, this machine's function has 0x${fn.bytes[i]!.toString(16)} there (a different device or typevisor version): restore into a machine built with the snapshot's configuration`);
    }
  }
  const control = t.config[fn.msix.capOffset + 2]! | (t.config[fn.msix.capOffset + 3]! << 8);
  if (((control & MSIX_CONTROL_ENABLE) !== 0) !== t.msix.enabled || ((control & MSIX_CONTROL_FUNCTION_MASK) !== 0) !== t.msix.functionMasked) {
    throw invalid(`${path}.msix`, 'disagrees with the MSI-X Message Control word in config');
  }
  const negotiated = BigInt(t.negotiated);
  if ((negotiated & ~offered) !== 0n) throw invalid(`${path}.negotiated`, `is ${t.negotiated}, with features the device does not offer (0x${offered.toString(16)})`);
  if (t.status & STATUS_FEATURES_OK && (negotiated & bit(VIRTIO_F_VERSION_1)) === 0n) throw invalid(`${path}.negotiated`, 'lacks VERSION_1 although FEATURES_OK is set');
  const vectorOk = (v: number): boolean => v === VIRTIO_MSI_NO_VECTOR || v < fn.msix.vectors;
  if (!vectorOk(t.configVector)) throw invalid(`${path}.configVector`, `is ${t.configVector}, not a vector of this function (0..${fn.msix.vectors - 1} or 0xffff)`);
  t.queues.forEach((q, i) => {
    const where = `${path}.queues[${i}]`;
    const max = fn.device.queueSizes[i]!;
    if (q.size > max || (q.size & (q.size - 1)) !== 0) throw invalid(`${where}.size`, `is ${q.size}, not a power of two up to ${max}`);
    if (!vectorOk(q.vector)) throw invalid(`${where}.vector`, `is ${q.vector}, not a vector of this function`);
    if (q.ready) {
      const probe = new SplitQueue(max);
      const err = probe.restore(fn.memory, q);
      if (err) throw invalid(where, `is not a queue this machine's memory can hold: ${err.message.replace(/: the guest's virtio driver must reset the device$/, '')}`);
    }
  });
}

function parseLapic(raw: unknown, path: string): LocalApicState {
  const s = parse<LocalApicState>(lapicSchema, raw, path);
  if (s.divideConfig & ~0xb) throw invalid(`${path}.divideConfig`, `is ${s.divideConfig}, not a divide configuration (bits 0, 1 and 3)`);
  return s;
}

// ---- the sections that differ between the engines --------------------------------------------------

/** The state of the devices KVM keeps in the kernel (the kvm engine has its own forms of them). */
export interface InKernelDevicesState {
  pic: PicState;
  ioapic: IoApicState;
  pit: PitState;
  /** Each vCPU's local APIC, in vCPU order (sections `lapic`, `lapic1`, `lapic2`, ...). */
  lapics: LocalApicState[];
}

/** The section of vCPU `i`'s local APIC. */
export const lapicSection = (i: number): string => (i === 0 ? 'lapic' : `lapic${i}`);

/**
 * Is `name` a device section a bt machine has and a kvm machine keeps in KVM instead: the PIC,
 * IOAPIC, PIT and every vCPU's local APIC?
 */
export const isInKernelSection = (name: string): boolean => ['pic', 'ioapic', 'pit', 'lapic'].includes(name) || /^lapic[1-9][0-9]*$/.test(name);

/**
 * Check a bt state's `pic`, `ioapic`, `pit` and the local APIC sections of `cpus` vCPUs
 * (untrusted) without a machine.
 */
export function parseInKernelSections(devices: Record<string, unknown>, path: string, cpus = 1): InKernelDevicesState {
  const lapics = Array.from({ length: cpus }, (_, i) => parseLapic(devices[lapicSection(i)], `${path}.${lapicSection(i)}`));
  return {
    pic: parse<PicState>(picSchema, devices.pic, `${path}.pic`),
    ioapic: parse<IoApicState>(ioapicSchema, devices.ioapic, `${path}.ioapic`),
    pit: parse<PitState>(pitSchema, devices.pit, `${path}.pit`),
    lapics,
  };
}

// ---- the machine's sections -------------------------------------------------------------------

/** The sections of `built`, in restore order (see the module comment). */
export function deviceSections(built: BuiltMachine): DeviceSection[] {
  const out: DeviceSection[] = [];
  const { uart, i8042, rtc, pit, pm, pvpanic, pci, pic, ioapic, lapic } = built;
  out.push(section<UartState>('uart', () => uart.save(), (raw, path) => {
    const s = parse<UartState>(uartSchema, raw, path);
    if (![1, 4, 8, 14].includes(s.rxTrigger)) throw invalid(`${path}.rxTrigger`, `is ${s.rxTrigger}, not 1, 4, 8 or 14`);
    if (s.rx.length > (s.fifoEnabled ? UART_FIFO_SIZE : 1)) throw invalid(`${path}.rx`, `holds ${s.rx.length} bytes, more than the receiver holds with the FIFO ${s.fifoEnabled ? 'on' : 'off'}`);
    return s;
  }, (s) => uart.restore(s)));
  out.push(section<I8042State>('i8042', () => i8042.save(), by(i8042Schema), (s) => i8042.restore(s)));
  out.push(section<CmosRtcState>('rtc', () => rtc.save(), by(rtcSchema), (s) => rtc.restore(s)));
  if (pit) out.push(section<PitState>('pit', () => pit.save(), by(pitSchema), (s) => pit.restore(s)));
  out.push(section<AcpiPmState>('acpi-pm', () => pm.save(), by(pmSchema), (s) => pm.restore(s)));
  out.push(section<PvPanicState>('pvpanic', () => pvpanic.save(), by(pvpanicSchema), (s) => pvpanic.restore(s)));
  for (const { name, slot, fn } of built.virtioFunctions) out.push(virtioSection(name, slot, fn));
  out.push(section<PciHostState>('pci-host', () => pci.save(), (raw, path) => {
    const s = parse<PciHostState>(pciHostSchema, raw, path);
    if (s.resetControl & ~RESET_CONTROL_LATCHED) throw invalid(`${path}.resetControl`, `is 0x${s.resetControl.toString(16)}: only SYS_RST (0x2) and FULL_RST (0x8) latch`);
    const mine = pci.save().bridge;
    const i = s.bridge.findIndex((b, k) => b !== mine[k]);
    if (i >= 0) throw invalid(`${path}.bridge[0x${i.toString(16)}]`, `is 0x${s.bridge[i]!.toString(16)}, this machine's host bridge has 0x${mine[i]!.toString(16)} (a different chipset)`);
    return s;
  }, (s) => pci.restore(s)));
  if (pic) out.push(section<PicState>('pic', () => pic.save(), by(picSchema), (s) => pic.restore(s)));
  if (ioapic) out.push(section<IoApicState>('ioapic', () => ioapic.save(), by(ioapicSchema), (s) => ioapic.restore(s)));
  if (lapic) {
    out.push(section<LocalApicState>('lapic', () => lapic.save(), parseLapic, (s) => lapic.restore(s)));
  }
  // the other vCPUs' local APICs (several vCPUs on the bt engine)
  built.lapics.slice(1).forEach((a, i) => out.push(section<LocalApicState>(lapicSection(i + 1), () => a.save(), parseLapic, (s) => a.restore(s))));
  return out;
}

/**
 * The virtio-pci transport, modern (virtio 1.x) only (virtio 1.2, 4.1): one PCI function per
 * virtio device, vendor 0x1af4, device 0x1040 + type, revision 1, every register in one 64-bit
 * memory BAR (BAR0/1), laid out like crosvm's:
 *
 *   0x0000 common configuration (VIRTIO_PCI_CAP_COMMON_CFG, 0x40 bytes)
 *   0x1000 ISR status (VIRTIO_PCI_CAP_ISR_CFG): read to clear; bit 0 queue, bit 1 config
 *   0x2000 device-specific configuration (VIRTIO_PCI_CAP_DEVICE_CFG, when the device has one)
 *   0x3000 notifications (VIRTIO_PCI_CAP_NOTIFY_CFG): queue n at 0x3000 + 4n (multiplier 4)
 *   0x6000 MSI-X table (one vector per queue + one for configuration changes)
 *   0x7000 MSI-X PBA
 *
 * plus VIRTIO_PCI_CAP_PCI_CFG, the window into the BAR through configuration space.
 *
 * Interrupts: with MSI-X enabled, each queue and the configuration use the vector the driver
 * wrote to `queue_msix_vector` / `msix_config` (a vector the device does not have reads back
 * as 0xffff, VIRTIO_MSI_NO_VECTOR, which is how Linux learns it must share); messages leave
 * through the injected `MsiSink` (the software engine's local APIC, or KVM_SIGNAL_MSI). With
 * MSI-X disabled, the ISR bits drive INTA# (an `IrqLine` to the IOAPIC pin the DSDT's _PRT
 * names) until the driver reads the ISR.
 *
 * Feature negotiation: VERSION_1 is mandatory; FEATURES_OK does not stick when the driver asks
 * for a feature not offered or leaves out VERSION_1. Writing 0 to `device_status` resets the
 * device. A queue the driver set up wrong, or a chain that breaks the rules, sets
 * DEVICE_NEEDS_RESET and the device stops serving queues until the reset.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import type { IrqLine, MsiSink } from '../../../machine/irq.js';
import type { GuestMemory } from '../../../machine/memory.js';
import {
  PCI_CAP_ID_VNDR, PCI_CLASS_PROG, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID, PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, PCI_REVISION_ID, PCI_STATUS, PCI_STATUS_INTERRUPT,
  PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID, PciConfigSpace, type PciBar,
} from '../../pci/host.js';
import { Msix, type MsixState } from '../../pci/msix.js';
import {
  bit, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK, TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, type VirtioDevice, type VirtioTransport,
} from '../device.js';
import { SplitQueue, type SplitQueueState, type VirtqueueError } from '../queue/queue.js';

export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** QEMU's subsystem ID for modern devices; Linux ignores it for IDs >= 0x1040. */
export const VIRTIO_PCI_SUBSYSTEM_ID = 0x1100;
export const VIRTIO_PCI_REVISION = 1;
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

// Capability cfg_type values (4.1.4)
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;

// BAR layout
export const VIRTIO_BAR = 0;
export const BAR_SIZE = 0x8000;
export const COMMON_OFFSET = 0x0000;
export const COMMON_LENGTH = 0x40;
export const ISR_OFFSET = 0x1000;
export const DEVICE_CFG_OFFSET = 0x2000;
export const NOTIFY_OFFSET = 0x3000;
export const NOTIFY_OFF_MULTIPLIER = 4;
export const MSIX_TABLE_OFFSET = 0x6000;
export const MSIX_PBA_OFFSET = 0x7000;
const REGION = 0x1000;
/** The MSI-X table's page holds 256 vectors: one per queue plus the configuration vector. */
export const MAX_QUEUES = 255;

// Common configuration registers (4.1.4.3)
export const COMMON_DFSELECT = 0x00;
export const COMMON_DF = 0x04;
export const COMMON_GFSELECT = 0x08;
export const COMMON_GF = 0x0c;
export const COMMON_MSIX_CONFIG = 0x10;
export const COMMON_NUM_QUEUES = 0x12;
export const COMMON_STATUS = 0x14;
export const COMMON_CFG_GENERATION = 0x15;
export const COMMON_Q_SELECT = 0x16;
export const COMMON_Q_SIZE = 0x18;
export const COMMON_Q_MSIX = 0x1a;
export const COMMON_Q_ENABLE = 0x1c;
export const COMMON_Q_NOTIFY_OFF = 0x1e;
export const COMMON_Q_DESC_LO = 0x20;
export const COMMON_Q_DESC_HI = 0x24;
export const COMMON_Q_AVAIL_LO = 0x28;
export const COMMON_Q_AVAIL_HI = 0x2c;
export const COMMON_Q_USED_LO = 0x30;
export const COMMON_Q_USED_HI = 0x34;
export const COMMON_Q_NOTIFY_DATA = 0x38;
export const COMMON_Q_RESET = 0x3a;
/** [offset, size] of every common-configuration field, in order. */
const COMMON_FIELDS: readonly (readonly [number, 1 | 2 | 4])[] = [
  [0x00, 4], [0x04, 4], [0x08, 4], [0x0c, 4], [0x10, 2], [0x12, 2], [0x14, 1], [0x15, 1], [0x16, 2], [0x18, 2],
  [0x1a, 2], [0x1c, 2], [0x1e, 2], [0x20, 4], [0x24, 4], [0x28, 4], [0x2c, 4], [0x30, 4], [0x34, 4], [0x38, 2],
  [0x3a, 2],
];

// ISR bits
export const ISR_QUEUE = 1;
export const ISR_CONFIG = 2;

export class VirtioPciError extends Error {
  override name = 'VirtioPciError';
}

export interface VirtioPciOptions {
  device: VirtioDevice;
  memory: GuestMemory;
  /** Where MSI-X messages go (the engine's MSI sink). */
  msi: MsiSink;
  /** The function's INTA# line (the GSI the _PRT gives its slot). */
  intx: IrqLine;
  /** Name of the BAR on the MMIO bus. */
  name: string;
}

/** Snapshot state of a virtio PCI function's transport. */
export interface VirtioPciState {
  /** The 256 bytes of configuration space. */
  config: number[];
  status: number;
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  /** The two 32-bit words of driver features written. */
  driverFeatures: number[];
  /** Features negotiated at FEATURES_OK, as "0x..." (64 bits). */
  negotiated: string;
  configGeneration: number;
  configVector: number;
  queueSelect: number;
  isr: number;
  /** DEVICE_NEEDS_RESET set: queues not served until reset. */
  broken: boolean;
  queues: (SplitQueueState & { vector: number })[];
  msix: MsixState;
}

export class VirtioPciDevice extends PciConfigSpace implements VirtioTransport {
  readonly device: VirtioDevice;
  readonly memory: GuestMemory;
  readonly msix: Msix;
  private readonly intx: IrqLine;
  private readonly name: string;
  private readonly queues: SplitQueue[];
  private readonly queueVector: Uint16Array;
  private readonly offered: bigint;
  private readonly bar: BusDevice;
  private readonly pciCfgCap: number;

  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private readonly driverFeatures = new Uint32Array(2);
  negotiated = 0n;
  private status = 0;
  private configGeneration = 0;
  private configVector = VIRTIO_MSI_NO_VECTOR;
  private queueSelect = 0;
  private isr = 0;
  private intxLevel = false;
  /** DEVICE_NEEDS_RESET set: queues are not served until the driver resets the device. */
  private broken = false;

  /** Queue notifications (doorbell writes) received. */
  notifyCount = 0;
  /** Driver errors that set DEVICE_NEEDS_RESET, and the last one's message. */
  failedCount = 0;
  lastError: string | undefined;

  constructor(opts: VirtioPciOptions) {
    super();
    const dev = opts.device;
    const nq = dev.queueSizes.length;
    if (nq < 1 || nq > MAX_QUEUES) throw new VirtioPciError(`Cannot attach a virtio device with ${nq} queues over PCI: use 1 to ${MAX_QUEUES}`);
    if (dev.configSize > REGION) throw new VirtioPciError(`Cannot attach a virtio device with ${dev.configSize} bytes of configuration: at most ${REGION}`);
    this.device = dev;
    this.memory = opts.memory;
    this.intx = opts.intx;
    this.name = opts.name;
    this.queues = dev.queueSizes.map((n) => new SplitQueue(n));
    this.queueVector = new Uint16Array(nq).fill(VIRTIO_MSI_NO_VECTOR);
    this.offered = dev.features | TRANSPORT_FEATURES;

    // Header
    this.set16(PCI_VENDOR_ID, VIRTIO_PCI_VENDOR_ID);
    this.set16(PCI_DEVICE_ID, VIRTIO_PCI_DEVICE_ID_BASE + dev.deviceType);
    this.set8(PCI_REVISION_ID, VIRTIO_PCI_REVISION);
    this.set8(PCI_CLASS_PROG, dev.pciClass & 0xff);
    this.set16(PCI_CLASS_PROG + 1, dev.pciClass >>> 8);
    this.set16(PCI_SUBSYSTEM_VENDOR_ID, VIRTIO_PCI_VENDOR_ID);
    this.set16(PCI_SUBSYSTEM_ID, VIRTIO_PCI_SUBSYSTEM_ID);
    this.setWritable(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    this.set8(PCI_INTERRUPT_PIN, 1); // INTA#
    this.setWritable(PCI_INTERRUPT_LINE, 1, 0xff);
    this.defineMemoryBar(VIRTIO_BAR, BAR_SIZE, { is64: true });

    // Capabilities: MSI-X, then the virtio structures.
    this.msix = new Msix({ vectors: nq + 1, bar: VIRTIO_BAR, tableOffset: MSIX_TABLE_OFFSET, pbaOffset: MSIX_PBA_OFFSET }, opts.msi);
    this.msix.addCapability(this);
    this.virtioCap(VIRTIO_PCI_CAP_COMMON_CFG, COMMON_OFFSET, COMMON_LENGTH);
    this.virtioCap(VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, 4);
    if (dev.configSize > 0) this.virtioCap(VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_CFG_OFFSET, dev.configSize);
    const notify = this.virtioCap(VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER * nq, 20);
    this.set32(notify + 16, NOTIFY_OFF_MULTIPLIER);
    // VIRTIO_PCI_CAP_PCI_CFG: bar, offset and length select what pci_cfg_data reaches.
    this.pciCfgCap = this.virtioCap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20);
    this.setWritable(this.pciCfgCap + 4, 1, 0xff);
    this.setWritable(this.pciCfgCap + 8, 4, 0xffff_ffff);
    this.setWritable(this.pciCfgCap + 12, 4, 0xffff_ffff);
    this.setWritable(this.pciCfgCap + 16, 4, 0xffff_ffff);

    this.bar = { read: (o, s) => this.barRead(o, s), write: (o, s, v) => this.barWrite(o, s, v) };
    dev.attach(this);
  }

  /** Lines for a state dump (SIGUSR2 on the bt engine): status, interrupt state, each queue. */
  describe(): string[] {
    const lines = [`${this.name}: status 0x${this.status.toString(16)}${this.broken ? ' NEEDS_RESET' : ''}, isr ${this.isr}, intx ${this.intxLevel ? 'high' : 'low'}, notifies ${this.notifyCount}, msix ${this.msix.describe()}`];
    const own = this.device.describe?.();
    if (own) lines.push(`  ${own}`);
    this.queues.forEach((q, i) => lines.push(`  queue ${i} (vector ${this.queueVector[i]}): ${q.describe(this.memory)}`));
    return lines;
  }

  /**
   * Snapshot of the transport: configuration space as the guest programmed it (BARs, command
   * register, MSI-X control), the common configuration (status, features, selectors,
   * generation, vectors), the ISR, every queue and the MSI-X table and PBA. The device's own
   * state is the device's (`device.save()`).
   */
  save(): VirtioPciState {
    return {
      config: Array.from(this.bytes),
      status: this.status,
      deviceFeatureSelect: this.deviceFeatureSelect,
      driverFeatureSelect: this.driverFeatureSelect,
      driverFeatures: Array.from(this.driverFeatures),
      negotiated: `0x${this.negotiated.toString(16)}`,
      configGeneration: this.configGeneration,
      configVector: this.configVector,
      queueSelect: this.queueSelect,
      isr: this.isr,
      broken: this.broken,
      queues: this.queues.map((q, i) => ({ ...q.save(), vector: this.queueVector[i]! })),
      msix: this.msix.save(),
    };
  }

  /**
   * Snapshot restore into a function built the same way. `s` was validated by the caller
   * (lengths, ranges, features offered, rings in RAM); nothing is sent to the guest, INTx is
   * driven to the level the restored ISR implies. The caller re-maps the BARs (PciHost.restore).
   */
  restore(s: VirtioPciState): void {
    if (s.config.length !== this.bytes.length || s.queues.length !== this.queues.length) {
      throw new VirtioPciError(`Cannot restore ${this.name}: the snapshot has ${s.queues.length} queues, this device ${this.queues.length}`);
    }
    for (let i = 0; i < s.queues.length; i++) {
      const err = this.queues[i]!.restore(this.memory, s.queues[i]!);
      if (err) throw new VirtioPciError(`Cannot restore ${this.name} queue ${i}: ${err.message}`);
      this.queueVector[i] = s.queues[i]!.vector;
    }
    this.bytes.set(s.config);
    this.status = s.status;
    this.deviceFeatureSelect = s.deviceFeatureSelect;
    this.driverFeatureSelect = s.driverFeatureSelect;
    this.driverFeatures[0] = s.driverFeatures[0]!;
    this.driverFeatures[1] = s.driverFeatures[1]!;
    this.negotiated = BigInt(s.negotiated);
    this.configGeneration = s.configGeneration;
    this.configVector = s.configVector;
    this.queueSelect = s.queueSelect;
    this.isr = s.isr;
    this.broken = s.broken;
    this.msix.restore(s.msix);
    this.updateIntx();
  }

  private virtioCap(cfgType: number, offset: number, length: number, capLength = 16): number {
    const at = this.addCapability(PCI_CAP_ID_VNDR, capLength);
    this.set8(at + 2, capLength);
    this.set8(at + 3, cfgType);
    this.set8(at + 4, VIRTIO_BAR);
    this.set8(at + 5, 0); // id
    this.set32(at + 8, offset);
    this.set32(at + 12, length);
    return at;
  }

  bars(): readonly PciBar[] {
    return [{ index: VIRTIO_BAR, size: BAR_SIZE, device: this.bar, name: this.name }];
  }

  // ---- configuration space -------------------------------------------------------------------
  override configRead(offset: number, size: AccessSize): number {
    const data = this.pciCfgCap + 16;
    if (offset >= data && offset < data + 4) {
      const v = this.pciCfgAccess();
      if (v === undefined) return 0;
      return (this.barRead(v.offset, v.length) >>> (8 * (offset - data))) & (size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1);
    }
    return super.configRead(offset, size);
  }

  override configWrite(offset: number, size: AccessSize, value: number): void {
    super.configWrite(offset, size, value);
    const end = offset + size;
    const cap = this.msix.capOffset;
    const msixControl = offset < cap + 4 && end > cap + 2;
    if (msixControl) this.msix.setControl(super.configRead(cap + 2, 2));
    if (msixControl || (offset < PCI_COMMAND + 2 && end > PCI_COMMAND)) this.updateIntx();
    const data = this.pciCfgCap + 16;
    if (offset === data) {
      const v = this.pciCfgAccess();
      if (v !== undefined && v.length <= size) this.barWrite(v.offset, v.length, value);
    }
  }

  /** The BAR access VIRTIO_PCI_CAP_PCI_CFG selects, if it is a valid one. */
  private pciCfgAccess(): { offset: number; length: 1 | 2 | 4 } | undefined {
    const c = this.pciCfgCap;
    const bar = this.bytes[c + 4]!;
    const offset = this.get32(c + 8);
    const length = this.get32(c + 12);
    if (bar !== VIRTIO_BAR || (length !== 1 && length !== 2 && length !== 4) || offset % length !== 0 || offset + length > BAR_SIZE) return undefined;
    return { offset, length };
  }

  // ---- the BAR -------------------------------------------------------------------------------
  private barRead(offset: number, size: AccessSize): number {
    if (offset < COMMON_OFFSET + REGION) return offset < COMMON_LENGTH ? this.commonRead(offset, size) : 0;
    if (offset < ISR_OFFSET + REGION) {
      if (offset !== ISR_OFFSET) return 0;
      const v = this.isr;
      this.isr = 0; // reading acknowledges (and deasserts INTx)
      this.updateIntx();
      return v;
    }
    if (offset < DEVICE_CFG_OFFSET + REGION) {
      const o = offset - DEVICE_CFG_OFFSET;
      return o + size <= this.device.configSize ? this.device.readConfig(o, size) >>> 0 : 0;
    }
    if (offset >= MSIX_TABLE_OFFSET && offset < MSIX_TABLE_OFFSET + REGION) return this.msix.tableRead(offset - MSIX_TABLE_OFFSET, size);
    if (offset >= MSIX_PBA_OFFSET && offset < MSIX_PBA_OFFSET + REGION) return this.msix.pbaRead(offset - MSIX_PBA_OFFSET, size);
    return 0;
  }

  private barWrite(offset: number, size: AccessSize, value: number): void {
    if (offset < COMMON_OFFSET + REGION) {
      if (offset < COMMON_LENGTH) this.commonWrite(offset, size, value);
    } else if (offset < ISR_OFFSET + REGION) {
      // ISR is read-only
    } else if (offset < DEVICE_CFG_OFFSET + REGION) {
      const o = offset - DEVICE_CFG_OFFSET;
      if (o + size <= this.device.configSize) this.device.writeConfig(o, size, value);
    } else if (offset >= NOTIFY_OFFSET && offset < NOTIFY_OFFSET + REGION) {
      const o = offset - NOTIFY_OFFSET;
      if (o % NOTIFY_OFF_MULTIPLIER === 0) this.doorbell(o / NOTIFY_OFF_MULTIPLIER);
    } else if (offset >= MSIX_TABLE_OFFSET && offset < MSIX_TABLE_OFFSET + REGION) {
      this.msix.tableWrite(offset - MSIX_TABLE_OFFSET, size, value);
    }
  }

  private doorbell(q: number): void {
    this.notifyCount++;
    if (q >= this.queues.length || this.broken || !(this.status & STATUS_DRIVER_OK) || !this.queues[q]!.ready) return;
    this.device.notify(q);
  }

  // ---- common configuration ------------------------------------------------------------------
  private commonRead(offset: number, size: AccessSize): number {
    let v = 0;
    for (const [at, len] of COMMON_FIELDS) {
      if (at + len <= offset || at >= offset + size) continue;
      const field = this.readField(at);
      for (let b = 0; b < len; b++) {
        const o = at + b - offset;
        if (o >= 0 && o < size) v |= ((field >>> (8 * b)) & 0xff) << (8 * o);
      }
    }
    return v >>> 0;
  }

  private commonWrite(offset: number, size: AccessSize, value: number): void {
    for (const [at, len] of COMMON_FIELDS) {
      if (at + len <= offset || at >= offset + size) continue;
      // Merge a partial access into the field's current value.
      let field = at >= offset && at + len <= offset + size ? 0 : this.readField(at);
      for (let b = 0; b < len; b++) {
        const o = at + b - offset;
        if (o < 0 || o >= size) continue;
        field = (field & ~(0xff << (8 * b))) | (((value >>> (8 * o)) & 0xff) << (8 * b));
      }
      this.writeField(at, field >>> 0);
    }
  }

  private selected(): SplitQueue | undefined {
    return this.queues[this.queueSelect];
  }

  private readField(at: number): number {
    const q = this.selected();
    switch (at) {
      case COMMON_DFSELECT:
        return this.deviceFeatureSelect;
      case COMMON_DF:
        return this.deviceFeatureSelect < 2 ? Number((this.offered >> BigInt(32 * this.deviceFeatureSelect)) & 0xffff_ffffn) : 0;
      case COMMON_GFSELECT:
        return this.driverFeatureSelect;
      case COMMON_GF:
        return this.driverFeatureSelect < 2 ? this.driverFeatures[this.driverFeatureSelect]! : 0;
      case COMMON_MSIX_CONFIG:
        return this.configVector;
      case COMMON_NUM_QUEUES:
        return this.queues.length;
      case COMMON_STATUS:
        return this.status;
      case COMMON_CFG_GENERATION:
        return this.configGeneration;
      case COMMON_Q_SELECT:
        return this.queueSelect;
      case COMMON_Q_SIZE:
        return q ? q.size : 0;
      case COMMON_Q_MSIX:
        return q ? this.queueVector[this.queueSelect]! : VIRTIO_MSI_NO_VECTOR;
      case COMMON_Q_ENABLE:
        return q?.ready ? 1 : 0;
      case COMMON_Q_NOTIFY_OFF:
      case COMMON_Q_NOTIFY_DATA:
        return q ? this.queueSelect : 0;
      case COMMON_Q_DESC_LO:
        return q ? q.descAddr % 0x1_0000_0000 : 0;
      case COMMON_Q_DESC_HI:
        return q ? Math.floor(q.descAddr / 0x1_0000_0000) : 0;
      case COMMON_Q_AVAIL_LO:
        return q ? q.availAddr % 0x1_0000_0000 : 0;
      case COMMON_Q_AVAIL_HI:
        return q ? Math.floor(q.availAddr / 0x1_0000_0000) : 0;
      case COMMON_Q_USED_LO:
        return q ? q.usedAddr % 0x1_0000_0000 : 0;
      case COMMON_Q_USED_HI:
        return q ? Math.floor(q.usedAddr / 0x1_0000_0000) : 0;
      default:
        return 0; // queue_reset: VIRTIO_F_RING_RESET is not offered
    }
  }

  private writeField(at: number, v: number): void {
    const q = this.selected();
    const hi = (x: number): number => v * 0x1_0000_0000 + (x % 0x1_0000_0000);
    const lo = (x: number): number => Math.floor(x / 0x1_0000_0000) * 0x1_0000_0000 + v;
    // Queue addresses and size are fixed while the queue is enabled (4.1.4.3.2).
    const editable = q !== undefined && !q.ready;
    switch (at) {
      case COMMON_DFSELECT:
        this.deviceFeatureSelect = v;
        break;
      case COMMON_GFSELECT:
        this.driverFeatureSelect = v;
        break;
      case COMMON_GF:
        if (this.driverFeatureSelect < 2 && !(this.status & STATUS_FEATURES_OK)) this.driverFeatures[this.driverFeatureSelect] = v;
        break;
      case COMMON_MSIX_CONFIG:
        this.configVector = this.vectorOrNone(v);
        break;
      case COMMON_STATUS:
        this.writeStatus(v & 0xff);
        break;
      case COMMON_Q_SELECT:
        this.queueSelect = v;
        break;
      case COMMON_Q_SIZE:
        if (editable) q.size = v;
        break;
      case COMMON_Q_MSIX:
        if (q) this.queueVector[this.queueSelect] = this.vectorOrNone(v);
        break;
      case COMMON_Q_ENABLE:
        if (editable && v === 1) this.enableQueue(q);
        break;
      case COMMON_Q_DESC_LO:
        if (editable) q.descAddr = lo(q.descAddr);
        break;
      case COMMON_Q_DESC_HI:
        if (editable) q.descAddr = hi(q.descAddr);
        break;
      case COMMON_Q_AVAIL_LO:
        if (editable) q.availAddr = lo(q.availAddr);
        break;
      case COMMON_Q_AVAIL_HI:
        if (editable) q.availAddr = hi(q.availAddr);
        break;
      case COMMON_Q_USED_LO:
        if (editable) q.usedAddr = lo(q.usedAddr);
        break;
      case COMMON_Q_USED_HI:
        if (editable) q.usedAddr = hi(q.usedAddr);
        break;
      default:
        break; // read-only fields
    }
  }

  /** A vector the device has, or VIRTIO_MSI_NO_VECTOR (so the driver reads back its failure). */
  private vectorOrNone(v: number): number {
    return v < this.msix.vectors ? v : VIRTIO_MSI_NO_VECTOR;
  }

  private enableQueue(q: SplitQueue): void {
    const err = q.activate(this.memory, {
      indirect: (this.negotiated & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
      eventIdx: (this.negotiated & bit(VIRTIO_F_EVENT_IDX)) !== 0n,
    });
    if (err) this.fail(err);
  }

  private writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    const old = this.status;
    let next = (v & ~STATUS_DEVICE_NEEDS_RESET) | (old & STATUS_DEVICE_NEEDS_RESET);
    if (next & STATUS_FEATURES_OK && !(old & STATUS_FEATURES_OK)) {
      const wanted = BigInt(this.driverFeatures[0]!) | (BigInt(this.driverFeatures[1]!) << 32n);
      if ((wanted & ~this.offered) !== 0n || (wanted & bit(VIRTIO_F_VERSION_1)) === 0n) next &= ~STATUS_FEATURES_OK;
      else this.negotiated = wanted;
    }
    this.status = next;
    if (next & STATUS_DRIVER_OK && !(old & STATUS_DRIVER_OK) && !this.broken) {
      this.device.activate();
      // Buffers made available before DRIVER_OK were not served: look now.
      for (let i = 0; i < this.queues.length && !this.broken; i++) if (this.queues[i]!.ready) this.device.notify(i);
    }
  }

  /** Device reset (status 0): every register back to its initial value. */
  reset(): void {
    this.status = 0;
    this.deviceFeatureSelect = this.driverFeatureSelect = 0;
    this.driverFeatures.fill(0);
    this.negotiated = 0n;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
    for (const q of this.queues) q.reset();
    this.queueVector.fill(VIRTIO_MSI_NO_VECTOR);
    this.isr = 0;
    this.broken = false;
    this.updateIntx();
    this.device.reset();
  }

  // ---- VirtioTransport -----------------------------------------------------------------------
  queue(index: number): SplitQueue {
    return this.queues[index]!;
  }

  usedBuffers(index: number): void {
    const q = this.queues[index];
    if (!q || this.broken || !q.needsInterrupt(this.memory)) return;
    this.interrupt(this.queueVector[index]!, ISR_QUEUE);
  }

  fail(error: VirtqueueError): void {
    this.failedCount++;
    this.lastError = error.message;
    if (this.broken) return;
    this.broken = true;
    this.status |= STATUS_DEVICE_NEEDS_RESET;
    if (this.status & STATUS_DRIVER_OK) this.configChanged();
  }

  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
    this.interrupt(this.configVector, ISR_CONFIG);
  }

  private interrupt(vector: number, isrBit: number): void {
    if (this.msix.isEnabled) {
      if (isrBit === ISR_CONFIG) this.isr |= isrBit; // 4.1.4.5.1: set before a config notification
      if (vector !== VIRTIO_MSI_NO_VECTOR) this.msix.signal(vector);
      return;
    }
    this.isr |= isrBit;
    this.updateIntx();
  }

  /** INTA# follows the ISR while MSI-X is off and the command register allows INTx. */
  private updateIntx(): void {
    const asserted = this.isr !== 0 && !this.msix.isEnabled;
    const status = super.configRead(PCI_STATUS, 2);
    this.set16(PCI_STATUS, asserted ? status | PCI_STATUS_INTERRUPT : status & ~PCI_STATUS_INTERRUPT);
    const level = asserted && (super.configRead(PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE) === 0;
    if (level !== this.intxLevel) {
      this.intxLevel = level;
      this.intx.set(level);
    }
  }
}

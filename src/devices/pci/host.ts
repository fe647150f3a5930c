/**
 * The PCI host: configuration mechanism #1 (PCI Local Bus spec 3.0, 3.2.2.3.2) at ports
 * 0xcf8 (CONFIG_ADDRESS, dword only) and 0xcfc..0xcff (CONFIG_DATA, any size), plus an optional
 * ECAM (MMCONFIG) window, over a single bus 0. Device 0 is an Intel 440FX-style host bridge
 * (8086:1237, class 06/00/00), which is what Linux's pci_sanity_check looks for.
 *
 * Devices implement `PciDevice` over their 256-byte configuration space; `PciConfigSpace` is a
 * helper with per-byte write masks (BAR sizing falls out of the mask: write all-ones, read back
 * ~(size-1) | flags). Empty slots, other buses and a disabled CONFIG_ADDRESS read all-ones.
 *
 * Memory BARs: a device lists its BARs (`bars()`) and the host maps each one on the MMIO bus
 * (when given one) at the address the guest programmed, while the function's COMMAND.MEMORY is
 * set; a BAR moved or disabled is unmapped. `PciConfigSpace` helps a device define BARs (32- or
 * 64-bit) and a capability list.
 *
 * Port 0xcf9 sits inside CONFIG_ADDRESS: on PIIX a byte access there is the reset control
 * register, so a byte access at offset 1 is forwarded to `resetControl` when one is given.
 * Attach the host at PORT_PCI_CONFIG_ADDRESS over PCI_CONFIG_PORTS (8) ports.
 */
import { BusError, type AccessSize, type Bus, type BusDevice } from '../../machine/bus.js';

export const PCI_CONFIG_PORTS = 8;
export const PCI_CONFIG_SPACE_SIZE = 256;
export const PCI_SLOTS = 32;
export const PCI_FUNCTIONS = 8;

// CONFIG_ADDRESS
const CONFIG_ENABLE = 0x8000_0000;
// Configuration header offsets
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BAR0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
/** First byte after the standard header: capabilities go from here. */
export const PCI_CAPABILITIES_START = 0x40;
// Status register
export const PCI_STATUS_INTERRUPT = 0x8;
export const PCI_STATUS_CAP_LIST = 0x10;
// Memory BAR flags (low bits of the BAR)
export const PCI_BAR_MEM_TYPE_64 = 0x4;
export const PCI_BAR_MEM_PREFETCH = 0x8;
export const PCI_BAR_IO = 0x1;
// Capability IDs
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_CAP_ID_VNDR = 0x09;
// Command register
export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;

export const INTEL_VENDOR_ID = 0x8086;
export const I440FX_DEVICE_ID = 0x1237;

const ONES = [0, 0xff, 0xffff, 0, 0xffff_ffff] as const;

export class PciError extends Error {
  override name = 'PciError';
}

/** A memory BAR of a PCI function: `size` bytes (a power of two) decoded by `device`. */
export interface PciBar {
  index: number;
  size: number;
  device: BusDevice;
  /** Name on the MMIO bus (for listings and overlap errors). */
  name: string;
}

/** One PCI function's configuration space as the host sees it. */
export interface PciDevice {
  /** Read `size` bytes at `offset` (0..255, never crossing a dword). */
  configRead(offset: number, size: AccessSize): number;
  configWrite(offset: number, size: AccessSize, value: number): void;
  /** Memory BARs the host maps on the MMIO bus where the guest programs them. */
  bars?(): readonly PciBar[];
}

/** A 256-byte configuration space with per-byte write masks; a base for simple devices. */
export class PciConfigSpace implements PciDevice {
  readonly bytes = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  readonly writeMask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);

  set8(offset: number, v: number): void {
    this.bytes[offset] = v;
  }
  set16(offset: number, v: number): void {
    this.bytes[offset] = v & 0xff;
    this.bytes[offset + 1] = (v >> 8) & 0xff;
  }
  set32(offset: number, v: number): void {
    this.set16(offset, v & 0xffff);
    this.set16(offset + 2, v >>> 16);
  }
  get32(offset: number): number {
    return (this.bytes[offset]! | (this.bytes[offset + 1]! << 8) | (this.bytes[offset + 2]! << 16) | (this.bytes[offset + 3]! << 24)) >>> 0;
  }
  /** Make bits in `mask` (a `size`-byte little-endian mask at `offset`) guest-writable. */
  setWritable(offset: number, size: number, mask: number): void {
    for (let i = 0; i < size; i++) this.writeMask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  private capEnd = PCI_CAPABILITIES_START;
  private lastCap = 0;

  /**
   * Append a capability of `length` bytes (header included) with ID `id` to the capability
   * list; returns its offset. The caller fills the body (bytes 2..).
   */
  addCapability(id: number, length: number): number {
    const at = this.capEnd;
    const size = (length + 3) & ~3;
    if (length < 2 || at + size > PCI_CONFIG_SPACE_SIZE) {
      throw new PciError(`Cannot add a ${length}-byte PCI capability at 0x${at.toString(16)}: the configuration space is full`);
    }
    this.set8(at, id);
    this.set8(at + 1, 0);
    if (this.lastCap === 0) this.set8(PCI_CAPABILITY_LIST, at);
    else this.set8(this.lastCap + 1, at);
    this.set16(PCI_STATUS, this.configRead(PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
    this.lastCap = at;
    this.capEnd = at + size;
    return at;
  }

  /**
   * Define memory BAR `index` of `size` bytes (a power of two, at least 16): the low bits read
   * as the type flags, sizing works through the write mask (write all-ones, read ~(size-1)).
   * A 64-bit BAR also takes index + 1 for its high half.
   */
  defineMemoryBar(index: number, size: number, opts: { is64?: boolean; prefetchable?: boolean } = {}): void {
    const is64 = opts.is64 ?? false;
    if (!Number.isInteger(size) || size < 16 || size > 0x8000_0000 || (size & (size - 1)) !== 0 || index < 0 || index > (is64 ? 4 : 5)) {
      throw new PciError(`Cannot define BAR${index} of ${size} bytes: the size must be a power of two from 16 bytes to 2 GiB`);
    }
    const at = PCI_BAR0 + 4 * index;
    this.set32(at, (is64 ? PCI_BAR_MEM_TYPE_64 : 0) | (opts.prefetchable ? PCI_BAR_MEM_PREFETCH : 0));
    this.setWritable(at, 4, ~(size - 1));
    if (is64) {
      this.set32(at + 4, 0);
      this.setWritable(at + 4, 4, 0xffff_ffff);
    }
  }

  /** Program a memory BAR as firmware would (the guest may move it later). */
  programBar(index: number, address: number): void {
    const at = PCI_BAR0 + 4 * index;
    const flags = this.get32(at) & 0xf;
    this.set32(at, ((address % 0x1_0000_0000) & ~0xf & this.get32Mask(at)) | flags);
    if (flags & PCI_BAR_MEM_TYPE_64) this.set32(at + 4, Math.floor(address / 0x1_0000_0000));
  }

  private get32Mask(offset: number): number {
    return (this.writeMask[offset]! | (this.writeMask[offset + 1]! << 8) | (this.writeMask[offset + 2]! << 16) | (this.writeMask[offset + 3]! << 24)) >>> 0;
  }

  configRead(offset: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | (this.bytes[offset + i] ?? 0xff);
    return v >>> 0;
  }

  configWrite(offset: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      if (at >= PCI_CONFIG_SPACE_SIZE) return;
      const m = this.writeMask[at]!;
      const b = (value >>> (8 * i)) & 0xff;
      this.bytes[at] = (this.bytes[at]! & ~m) | (b & m);
    }
  }
}

/** Device 0: the host bridge. */
export class HostBridge extends PciConfigSpace {
  constructor() {
    super();
    this.set16(PCI_VENDOR_ID, INTEL_VENDOR_ID);
    this.set16(PCI_DEVICE_ID, I440FX_DEVICE_ID);
    this.set16(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    this.set16(PCI_STATUS, 0x0280); // fast back-to-back capable, medium DEVSEL timing
    this.set8(PCI_REVISION_ID, 0x02);
    this.set8(PCI_CLASS_PROG, 0x00);
    this.set16(PCI_CLASS_DEVICE, 0x0600); // bridge: host
    this.set8(PCI_HEADER_TYPE, 0x00);
  }
}

export interface PciHostOptions {
  /** Receives byte accesses to port 0xcf9 (the PIIX reset control register). */
  resetControl?: BusDevice;
  /** Where memory BARs are mapped; without it BARs are never decoded. */
  mmio?: Bus;
}

/** The memory address a function's BAR decodes now, or undefined (disabled, unprogrammed). */
export function barAddress(dev: PciDevice, index: number): number | undefined {
  if ((dev.configRead(PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) === 0) return undefined;
  const lo = dev.configRead(PCI_BAR0 + 4 * index, 4);
  if (lo & PCI_BAR_IO) return undefined;
  const hi = (lo & 0x6) === PCI_BAR_MEM_TYPE_64 ? dev.configRead(PCI_BAR0 + 4 * index + 4, 4) : 0;
  const address = hi * 0x1_0000_0000 + ((lo & ~0xf) >>> 0);
  return address === 0 ? undefined : address;
}

/** Snapshot state of the PCI host. */
export interface PciHostState {
  /** CONFIG_ADDRESS (0xcf8). */
  address: number;
  /** The host bridge's 256 bytes of configuration space. */
  bridge: number[];
  /** The reset control register at 0xcf9 (its latched SYS_RST and FULL_RST bits). */
  resetControl: number;
}

/** Bits of the PIIX reset control register that hold a value: SYS_RST (0x02), FULL_RST (0x08). */
export const RESET_CONTROL_LATCHED = 0x0a;

export class PciHost implements BusDevice {
  private address = 0;
  private readonly devices: (PciDevice | undefined)[] = new Array(PCI_SLOTS * PCI_FUNCTIONS);
  private readonly resetControl: BusDevice | undefined;
  private readonly mmio: Bus | undefined;
  /** Where each function's BARs are mapped now (by function index, then BAR index). */
  private readonly mapped = new Map<number, Map<number, number>>();
  /** BAR placements refused because they overlapped something else on the MMIO bus. */
  barConflictCount = 0;
  /** ECAM window (attach at PCI_ECAM_START; decodes bus 0 only). */
  readonly ecam: BusDevice;

  constructor(options: PciHostOptions = {}) {
    this.resetControl = options.resetControl;
    this.mmio = options.mmio;
    this.devices[0] = new HostBridge();
    this.ecam = {
      read: (offset, size) => {
        const dev = this.ecamTarget(offset);
        const reg = offset & 0xfff;
        if (dev === undefined) return ONES[size];
        if (reg >= PCI_CONFIG_SPACE_SIZE) return 0; // no extended capabilities
        return dev.configRead(reg, size) >>> 0;
      },
      write: (offset, size, value) => {
        const dev = this.ecamTarget(offset);
        const reg = offset & 0xfff;
        if (dev !== undefined && reg < PCI_CONFIG_SPACE_SIZE && (reg & (size - 1)) === 0) {
          dev.configWrite(reg, size, value);
          this.updateBars(offset >>> 12);
        }
      },
    };
  }

  /** Plug `device` into bus 0, `slot` (1..31), `fn` (0..7). */
  addDevice(slot: number, fn: number, device: PciDevice): void {
    if (!Number.isInteger(slot) || slot < 1 || slot >= PCI_SLOTS || !Number.isInteger(fn) || fn < 0 || fn >= PCI_FUNCTIONS) {
      throw new PciError(`Cannot add PCI device at ${slot}.${fn}: slot must be 1..31 and function 0..7`);
    }
    const i = slot * PCI_FUNCTIONS + fn;
    if (this.devices[i]) throw new PciError(`Cannot add PCI device at 00:${slot.toString(16)}.${fn}: slot is taken`);
    this.devices[i] = device;
    this.updateBars(i);
  }

  /** Map, move or unmap function `i`'s BARs to match its configuration space. */
  private updateBars(i: number): void {
    const dev = this.devices[i];
    const mmio = this.mmio;
    if (!dev?.bars || !mmio) return;
    let maps = this.mapped.get(i);
    if (!maps) this.mapped.set(i, (maps = new Map()));
    for (const bar of dev.bars()) {
      let want = barAddress(dev, bar.index);
      if (want !== undefined && want + bar.size > 2 ** 52) want = undefined;
      const now = maps.get(bar.index);
      if (now === want) continue;
      if (now !== undefined) mmio.remove(now);
      maps.delete(bar.index);
      if (want === undefined) continue;
      try {
        mmio.insert(want, bar.size, bar.device, bar.name);
        maps.set(bar.index, want);
      } catch (e) {
        if (!(e instanceof BusError)) throw e;
        this.barConflictCount++; // a guest placing a BAR over something else: leave it undecoded
      }
    }
  }

  /**
   * Snapshot: CONFIG_ADDRESS, the host bridge's configuration space and the reset control
   * register. Each function's own configuration space is its device's to save.
   */
  save(): PciHostState {
    const bridge = this.devices[0] as HostBridge;
    return { address: this.address, bridge: Array.from(bridge.bytes), resetControl: this.resetControl ? this.resetControl.read(0, 1) & 0xff : 0 };
  }

  /**
   * Snapshot restore (`s` validated by the caller), after the functions' configuration spaces
   * were restored: every memory BAR is mapped again where its configuration space says.
   */
  restore(s: PciHostState): void {
    this.address = s.address >>> 0;
    (this.devices[0] as HostBridge).bytes.set(s.bridge);
    // the latched SYS_RST/FULL_RST bits only: never the RST_CPU bit (0x04) that resets
    this.resetControl?.write(0, 1, s.resetControl & RESET_CONTROL_LATCHED);
    for (let i = 0; i < this.devices.length; i++) if (this.devices[i]) this.updateBars(i);
  }

  /** The first free slot (for the builder), or -1. */
  freeSlot(): number {
    for (let s = 1; s < PCI_SLOTS; s++) if (!this.devices[s * PCI_FUNCTIONS]) return s;
    return -1;
  }

  read(offset: number, size: AccessSize): number {
    if (offset < 4) {
      if (size === 4 && offset === 0) return this.address;
      if (offset === 1 && size === 1 && this.resetControl) return this.resetControl.read(0, 1);
      return ONES[size];
    }
    const dev = this.target();
    if (dev === undefined) return ONES[size];
    const reg = (this.address & 0xfc) + (offset - 4);
    if ((reg & 3) + size > 4) return ONES[size]; // crosses the dword
    return dev.configRead(reg, size) >>> 0;
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (offset < 4) {
      if (size === 4 && offset === 0) this.address = (value & 0x80ff_fffc) >>> 0;
      else if (offset === 1 && size === 1 && this.resetControl) this.resetControl.write(0, 1, value);
      return; // other partial accesses are not CONFIG_ADDRESS cycles
    }
    const dev = this.target();
    if (dev === undefined) return;
    const reg = (this.address & 0xfc) + (offset - 4);
    if ((reg & 3) + size > 4) return;
    dev.configWrite(reg, size, value);
    this.updateBars((this.address >>> 8) & 0xff);
  }

  private target(): PciDevice | undefined {
    const a = this.address;
    if ((a & CONFIG_ENABLE) === 0) return undefined;
    if ((a >>> 16) & 0xff) return undefined; // only bus 0
    return this.devices[(a >>> 8) & 0xff];
  }

  private ecamTarget(offset: number): PciDevice | undefined {
    if (offset >= 1 << 20) return undefined; // bus != 0
    return this.devices[offset >>> 12];
  }
}

/**
 * MSI-X (PCI Local Bus spec 3.0, 6.8.2): the capability's Message Control word, the vector
 * table and the pending bit array (PBA), for a device to place in one of its memory BARs.
 *
 *   capability (12 bytes)  id 0x11, next, Message Control le16 (bits 10:0 table size - 1,
 *                          bit 14 function mask, bit 15 enable), table offset|BIR le32,
 *                          PBA offset|BIR le32
 *   table entry (16 bytes) message address lo, message address hi, message data,
 *                          vector control (bit 0: masked; set at reset)
 *   PBA                    one bit per vector, in 64-bit words; read-only
 *
 * `signal(vector)` sends the entry's message through the injected `MsiSink`, or, while the
 * vector or the whole function is masked, sets its pending bit; clearing the mask sends a
 * pending message and clears the bit.
 */
import type { AccessSize } from '../../machine/bus.js';
import type { MsiSink } from '../../machine/irq.js';
import { PCI_CAP_ID_MSIX, type PciConfigSpace } from './host.js';

export const MSIX_ENTRY_SIZE = 16;
export const MSIX_MAX_VECTORS = 2048;
// Message Control
export const MSIX_CONTROL_ENABLE = 0x8000;
export const MSIX_CONTROL_FUNCTION_MASK = 0x4000;
export const MSIX_CONTROL_TABLE_SIZE = 0x7ff;
// Vector control
export const MSIX_VECTOR_MASKED = 0x1;
const ENTRY_ADDR_LO = 0;
const ENTRY_ADDR_HI = 4;
const ENTRY_DATA = 8;
const ENTRY_CONTROL = 12;

export class MsixError extends Error {
  override name = 'MsixError';
}

export interface MsixLayout {
  vectors: number;
  /** BAR holding the table and the PBA, and their offsets in it (8-byte aligned). */
  bar: number;
  tableOffset: number;
  pbaOffset: number;
}

/** Snapshot state: the vector table and PBA bytes, and Message Control's two bits. */
export interface MsixState {
  enabled: boolean;
  functionMasked: boolean;
  /** vectors x 16 bytes. */
  table: number[];
  /** One bit per vector, in 64-bit words. */
  pba: number[];
}

export class Msix {
  readonly vectors: number;
  private readonly table: Uint8Array;
  private readonly tableView: DataView;
  private readonly pending: Uint8Array;
  private enabled = false;
  private functionMasked = false;
  /** Offset of the capability in configuration space (after `addCapability`). */
  capOffset = -1;
  /** Messages set pending because their vector or the function was masked. */
  maskedCount = 0;

  constructor(
    readonly layout: MsixLayout,
    private readonly sink: MsiSink,
  ) {
    const n = layout.vectors;
    if (!Number.isInteger(n) || n < 1 || n > MSIX_MAX_VECTORS) throw new MsixError(`Cannot build an MSI-X table of ${n} vectors: use 1 to ${MSIX_MAX_VECTORS}`);
    if (layout.tableOffset % 8 || layout.pbaOffset % 8) throw new MsixError('MSI-X table and PBA offsets must be 8-byte aligned');
    this.vectors = n;
    this.table = new Uint8Array(n * MSIX_ENTRY_SIZE);
    this.tableView = new DataView(this.table.buffer);
    this.pending = new Uint8Array(Math.ceil(n / 64) * 8);
    this.resetTable();
  }

  /** Bytes of the table and the PBA in the BAR. */
  get tableSize(): number {
    return this.table.length;
  }
  get pbaSize(): number {
    return this.pending.length;
  }

  /** True when the guest enabled MSI-X (INTx is then off). */
  get isEnabled(): boolean {
    return this.enabled;
  }

  /** Add the capability to `cfg` (Message Control's mask and enable bits guest-writable). */
  addCapability(cfg: PciConfigSpace): number {
    const at = cfg.addCapability(PCI_CAP_ID_MSIX, 12);
    cfg.set16(at + 2, this.vectors - 1);
    cfg.setWritable(at + 2, 2, MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    cfg.set32(at + 4, this.layout.tableOffset | this.layout.bar);
    cfg.set32(at + 8, this.layout.pbaOffset | this.layout.bar);
    this.capOffset = at;
    return at;
  }

  /** The guest wrote Message Control (call after the configuration space took the write). */
  setControl(control: number): void {
    const wasBlocked = !this.enabled || this.functionMasked;
    this.enabled = (control & MSIX_CONTROL_ENABLE) !== 0;
    this.functionMasked = (control & MSIX_CONTROL_FUNCTION_MASK) !== 0;
    if (wasBlocked && this.enabled && !this.functionMasked) {
      for (let v = 0; v < this.vectors; v++) this.flush(v);
    }
  }

  /** Back to power-on: every vector masked, nothing pending, disabled. */
  resetTable(): void {
    this.table.fill(0);
    this.pending.fill(0);
    for (let v = 0; v < this.vectors; v++) this.tableView.setUint32(v * MSIX_ENTRY_SIZE + ENTRY_CONTROL, MSIX_VECTOR_MASKED, true);
    this.enabled = false;
    this.functionMasked = false;
  }

  /** Raise `vector`: send its message now, or remember it while masked. */
  signal(vector: number): void {
    if (!(vector >= 0 && vector < this.vectors)) return;
    if (!this.enabled) return;
    if (this.functionMasked || this.vectorMasked(vector)) {
      this.pending[vector >> 3]! |= 1 << (vector & 7);
      this.maskedCount++;
      return;
    }
    this.send(vector);
  }

  isPending(vector: number): boolean {
    return (this.pending[vector >> 3]! & (1 << (vector & 7))) !== 0;
  }

  /** One line for a state dump: enabled, function mask, masked and pending vectors. */
  describe(): string {
    const masked: number[] = [];
    const pending: number[] = [];
    for (let v = 0; v < this.vectors; v++) {
      if (this.vectorMasked(v)) masked.push(v);
      if (this.isPending(v)) pending.push(v);
    }
    return `${this.enabled ? 'on' : 'off'}${this.functionMasked ? ' function-masked' : ''}, masked [${masked.join(' ')}], pending [${pending.join(' ')}]`;
  }

  save(): MsixState {
    return { enabled: this.enabled, functionMasked: this.functionMasked, table: Array.from(this.table), pba: Array.from(this.pending) };
  }

  /** Snapshot restore: the table and PBA as saved (nothing is sent); `s` was validated. */
  restore(s: MsixState): void {
    if (s.table.length !== this.table.length || s.pba.length !== this.pending.length) {
      throw new MsixError(`Cannot restore MSI-X state of ${s.table.length / MSIX_ENTRY_SIZE} vectors into a table of ${this.vectors}`);
    }
    this.table.set(s.table);
    this.pending.set(s.pba);
    this.enabled = s.enabled;
    this.functionMasked = s.functionMasked;
  }

  private vectorMasked(vector: number): boolean {
    return (this.tableView.getUint32(vector * MSIX_ENTRY_SIZE + ENTRY_CONTROL, true) & MSIX_VECTOR_MASKED) !== 0;
  }

  private send(vector: number): void {
    const e = vector * MSIX_ENTRY_SIZE;
    const v = this.tableView;
    const address = v.getUint32(e + ENTRY_ADDR_HI, true) * 0x1_0000_0000 + v.getUint32(e + ENTRY_ADDR_LO, true);
    this.sink.sendMsi(address, v.getUint32(e + ENTRY_DATA, true));
  }

  /** Send `vector`'s pending message if nothing masks it any more. */
  private flush(vector: number): void {
    if (!this.isPending(vector) || !this.enabled || this.functionMasked || this.vectorMasked(vector)) return;
    this.pending[vector >> 3]! &= ~(1 << (vector & 7));
    this.send(vector);
  }

  tableRead(offset: number, size: AccessSize): number {
    if (offset < 0 || offset + size > this.table.length) return 0;
    return readLe(this.table, offset, size);
  }

  tableWrite(offset: number, size: AccessSize, value: number): void {
    if (offset < 0 || offset + size > this.table.length) return;
    for (let i = 0; i < size; i++) this.table[offset + i] = (value >>> (8 * i)) & 0xff;
    const vector = Math.floor(offset / MSIX_ENTRY_SIZE);
    // Reserved vector-control bits read as zero.
    const ctl = vector * MSIX_ENTRY_SIZE + ENTRY_CONTROL;
    this.tableView.setUint32(ctl, this.tableView.getUint32(ctl, true) & MSIX_VECTOR_MASKED, true);
    this.flush(vector);
  }

  pbaRead(offset: number, size: AccessSize): number {
    if (offset < 0 || offset + size > this.pending.length) return 0;
    return readLe(this.pending, offset, size);
  }
}

function readLe(bytes: Uint8Array, offset: number, size: AccessSize): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = (v << 8) | bytes[offset + i]!;
  return v >>> 0;
}

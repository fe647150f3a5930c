/**
 * National Semiconductor 16550A UART (8 registers), the serial console of the guest.
 *
 * Registers (DLAB = LCR bit 7 selects the divisor latch at offsets 0/1):
 *   0 RBR (read) / THR (write) / DLL      4 MCR: DTR, RTS, OUT1, OUT2, LOOP
 *   1 IER / DLM                           5 LSR: DR, OE, PE, FE, BI, THRE, TEMT
 *   2 IIR (read) / FCR (write)            6 MSR: deltas + CTS, DSR, RI, DCD
 *   3 LCR                                 7 SCR
 *
 * Transmission is instantaneous: THR is always empty again after a write, so THRE and TEMT
 * read as set and a THRE interrupt follows every write when enabled. Written bytes are batched
 * and handed to `out` on a microtask (or when the batch is full, or on `flush()`).
 *
 * Reception is flow-controlled by the host side: `receive(bytes)` accepts only what fits in the
 * 16-byte RX FIFO (1 byte with the FIFO disabled) and only once the guest has set the port up
 * (IER.ERBFI or MCR.OUT2 set, not in loopback); `onRxSpace` tells the host when to try again.
 * Nothing is dropped and nothing is buffered without bound.
 *
 * Interrupt priorities as in the datasheet: line status > received data (trigger level reached,
 * or character timeout, which we report at once) > THR empty > modem status. Like a PC, the
 * IRQ reaches the interrupt controller only while MCR.OUT2 is set and loopback is off. Reading
 * IIR clears a THRE interrupt it reports; writing IER with ETBEI set while THR is empty raises
 * one (Linux's 8250 driver tests for exactly this).
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import type { IrqLine } from '../../../machine/irq.js';

// Register offsets
export const UART_RBR_THR = 0;
export const UART_IER = 1;
export const UART_IIR_FCR = 2;
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;

// IER
export const IER_ERBFI = 0x01; // received data available
export const IER_ETBEI = 0x02; // transmitter holding register empty
export const IER_ELSI = 0x04; // receiver line status
export const IER_EDSSI = 0x08; // modem status
// IIR interrupt identification
export const IIR_NO_INT = 0x01;
export const IIR_MODEM_STATUS = 0x00;
export const IIR_THR_EMPTY = 0x02;
export const IIR_RX_DATA = 0x04;
export const IIR_LINE_STATUS = 0x06;
export const IIR_CHAR_TIMEOUT = 0x0c;
export const IIR_FIFO_ENABLED = 0xc0;
// FCR
export const FCR_FIFO_ENABLE = 0x01;
export const FCR_RX_RESET = 0x02;
export const FCR_TX_RESET = 0x04;
const FCR_TRIGGER_SHIFT = 6;
const RX_TRIGGER_LEVELS = [1, 4, 8, 14] as const;
// LCR
export const LCR_DLAB = 0x80;
// MCR
export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;
// LSR
export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
// MSR
export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04;
export const MSR_DDCD = 0x08;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;

/** The hardware RX FIFO. */
export const UART_FIFO_SIZE = 16;
/** Transmitted bytes are handed to `out` at the latest when this many are batched. */
const TX_BATCH = 4096;

export interface UartState {
  rx: number[];
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  dll: number;
  dlm: number;
  fifoEnabled: boolean;
  rxTrigger: number;
  overrun: boolean;
  msrDeltas: number;
  thrInterrupt: boolean;
}

export class Uart16550 implements BusDevice {
  private readonly rx = new Uint8Array(UART_FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0x0c; // 9600 baud
  private dlm = 0;
  private fifoEnabled = false;
  private rxTrigger = 1;
  private overrun = false;
  private msrDeltas = 0;
  private thrInterrupt = false;
  private irqLevel = false;
  private readonly tx = new Uint8Array(TX_BATCH);
  private txLen = 0;
  private flushQueued = false;
  private rxSpaceListener: (() => void) | undefined;
  /** Bytes lost to RX overrun (loopback only: the host side never overruns). */
  overrunCount = 0;

  constructor(
    private readonly irq: IrqLine,
    private readonly out: (bytes: Uint8Array) => void,
  ) {}

  // ---- host side ----------------------------------------------------------------------------

  /**
   * Offer input bytes; returns how many were taken (0 when the guest is not ready or the FIFO is
   * full). Offer the rest again after `onRxSpace` fires.
   */
  receive(bytes: Uint8Array): number {
    if (!this.ready()) return 0;
    const n = Math.min(bytes.length, this.capacity() - this.rxCount);
    for (let i = 0; i < n; i++) this.pushRx(bytes[i]!);
    if (n > 0) this.updateIrq();
    return n;
  }

  /** True when `receive` would take at least one byte. */
  canReceive(): boolean {
    return this.ready() && this.rxCount < this.capacity();
  }

  /** `listener` is called (synchronously, state consistent) whenever the guest makes RX room. */
  onRxSpace(listener: () => void): void {
    this.rxSpaceListener = listener;
  }

  /** Hand any batched output to `out` now. */
  flush(): void {
    if (this.txLen === 0) return;
    const bytes = this.tx.slice(0, this.txLen);
    this.txLen = 0;
    this.out(bytes);
  }

  // ---- guest side ---------------------------------------------------------------------------

  read(offset: number, _size: AccessSize): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR_THR:
        return dlab ? this.dll : this.readRbr();
      case UART_IER:
        return dlab ? this.dlm : this.ier;
      case UART_IIR_FCR: {
        const iir = this.iir();
        if ((iir & 0x0f) === IIR_THR_EMPTY) {
          this.thrInterrupt = false;
          this.updateIrq();
        }
        return iir;
      }
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR: {
        const v = this.lsr();
        this.overrun = false; // errors clear on read
        this.updateIrq();
        return v;
      }
      case UART_MSR: {
        const v = this.msrStatus() | this.msrDeltas;
        this.msrDeltas = 0;
        this.updateIrq();
        return v;
      }
      case UART_SCR:
        return this.scr;
    }
    return 0xff;
  }

  write(offset: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case UART_RBR_THR:
        if (dlab) this.dll = value;
        else this.writeThr(value);
        break;
      case UART_IER:
        if (dlab) {
          this.dlm = value;
        } else {
          const wasReady = this.ready();
          const old = this.ier;
          this.ier = value & 0x0f;
          if ((old ^ this.ier) & IER_ETBEI) this.thrInterrupt = (this.ier & IER_ETBEI) !== 0; // THR is always empty
          this.updateIrq();
          if (!wasReady) this.notifyRxSpace();
        }
        break;
      case UART_IIR_FCR:
        this.writeFcr(value);
        break;
      case UART_LCR:
        this.lcr = value;
        break;
      case UART_MCR: {
        const wasReady = this.ready();
        const before = this.msrStatus();
        this.mcr = value & 0x1f;
        this.noteMsrChange(before, this.msrStatus());
        this.updateIrq();
        if (!wasReady) this.notifyRxSpace();
        break;
      }
      case UART_LSR:
      case UART_MSR:
        break; // read-only (factory test use only)
      case UART_SCR:
        this.scr = value;
        break;
    }
  }

  /** The IRQ line level we last drove (tests). */
  get irqAsserted(): boolean {
    return this.irqLevel;
  }

  save(): UartState {
    const rx: number[] = [];
    for (let i = 0; i < this.rxCount; i++) rx.push(this.rx[(this.rxHead + i) % UART_FIFO_SIZE]!);
    return {
      rx,
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      dll: this.dll,
      dlm: this.dlm,
      fifoEnabled: this.fifoEnabled,
      rxTrigger: this.rxTrigger,
      overrun: this.overrun,
      msrDeltas: this.msrDeltas,
      thrInterrupt: this.thrInterrupt,
    };
  }

  restore(s: UartState): void {
    this.ier = s.ier & 0x0f;
    this.lcr = s.lcr & 0xff;
    this.mcr = s.mcr & 0x1f;
    this.scr = s.scr & 0xff;
    this.dll = s.dll & 0xff;
    this.dlm = s.dlm & 0xff;
    this.fifoEnabled = !!s.fifoEnabled;
    this.rxTrigger = (RX_TRIGGER_LEVELS as readonly number[]).includes(s.rxTrigger) ? s.rxTrigger : 1;
    this.overrun = !!s.overrun;
    this.msrDeltas = s.msrDeltas & 0x0f;
    this.thrInterrupt = !!s.thrInterrupt;
    this.rxHead = 0;
    this.rxCount = 0;
    for (const b of s.rx.slice(0, this.capacity())) this.pushRx(b & 0xff);
    this.updateIrq();
  }

  // ---- internals ----------------------------------------------------------------------------

  private capacity(): number {
    return this.fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  /**
   * Host input is held back (RTS/CTS-style flow control) until the guest has enabled the
   * received-data interrupt and raised RTS. Linux's 8250 driver does both when a program opens
   * the port, RTS last, after its probe and FIFO set-up have read and cleared the receiver:
   * bytes offered earlier would be lost there.
   */
  private ready(): boolean {
    return (this.mcr & (MCR_LOOP | MCR_RTS)) === MCR_RTS && (this.ier & IER_ERBFI) !== 0;
  }

  private pushRx(b: number): void {
    this.rx[(this.rxHead + this.rxCount) % UART_FIFO_SIZE] = b;
    this.rxCount++;
  }

  private readRbr(): number {
    if (this.rxCount === 0) return 0;
    const b = this.rx[this.rxHead]!;
    this.rxHead = (this.rxHead + 1) % UART_FIFO_SIZE;
    this.rxCount--;
    this.updateIrq();
    if (this.rxCount === 0) this.notifyRxSpace();
    return b;
  }

  private notifyRxSpace(): void {
    if (this.rxSpaceListener && this.canReceive()) this.rxSpaceListener();
  }

  private writeThr(b: number): void {
    if (this.mcr & MCR_LOOP) {
      // loopback: the transmitter feeds the receiver
      if (this.rxCount < this.capacity()) this.pushRx(b);
      else {
        this.overrun = true;
        this.overrunCount++;
      }
    } else {
      this.tx[this.txLen++] = b;
      if (this.txLen === TX_BATCH) this.flush();
      else if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => {
          this.flushQueued = false;
          this.flush();
        });
      }
    }
    // sent at once: THR is empty again
    this.thrInterrupt = (this.ier & IER_ETBEI) !== 0;
    this.updateIrq();
  }

  private writeFcr(v: number): void {
    const enable = (v & FCR_FIFO_ENABLE) !== 0;
    if (enable !== this.fifoEnabled || v & FCR_RX_RESET) {
      // changing the FIFO mode resets both FIFOs
      this.rxHead = 0;
      this.rxCount = 0;
    }
    void FCR_TX_RESET; // the transmitter never holds anything
    this.fifoEnabled = enable;
    this.rxTrigger = RX_TRIGGER_LEVELS[(v >> FCR_TRIGGER_SHIFT) & 3]!;
    this.updateIrq();
    this.notifyRxSpace();
  }

  private lsr(): number {
    return (this.rxCount > 0 ? LSR_DR : 0) | (this.overrun ? LSR_OE : 0) | LSR_THRE | LSR_TEMT;
  }

  private msrStatus(): number {
    if (this.mcr & MCR_LOOP) {
      // loopback: the modem outputs are wired to the modem inputs
      return (
        (this.mcr & MCR_RTS ? MSR_CTS : 0) |
        (this.mcr & MCR_DTR ? MSR_DSR : 0) |
        (this.mcr & MCR_OUT1 ? MSR_RI : 0) |
        (this.mcr & MCR_OUT2 ? MSR_DCD : 0)
      );
    }
    return MSR_DCD | MSR_DSR | MSR_CTS; // a connected terminal
  }

  private noteMsrChange(before: number, after: number): void {
    const changed = before ^ after;
    if (changed & MSR_CTS) this.msrDeltas |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDeltas |= MSR_DDSR;
    if (changed & MSR_DCD) this.msrDeltas |= MSR_DDCD;
    if (before & MSR_RI && !(after & MSR_RI)) this.msrDeltas |= MSR_TERI;
  }

  private iir(): number {
    const fifo = this.fifoEnabled ? IIR_FIFO_ENABLED : 0;
    if (this.ier & IER_ELSI && this.overrun) return fifo | IIR_LINE_STATUS;
    if (this.ier & IER_ERBFI && this.rxCount > 0) {
      return fifo | (this.fifoEnabled && this.rxCount < this.rxTrigger ? IIR_CHAR_TIMEOUT : IIR_RX_DATA);
    }
    if (this.ier & IER_ETBEI && this.thrInterrupt) return fifo | IIR_THR_EMPTY;
    if (this.ier & IER_EDSSI && this.msrDeltas) return fifo | IIR_MODEM_STATUS;
    return fifo | IIR_NO_INT;
  }

  private updateIrq(): void {
    const level = (this.iir() & IIR_NO_INT) === 0 && (this.mcr & (MCR_OUT2 | MCR_LOOP)) === MCR_OUT2;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.set(level);
    }
  }
}

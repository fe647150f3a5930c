/**
 * Intel 8042 keyboard controller with an attached AT keyboard and no auxiliary (mouse) port.
 * Port 0x60 is the data port, 0x64 the status (read) / command (write) port; attach `dataPort`
 * and `commandPort` separately (port 0x61 between them belongs to the PIT).
 *
 * There is no keyboard input (the console is serial): the controller exists so Linux's i8042
 * driver probes quickly and so the guest can reset the machine by pulsing the CPU reset line
 * (command 0xFE, or output-port bit 0 cleared with command 0xD1) -> `onReset()`.
 *
 * Controller commands: 0x20 read / 0x60 write the command byte, 0xA7/0xA8 disable/enable aux,
 * 0xA9 aux interface test, 0xAA self-test (0x55), 0xAB keyboard interface test (0x00),
 * 0xAD/0xAE disable/enable keyboard, 0xC0 read input port, 0xD0/0xD1 read/write output port,
 * 0xD2 write keyboard output buffer, 0xD3 write aux output buffer, 0xD4 write to aux device,
 * 0xF0..0xFF pulse output lines. Keyboard commands: 0xFF reset (FA AA), 0xF2 identify
 * (FA AB 83), 0xEE echo, 0xED/0xF3/0xF0 with one parameter, everything else FA.
 *
 * Without an aux port, the aux loopback (0xD3) answers from the keyboard side and the aux
 * interface test reports "clock line stuck low", so Linux decides at once there is no AUX port
 * instead of waiting for timeouts. The output buffer is bounded at 16 bytes; IRQ 1 / IRQ 12
 * follow "output buffer full" from that source while the command byte enables them.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import type { IrqLine } from '../../../machine/irq.js';

// Status register
export const STATUS_OBF = 0x01; // output buffer full
export const STATUS_IBF = 0x02; // input buffer full (never: we take bytes at once)
export const STATUS_SYS = 0x04; // system flag (self-test passed)
export const STATUS_CMD = 0x08; // last write was to the command port
export const STATUS_UNLOCKED = 0x10; // keyboard not inhibited
export const STATUS_AUXB = 0x20; // output buffer holds aux data
// Command byte
export const CB_KBD_INT = 0x01;
export const CB_AUX_INT = 0x02;
export const CB_SYS = 0x04;
export const CB_KBD_DISABLE = 0x10;
export const CB_AUX_DISABLE = 0x20;
export const CB_XLATE = 0x40;
// Controller commands
export const CMD_READ_CTR = 0x20;
export const CMD_WRITE_CTR = 0x60;
export const CMD_AUX_DISABLE = 0xa7;
export const CMD_AUX_ENABLE = 0xa8;
export const CMD_AUX_TEST = 0xa9;
export const CMD_SELF_TEST = 0xaa;
export const CMD_KBD_TEST = 0xab;
export const CMD_KBD_DISABLE = 0xad;
export const CMD_KBD_ENABLE = 0xae;
export const CMD_READ_INPUT = 0xc0;
export const CMD_READ_OUTPUT = 0xd0;
export const CMD_WRITE_OUTPUT = 0xd1;
export const CMD_WRITE_KBD_OUTBUF = 0xd2;
export const CMD_WRITE_AUX_OUTBUF = 0xd3;
export const CMD_WRITE_AUX = 0xd4;
export const CMD_RESET_CPU = 0xfe; // pulse output line 0: the CPU reset line
// Output port
const OUTPUT_RESET_HIGH = 0x01; // reset line not asserted
const OUTPUT_A20 = 0x02;
// Replies
export const SELF_TEST_OK = 0x55;
export const KBD_ACK = 0xfa;
export const KBD_RESEND = 0xfe;
export const KBD_BAT_OK = 0xaa;
const AUX_TEST_CLOCK_STUCK_LOW = 0x01;
// Keyboard commands
const KBD_CMD_SET_LEDS = 0xed;
const KBD_CMD_ECHO = 0xee;
const KBD_CMD_SCANCODE_SET = 0xf0;
const KBD_CMD_GET_ID = 0xf2;
const KBD_CMD_SET_RATE = 0xf3;
const KBD_CMD_ENABLE = 0xf4;
const KBD_CMD_RESET_DISABLE = 0xf5;
const KBD_CMD_RESET = 0xff;

/** The output buffer queue, like Firecracker's 16-byte ring. */
export const I8042_BUFFER_SIZE = 16;

export interface I8042State {
  commandByte: number;
  outputPort: number;
  /** Controller command waiting for its data byte, 0 if none. */
  pendingCommand: number;
  /** Keyboard command waiting for its parameter, 0 if none. */
  pendingKbdCommand: number;
  lastWriteWasCommand: boolean;
  scanCodeSet: number;
  /** Queued output bytes with their source (true = aux). */
  buffer: { byte: number; aux: boolean }[];
  lastByte: number;
}

export class I8042 {
  private commandByte = CB_KBD_INT | CB_SYS | CB_XLATE;
  private outputPort = OUTPUT_RESET_HIGH | OUTPUT_A20;
  private pendingCommand = 0;
  private pendingKbdCommand = 0;
  private lastWriteWasCommand = false;
  private scanCodeSet = 2;
  private readonly buf = new Uint8Array(I8042_BUFFER_SIZE);
  private readonly bufAux = new Uint8Array(I8042_BUFFER_SIZE);
  private head = 0;
  private count = 0;
  private lastByte = 0;
  private kbdLevel = false;
  private auxLevel = false;
  /** Bytes dropped because the output buffer was full, and unknown commands. */
  droppedCount = 0;
  unknownCommandCount = 0;

  /** Port 0x60 (attach at PORT_I8042_DATA, 1 port). */
  readonly dataPort: BusDevice;
  /** Port 0x64 (attach at PORT_I8042_COMMAND, 1 port). */
  readonly commandPort: BusDevice;

  constructor(
    private readonly kbdIrq: IrqLine,
    private readonly auxIrq: IrqLine,
    private readonly onReset: () => void,
  ) {
    this.dataPort = {
      read: (): number => this.readData(),
      write: (_o: number, _s: AccessSize, v: number): void => this.writeData(v & 0xff),
    };
    this.commandPort = {
      read: (): number => this.status(),
      write: (_o: number, _s: AccessSize, v: number): void => this.writeCommand(v & 0xff),
    };
  }

  save(): I8042State {
    const buffer: { byte: number; aux: boolean }[] = [];
    for (let i = 0; i < this.count; i++) {
      const j = (this.head + i) % I8042_BUFFER_SIZE;
      buffer.push({ byte: this.buf[j]!, aux: this.bufAux[j] === 1 });
    }
    return {
      commandByte: this.commandByte,
      outputPort: this.outputPort,
      pendingCommand: this.pendingCommand,
      pendingKbdCommand: this.pendingKbdCommand,
      lastWriteWasCommand: this.lastWriteWasCommand,
      scanCodeSet: this.scanCodeSet,
      buffer,
      lastByte: this.lastByte,
    };
  }

  restore(s: I8042State): void {
    this.commandByte = s.commandByte & 0xff;
    this.outputPort = s.outputPort & 0xff;
    this.pendingCommand = s.pendingCommand & 0xff;
    this.pendingKbdCommand = s.pendingKbdCommand & 0xff;
    this.lastWriteWasCommand = !!s.lastWriteWasCommand;
    this.scanCodeSet = s.scanCodeSet >= 1 && s.scanCodeSet <= 3 ? s.scanCodeSet | 0 : 2;
    this.head = 0;
    this.count = 0;
    for (const e of s.buffer.slice(0, I8042_BUFFER_SIZE)) this.push(e.byte & 0xff, !!e.aux);
    this.lastByte = s.lastByte & 0xff;
    this.updateIrq();
  }

  private status(): number {
    let s = STATUS_UNLOCKED;
    if (this.count > 0) {
      s |= STATUS_OBF;
      if (this.bufAux[this.head]) s |= STATUS_AUXB;
    }
    if (this.commandByte & CB_SYS) s |= STATUS_SYS;
    if (this.lastWriteWasCommand) s |= STATUS_CMD;
    return s;
  }

  private readData(): number {
    if (this.count > 0) {
      this.lastByte = this.buf[this.head]!;
      this.head = (this.head + 1) % I8042_BUFFER_SIZE;
      this.count--;
      // the controller loads the next byte after this read: a fresh edge for the next one
      this.lowerIrqs();
      this.updateIrq();
    }
    return this.lastByte;
  }

  private push(byte: number, aux: boolean): void {
    if (this.count === I8042_BUFFER_SIZE) {
      this.droppedCount++;
      return;
    }
    const j = (this.head + this.count) % I8042_BUFFER_SIZE;
    this.buf[j] = byte;
    this.bufAux[j] = aux ? 1 : 0;
    this.count++;
  }

  private reply(...bytes: number[]): void {
    for (const b of bytes) this.push(b, false);
    this.updateIrq();
  }

  private writeCommand(cmd: number): void {
    this.lastWriteWasCommand = true;
    this.pendingCommand = 0;
    switch (cmd) {
      case CMD_READ_CTR:
        this.reply(this.commandByte);
        return;
      case CMD_WRITE_CTR:
      case CMD_WRITE_OUTPUT:
      case CMD_WRITE_KBD_OUTBUF:
      case CMD_WRITE_AUX_OUTBUF:
      case CMD_WRITE_AUX:
        this.pendingCommand = cmd;
        return;
      case CMD_AUX_DISABLE:
        this.commandByte |= CB_AUX_DISABLE;
        return;
      case CMD_AUX_ENABLE:
        this.commandByte &= ~CB_AUX_DISABLE;
        return;
      case CMD_AUX_TEST:
        this.reply(AUX_TEST_CLOCK_STUCK_LOW); // no aux port
        return;
      case CMD_SELF_TEST:
        this.commandByte |= CB_SYS;
        this.reply(SELF_TEST_OK);
        return;
      case CMD_KBD_TEST:
        this.reply(0x00);
        return;
      case CMD_KBD_DISABLE:
        this.commandByte |= CB_KBD_DISABLE;
        return;
      case CMD_KBD_ENABLE:
        this.commandByte &= ~CB_KBD_DISABLE;
        return;
      case CMD_READ_INPUT:
        this.reply(0x00);
        return;
      case CMD_READ_OUTPUT:
        this.reply(this.outputPort);
        return;
    }
    if (cmd >= 0xf0) {
      // pulse output port bits whose command bit is 0 (bit 0 = CPU reset)
      if ((cmd & 0x01) === 0) this.onReset();
      return;
    }
    this.unknownCommandCount++;
  }

  private writeData(v: number): void {
    this.lastWriteWasCommand = false;
    const cmd = this.pendingCommand;
    this.pendingCommand = 0;
    switch (cmd) {
      case CMD_WRITE_CTR:
        this.commandByte = v;
        this.updateIrq();
        return;
      case CMD_WRITE_OUTPUT:
        this.outputPort = v;
        if ((v & OUTPUT_RESET_HIGH) === 0) this.onReset();
        return;
      case CMD_WRITE_KBD_OUTBUF:
        this.reply(v);
        return;
      case CMD_WRITE_AUX_OUTBUF:
        // no aux port: the byte comes back as keyboard data, which tells Linux there is no AUX
        this.reply(v);
        return;
      case CMD_WRITE_AUX:
        return; // nothing attached: the byte is lost (the guest times out on its reply)
    }
    this.keyboardCommand(v);
  }

  private keyboardCommand(v: number): void {
    this.commandByte &= ~CB_KBD_DISABLE; // writing to the keyboard enables its interface
    const pending = this.pendingKbdCommand;
    if (pending !== 0) {
      this.pendingKbdCommand = 0;
      if (pending === KBD_CMD_SCANCODE_SET) {
        if (v === 0) {
          this.reply(KBD_ACK, this.scanCodeSet);
          return;
        }
        if (v >= 1 && v <= 3) this.scanCodeSet = v;
      }
      this.reply(KBD_ACK);
      return;
    }
    switch (v) {
      case KBD_CMD_RESET:
        this.scanCodeSet = 2;
        this.reply(KBD_ACK, KBD_BAT_OK);
        return;
      case KBD_CMD_GET_ID:
        this.reply(KBD_ACK, 0xab, 0x83);
        return;
      case KBD_CMD_ECHO:
        this.reply(KBD_CMD_ECHO);
        return;
      case KBD_CMD_SET_LEDS:
      case KBD_CMD_SET_RATE:
      case KBD_CMD_SCANCODE_SET:
        this.pendingKbdCommand = v;
        this.reply(KBD_ACK);
        return;
      case KBD_CMD_ENABLE:
      case KBD_CMD_RESET_DISABLE:
      default:
        this.reply(KBD_ACK);
    }
  }

  private lowerIrqs(): void {
    if (this.kbdLevel) this.kbdIrq.lower();
    if (this.auxLevel) this.auxIrq.lower();
    this.kbdLevel = false;
    this.auxLevel = false;
  }

  private updateIrq(): void {
    const obf = this.count > 0;
    const aux = obf && this.bufAux[this.head] === 1;
    const kbdLevel = obf && !aux && (this.commandByte & CB_KBD_INT) !== 0;
    const auxLevel = obf && aux && (this.commandByte & CB_AUX_INT) !== 0;
    if (kbdLevel !== this.kbdLevel) {
      this.kbdLevel = kbdLevel;
      this.kbdIrq.set(kbdLevel);
    }
    if (auxLevel !== this.auxLevel) {
      this.auxLevel = auxLevel;
      this.auxIrq.set(auxLevel);
    }
  }
}

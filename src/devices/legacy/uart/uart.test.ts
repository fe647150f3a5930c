import { describe, it, expect } from 'vitest';
import { IrqLine } from '../../../machine/irq.js';
import { RecordingSink } from '../../testing/fake-clock.js';
import {
  Uart16550,
  IER_ERBFI,
  IER_ETBEI,
  IER_ELSI,
  IIR_CHAR_TIMEOUT,
  IIR_FIFO_ENABLED,
  IIR_LINE_STATUS,
  IIR_NO_INT,
  IIR_RX_DATA,
  IIR_THR_EMPTY,
  LSR_DR,
  LSR_OE,
  LSR_TEMT,
  LSR_THRE,
  MCR_DTR,
  MCR_LOOP,
  MCR_RTS,
  MCR_OUT2,
  UART_IER,
  UART_IIR_FCR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_SCR,
} from './uart.js';

function setup() {
  const sink = new RecordingSink();
  const chunks: Uint8Array[] = [];
  const uart = new Uart16550(new IrqLine(sink, 4), (b) => chunks.push(b));
  const output = (): string => {
    uart.flush();
    return chunks.map((c) => String.fromCharCode(...c)).join('');
  };
  return { sink, uart, output };
}

describe('Uart16550', () => {
  it('transmits THR writes through out, batched, and THRE/TEMT stay set', async () => {
    const { uart, output } = setup();
    for (const ch of 'hello') uart.write(0, 1, ch.charCodeAt(0));
    expect(uart.read(UART_LSR, 1) & (LSR_THRE | LSR_TEMT)).toBe(LSR_THRE | LSR_TEMT);
    await Promise.resolve();
    expect(output()).toBe('hello');
  });

  it('divisor latch with DLAB and the scratch register', () => {
    const { uart } = setup();
    uart.write(UART_LCR, 1, 0x83);
    uart.write(0, 1, 0x01);
    uart.write(1, 1, 0x00);
    expect(uart.read(0, 1)).toBe(0x01);
    uart.write(UART_LCR, 1, 0x03);
    expect(uart.read(UART_LCR, 1)).toBe(0x03);
    expect(uart.read(UART_IER, 1)).toBe(0);
    uart.write(UART_SCR, 1, 0xa5);
    expect(uart.read(UART_SCR, 1)).toBe(0xa5);
  });

  it('identifies as a 16550A with FIFOs enabled', () => {
    const { uart } = setup();
    uart.write(UART_IIR_FCR, 1, 0xe7);
    expect(uart.read(UART_IIR_FCR, 1) >> 5).toBe(6); // FIFO bits set, no 64-byte FIFO
    uart.write(UART_IIR_FCR, 1, 0);
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_NO_INT);
  });

  it('loopback: THR feeds RBR and the MSR mirrors MCR (Linux autoconfig)', () => {
    const { uart, output, sink } = setup();
    uart.write(UART_MCR, 1, MCR_LOOP | 0x0a); // loop + RTS + OUT2
    expect(uart.read(UART_MSR, 1) & 0xf0).toBe(0x90);
    uart.write(0, 1, 0x41);
    expect(uart.read(UART_LSR, 1) & LSR_DR).toBe(LSR_DR);
    expect(uart.read(0, 1)).toBe(0x41);
    expect(output()).toBe('');
    expect(sink.risesOf(4)).toBe(0); // no IRQ in loopback
    // FIFO disabled: a second unread byte overruns
    uart.write(0, 1, 1);
    uart.write(0, 1, 2);
    expect(uart.read(UART_LSR, 1) & LSR_OE).toBe(LSR_OE);
    expect(uart.read(UART_LSR, 1) & LSR_OE).toBe(0);
  });

  it('THRE interrupt on enabling ETBEI, cleared by reading IIR, re-armed on re-enable (8250 THRE test)', () => {
    const { uart } = setup();
    uart.write(UART_IER, 1, IER_ETBEI);
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_THR_EMPTY);
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_NO_INT);
    uart.write(UART_IER, 1, 0);
    uart.write(UART_IER, 1, IER_ETBEI);
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_THR_EMPTY);
    uart.write(0, 1, 0x20); // a transmitted byte empties THR again
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_THR_EMPTY);
  });

  it('the IRQ line is gated by OUT2', () => {
    const { uart, sink } = setup();
    uart.write(UART_IER, 1, IER_ETBEI);
    expect(sink.level(4)).toBe(false);
    uart.write(UART_MCR, 1, MCR_OUT2);
    expect(sink.level(4)).toBe(true);
    uart.read(UART_IIR_FCR, 1);
    expect(sink.level(4)).toBe(false);
  });

  it('holds input back until the guest enables the receiver, then fills only the FIFO', () => {
    const { uart, sink } = setup();
    const input = new TextEncoder().encode('abcdefghijklmnopqrstuvwxyz');
    expect(uart.canReceive()).toBe(false);
    expect(uart.receive(input)).toBe(0);
    uart.write(UART_IIR_FCR, 1, 0x81); // FIFO on, trigger 8
    uart.write(UART_MCR, 1, MCR_OUT2 | MCR_RTS);
    uart.write(UART_IER, 1, IER_ERBFI);
    expect(uart.receive(input)).toBe(16);
    expect(uart.canReceive()).toBe(false);
    expect(uart.receive(input.subarray(16))).toBe(0);
    expect(sink.level(4)).toBe(true);
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_FIFO_ENABLED | IIR_RX_DATA);
    let got = '';
    while (uart.read(UART_LSR, 1) & LSR_DR) got += String.fromCharCode(uart.read(0, 1));
    expect(got).toBe('abcdefghijklmnop');
    expect(sink.level(4)).toBe(false);
  });

  it('holds host input back until the guest enables the received-data interrupt and raises RTS', () => {
    const { uart } = setup();
    uart.write(UART_MCR, 1, MCR_OUT2); // the console is set up, but no program has opened the port
    expect(uart.receive(new Uint8Array([0x41]))).toBe(0);
    uart.write(UART_IER, 1, IER_ERBFI);
    expect(uart.receive(new Uint8Array([0x41]))).toBe(0); // FIFO set-up may still clear the receiver
    uart.write(UART_MCR, 1, MCR_OUT2 | MCR_RTS | MCR_DTR);
    expect(uart.receive(new Uint8Array([0x41]))).toBe(1);
  });

  it('calls onRxSpace when the guest drains the FIFO, so the host can feed more', () => {
    const { uart } = setup();
    const input = new TextEncoder().encode('0123456789abcdefXYZ');
    let offset = 0;
    const feed = (): void => {
      offset += uart.receive(input.subarray(offset));
    };
    uart.onRxSpace(feed);
    uart.write(UART_IIR_FCR, 1, 0x01);
    uart.write(UART_MCR, 1, MCR_RTS | (uart.read(UART_MCR, 1) & MCR_OUT2)); // becoming ready feeds
    uart.write(UART_IER, 1, IER_ERBFI); // becoming ready feeds
    expect(offset).toBe(16);
    let got = '';
    while (uart.read(UART_LSR, 1) & LSR_DR) got += String.fromCharCode(uart.read(0, 1));
    expect(got).toBe('0123456789abcdefXYZ');
    expect(offset).toBe(input.length);
  });

  it('reports a character timeout below the trigger level', () => {
    const { uart } = setup();
    uart.write(UART_IIR_FCR, 1, 0xc1); // trigger 14
    uart.write(UART_MCR, 1, MCR_RTS | (uart.read(UART_MCR, 1) & MCR_OUT2));
    uart.write(UART_IER, 1, IER_ERBFI);
    uart.receive(new Uint8Array([1, 2]));
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_FIFO_ENABLED | IIR_CHAR_TIMEOUT);
  });

  it('line status interrupt has priority over received data', () => {
    const { uart } = setup();
    uart.write(UART_MCR, 1, MCR_LOOP);
    uart.write(UART_IER, 1, IER_ELSI | IER_ERBFI);
    uart.write(0, 1, 1);
    uart.write(0, 1, 2); // overrun
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_LINE_STATUS);
    uart.read(UART_LSR, 1);
    expect(uart.read(UART_IIR_FCR, 1)).toBe(IIR_RX_DATA);
  });

  it('ignores writes to read-only registers and bad offsets', () => {
    const { uart } = setup();
    uart.write(UART_LSR, 1, 0);
    uart.write(9, 1, 0);
    expect(uart.read(UART_LSR, 1)).toBe(LSR_THRE | LSR_TEMT);
    expect(uart.read(12, 1)).toBe(0xff);
    expect(uart.read(0, 1)).toBe(0); // empty RBR
  });

  it('round-trips its state including the RX FIFO', () => {
    const { uart } = setup();
    uart.write(UART_IIR_FCR, 1, 0x01);
    uart.write(UART_MCR, 1, MCR_RTS | (uart.read(UART_MCR, 1) & MCR_OUT2));
    uart.write(UART_IER, 1, IER_ERBFI);
    uart.receive(new Uint8Array([7, 8, 9]));
    const other = setup();
    other.uart.restore(uart.save());
    expect(other.uart.save()).toEqual(uart.save());
    expect(other.uart.read(0, 1)).toBe(7);
  });
});

import { describe, it, expect } from 'vitest';
import { IrqLine } from '../../../machine/irq.js';
import { RecordingSink } from '../../testing/fake-clock.js';
import { I8042, STATUS_AUXB, STATUS_OBF, STATUS_SYS, I8042_BUFFER_SIZE } from './i8042.js';

function setup() {
  const sink = new RecordingSink();
  let resets = 0;
  const kbc = new I8042(new IrqLine(sink, 1), new IrqLine(sink, 12), () => resets++);
  const cmd = (v: number): void => kbc.commandPort.write(0, 1, v);
  const data = (v: number): void => kbc.dataPort.write(0, 1, v);
  const status = (): number => kbc.commandPort.read(0, 1);
  const read = (): number => kbc.dataPort.read(0, 1);
  const drain = (): number[] => {
    const out: number[] = [];
    while (status() & STATUS_OBF) out.push(read());
    return out;
  };
  return { sink, kbc, cmd, data, status, read, drain, resets: () => resets };
}

describe('I8042', () => {
  it('passes the controller self-test and interface test', () => {
    const { cmd, drain, status } = setup();
    cmd(0xaa);
    expect(drain()).toEqual([0x55]);
    expect(status() & STATUS_SYS).toBe(STATUS_SYS);
    cmd(0xab);
    expect(drain()).toEqual([0x00]);
  });

  it('reads and writes the command byte; disable/enable set and clear its bits', () => {
    const { cmd, data, drain } = setup();
    cmd(0x20);
    const ctr = drain()[0]!;
    expect(ctr & 0x01).toBe(0x01);
    cmd(0x60);
    data(0x65);
    cmd(0x20);
    expect(drain()).toEqual([0x65]);
    cmd(0xad);
    cmd(0xa7);
    cmd(0x20);
    expect(drain()[0]! & 0x30).toBe(0x30);
    cmd(0xae);
    cmd(0xa8);
    cmd(0x20);
    expect(drain()[0]! & 0x30).toBe(0);
  });

  it('pulses the reset line with 0xFE and with output port bit 0 cleared', () => {
    const s = setup();
    s.cmd(0xfe);
    expect(s.resets()).toBe(1);
    s.cmd(0xff); // pulse nothing
    expect(s.resets()).toBe(1);
    s.cmd(0xd0);
    expect(s.drain()[0]! & 1).toBe(1);
    s.cmd(0xd1);
    s.data(0x02);
    expect(s.resets()).toBe(2);
  });

  it('keyboard answers reset and identify, with an IRQ 1 edge per byte', () => {
    const { data, drain, read, status, sink } = setup();
    data(0xff);
    expect(sink.risesOf(1)).toBe(1);
    expect(read()).toBe(0xfa);
    expect(sink.risesOf(1)).toBe(2);
    expect(read()).toBe(0xaa);
    expect(sink.level(1)).toBe(false);
    data(0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
    data(0xf0);
    data(0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0x02]);
    data(0xed);
    data(0x07);
    expect(drain()).toEqual([0xfa, 0xfa]);
    expect(status() & STATUS_OBF).toBe(0);
  });

  it('reports no aux port: loopback answers as keyboard data, aux test fails', () => {
    const { cmd, data, status, read, drain } = setup();
    cmd(0xd3);
    data(0x5a);
    expect(status() & (STATUS_OBF | STATUS_AUXB)).toBe(STATUS_OBF);
    expect(read()).toBe(0x5a);
    cmd(0xa9);
    expect(drain()).toEqual([0x01]);
    cmd(0xd4);
    data(0xf2); // swallowed
    expect(status() & STATUS_OBF).toBe(0);
  });

  it('bounds the output buffer and counts what it drops', () => {
    const { kbc, cmd, drain, read } = setup();
    for (let i = 0; i < 20; i++) cmd(0xaa);
    expect(drain().length).toBe(I8042_BUFFER_SIZE);
    expect(kbc.droppedCount).toBe(4);
    expect(read()).toBe(0x55); // empty buffer: the last byte again
    cmd(0x01);
    expect(kbc.unknownCommandCount).toBe(1);
  });

  it('round-trips its state', () => {
    const { kbc, data } = setup();
    data(0xf2);
    const other = setup();
    other.kbc.restore(kbc.save());
    expect(other.kbc.save()).toEqual(kbc.save());
    expect(other.drain()).toEqual([0xfa, 0xab, 0x83]);
  });
});

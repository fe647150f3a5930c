import { describe, it, expect } from 'vitest';
import {
  IoApic,
  IOAPIC_VERSION,
  REDIR_MASKED,
  REDIR_REMOTE_IRR,
  REDIR_TRIGGER_LEVEL,
  type ApicMessageTarget,
} from './ioapic.js';

class Target implements ApicMessageTarget {
  got: { vector: number; mode: number; level: boolean }[] = [];
  constructor(public id = 0) {}
  matchesDestination(dest: number, logical: boolean): boolean {
    return logical ? (dest & 1) !== 0 : dest === this.id || dest === 0xff;
  }
  acceptInterrupt(vector: number, mode: number, level: boolean): void {
    this.got.push({ vector, mode, level });
  }
}

function writeReg(io: IoApic, index: number, value: number): void {
  io.write(0x00, 4, index);
  io.write(0x10, 4, value);
}
function readReg(io: IoApic, index: number): number {
  io.write(0x00, 4, index);
  return io.read(0x10, 4);
}

describe('IoApic (82093AA)', () => {
  it('reports ID, version with 24 entries, and starts with every pin masked', () => {
    const io = new IoApic();
    expect(readReg(io, 1)).toBe(IOAPIC_VERSION);
    expect((readReg(io, 1) >>> 16) & 0xff).toBe(23);
    writeReg(io, 0, 0x0f00_0000 | 0x1234);
    expect(readReg(io, 0)).toBe(0x0f00_0000);
    for (let pin = 0; pin < 24; pin++) expect(readReg(io, 0x10 + 2 * pin) & REDIR_MASKED).toBe(REDIR_MASKED);
    expect(io.read(0x00, 4)).toBe(0x10 + 2 * 23);
  });

  it('delivers an edge pin to the destination APIC with its vector', () => {
    const io = new IoApic();
    const t = new Target(0);
    io.addTarget(t);
    writeReg(io, 0x10 + 2 * 2, 0x30); // pin 2: vector 0x30, fixed, physical, edge, unmasked
    writeReg(io, 0x11 + 2 * 2, 0x0000_0000);
    io.setIrq(2, true);
    io.setIrq(2, false);
    io.setIrq(2, true);
    expect(t.got).toEqual([
      { vector: 0x30, mode: 0, level: false },
      { vector: 0x30, mode: 0, level: false },
    ]);
  });

  it('drops messages to a destination nobody answers', () => {
    const io = new IoApic();
    const t = new Target(0);
    io.addTarget(t);
    writeReg(io, 0x10 + 2 * 4, 0x41);
    writeReg(io, 0x11 + 2 * 4, 0x0300_0000);
    io.setIrq(4, true);
    expect(t.got).toEqual([]);
    expect(io.droppedCount).toBe(1);
  });

  it('holds a masked edge and delivers it on unmask', () => {
    const io = new IoApic();
    const t = new Target(0);
    io.addTarget(t);
    writeReg(io, 0x10 + 2 * 1, 0x31 | REDIR_MASKED);
    io.setIrq(1, true);
    expect(t.got.length).toBe(0);
    writeReg(io, 0x10 + 2 * 1, 0x31);
    expect(t.got.length).toBe(1);
  });

  it('level pins set Remote IRR and redeliver after EOI while still asserted', () => {
    const io = new IoApic();
    const t = new Target(0);
    io.addTarget(t);
    writeReg(io, 0x10 + 2 * 9, 0x49 | REDIR_TRIGGER_LEVEL);
    io.setIrq(9, true);
    expect(t.got).toEqual([{ vector: 0x49, mode: 0, level: true }]);
    expect(readReg(io, 0x10 + 2 * 9) & REDIR_REMOTE_IRR).toBe(REDIR_REMOTE_IRR);
    io.setIrq(9, true); // still asserted: no new message until EOI
    expect(t.got.length).toBe(1);
    io.eoi(0x48); // other vector: nothing
    expect(t.got.length).toBe(1);
    io.eoi(0x49);
    expect(t.got.length).toBe(2);
    io.setIrq(9, false);
    io.eoi(0x49);
    expect(readReg(io, 0x10 + 2 * 9) & REDIR_REMOTE_IRR).toBe(0);
    expect(t.got.length).toBe(2);
  });

  it('Remote IRR and delivery status are read-only', () => {
    const io = new IoApic();
    writeReg(io, 0x10, 0xffff_ffff);
    expect(readReg(io, 0x10) & (REDIR_REMOTE_IRR | (1 << 12))).toBe(0);
    writeReg(io, 0x11, 0xffff_ffff);
    expect(readReg(io, 0x11)).toBe(0xff00_0000);
  });

  it('uses logical destinations and lowest-priority delivers once', () => {
    const io = new IoApic();
    const a = new Target(0);
    const b = new Target(1);
    io.addTarget(a);
    io.addTarget(b);
    writeReg(io, 0x10 + 2 * 5, 0x55 | (1 << 8) | (1 << 11)); // lowest priority, logical
    writeReg(io, 0x11 + 2 * 5, 0x0100_0000);
    io.setIrq(5, true);
    expect(a.got.length + b.got.length).toBe(1);
  });

  it('ignores hostile register indices and pins, supports byte access', () => {
    const io = new IoApic();
    writeReg(io, 0x80, 0x1234);
    expect(readReg(io, 0x80)).toBe(0);
    writeReg(io, 0x01, 0); // read-only version
    expect(readReg(io, 1)).toBe(IOAPIC_VERSION);
    io.setIrq(24, true);
    io.setIrq(-3, true);
    io.write(0x00, 1, 0x01);
    expect(io.read(0x10, 1)).toBe(0x11);
    expect(io.read(0x12, 1)).toBe(23);
    expect(io.read(0x20, 4)).toBe(0);
  });

  it('round-trips its state', () => {
    const io = new IoApic();
    writeReg(io, 0x10 + 2 * 3, 0x33 | REDIR_TRIGGER_LEVEL);
    io.setIrq(3, true);
    const copy = new IoApic();
    copy.restore(io.save());
    expect(copy.save()).toEqual(io.save());
  });
});

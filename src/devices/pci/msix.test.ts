import { describe, expect, it } from 'vitest';
import { LocalApic } from '../legacy/lapic/lapic.js';
import { FakeClock } from '../testing/fake-clock.js';
import { TimerQueue } from '../../machine/clock.js';
import { PciConfigSpace } from './host.js';
import { ApicMsiSink } from './msi.js';
import { Msix, MsixError, MSIX_CONTROL_ENABLE, MSIX_CONTROL_FUNCTION_MASK } from './msix.js';

function setup(vectors = 3) {
  const sent: [number, number][] = [];
  const msix = new Msix({ vectors, bar: 0, tableOffset: 0x6000, pbaOffset: 0x7000 }, { sendMsi: (a, d) => sent.push([a, d]) });
  const program = (v: number, addr: number, data: number, masked: boolean) => {
    msix.tableWrite(16 * v, 4, addr);
    msix.tableWrite(16 * v + 4, 4, 0);
    msix.tableWrite(16 * v + 8, 4, data);
    msix.tableWrite(16 * v + 12, 4, masked ? 1 : 0);
  };
  return { msix, sent, program };
}

describe('MSI-X', () => {
  it('describes itself in a capability whose enable and mask bits are writable', () => {
    const cfg = new PciConfigSpace();
    const { msix } = setup(5);
    const at = msix.addCapability(cfg);
    expect(cfg.configRead(at, 1)).toBe(0x11);
    expect(cfg.configRead(at + 2, 2)).toBe(4); // table size - 1
    expect(cfg.configRead(at + 4, 4)).toBe(0x6000);
    expect(cfg.configRead(at + 8, 4)).toBe(0x7000);
    cfg.configWrite(at + 2, 2, 0xffff);
    expect(cfg.configRead(at + 2, 2)).toBe(0xc004);
    expect(msix.tableSize).toBe(80);
    expect(msix.pbaSize).toBe(8);
    expect(() => new Msix({ vectors: 0, bar: 0, tableOffset: 0, pbaOffset: 8 }, { sendMsi: () => {} })).toThrow(MsixError);
  });

  it('starts with every vector masked and sends nothing while disabled', () => {
    const { msix, sent } = setup();
    expect(msix.tableRead(12, 4)).toBe(1);
    expect(msix.tableRead(28, 4)).toBe(1);
    msix.signal(0);
    expect(sent).toEqual([]);
    expect(msix.isPending(0)).toBe(false);
  });

  it('sends an unmasked vector at once', () => {
    const { msix, sent, program } = setup();
    program(1, 0xfee0_1000, 0x41, false);
    msix.setControl(MSIX_CONTROL_ENABLE);
    msix.signal(1);
    expect(sent).toEqual([[0xfee0_1000, 0x41]]);
    msix.signal(7); // no such vector
    expect(sent).toHaveLength(1);
  });

  it('holds a masked vector in the PBA and delivers it on unmask', () => {
    const { msix, sent, program } = setup();
    program(2, 0xfee0_0000, 0x52, true);
    msix.setControl(MSIX_CONTROL_ENABLE);
    msix.signal(2);
    msix.signal(2);
    expect(sent).toEqual([]);
    expect(msix.pbaRead(0, 4)).toBe(0b100);
    msix.tableWrite(2 * 16 + 12, 4, 0); // unmask
    expect(sent).toEqual([[0xfee0_0000, 0x52]]); // one message for both signals
    expect(msix.pbaRead(0, 4)).toBe(0);
  });

  it('the function mask holds every vector until cleared', () => {
    const { msix, sent, program } = setup();
    program(0, 0xfee0_0000, 0x30, false);
    program(1, 0xfee0_0000, 0x31, false);
    msix.setControl(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    msix.signal(0);
    msix.signal(1);
    expect(sent).toEqual([]);
    expect(msix.pbaRead(0, 1)).toBe(0b11);
    msix.setControl(MSIX_CONTROL_ENABLE);
    expect(sent).toEqual([[0xfee0_0000, 0x30], [0xfee0_0000, 0x31]]);
  });

  it('ignores accesses outside the table and keeps reserved control bits zero', () => {
    const { msix } = setup(1);
    msix.tableWrite(16, 4, 0x1234);
    expect(msix.tableRead(16, 4)).toBe(0);
    msix.tableWrite(12, 4, 0xffff_fffe);
    expect(msix.tableRead(12, 4)).toBe(0);
    expect(msix.pbaRead(64, 4)).toBe(0);
  });
});

describe('ApicMsiSink', () => {
  it('delivers fixed messages to the addressed local APIC and drops bad ones', () => {
    const clock = new FakeClock();
    const lapic = new LocalApic({ clock, timers: new TimerQueue(clock), id: 0 });
    lapic.write(0xf0, 4, 0x1ff); // software-enable
    const sink = new ApicMsiSink([lapic]);
    sink.sendMsi(0xfee0_0000, 0x41);
    expect(lapic.hasInterrupt()).toBe(true);
    expect(lapic.acknowledge()).toBe(0x41);
    sink.sendMsi(0xfee0_1000, 0x42); // APIC ID 1: nobody
    sink.sendMsi(0xfed0_0000, 0x43); // not the APIC window
    sink.sendMsi(0xfee0_0000, 0x05); // illegal vector
    expect(sink.droppedCount).toBe(3);
    expect(sink.delivered).toBe(1);
  });
});

import { describe, it, expect } from 'vitest';
import { PicPair } from './pic.js';

/** The initialization Linux's i8259 driver performs (init_8259A). */
function initLinux(pic: PicPair, autoEoi = false): void {
  pic.master.write(1, 1, 0xff); // mask all
  pic.slave.write(1, 1, 0xff);
  pic.master.write(0, 1, 0x11); // ICW1: edge, cascade, ICW4
  pic.master.write(1, 1, 0x30); // ICW2: vectors 0x30..0x37
  pic.master.write(1, 1, 0x04); // ICW3: slave on IR2
  pic.master.write(1, 1, autoEoi ? 0x03 : 0x01); // ICW4: 8086 mode
  pic.slave.write(0, 1, 0x11);
  pic.slave.write(1, 1, 0x38);
  pic.slave.write(1, 1, 0x02);
  pic.slave.write(1, 1, 0x01);
  pic.master.write(1, 1, 0x00); // unmask all
  pic.slave.write(1, 1, 0x00);
}

describe('PicPair (8259A pair)', () => {
  it('delivers an edge on IRQ0 with the programmed vector and holds it in ISR until EOI', () => {
    const pic = new PicPair();
    initLinux(pic);
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(0, true);
    pic.setIrq(0, false);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x30);
    expect(pic.isr & 1).toBe(1);
    expect(pic.hasInterrupt()).toBe(false);
    // a second edge while in service waits
    pic.setIrq(0, true);
    pic.setIrq(0, false);
    expect(pic.hasInterrupt()).toBe(false);
    pic.master.write(0, 1, 0x20); // non-specific EOI
    expect(pic.isr).toBe(0);
    expect(pic.hasInterrupt()).toBe(true);
  });

  it('masks with OCW1 and reads IMR back', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.master.write(1, 1, 0x02);
    expect(pic.master.read(1, 1)).toBe(0x02);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(false);
    pic.master.write(1, 1, 0x00);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x31);
  });

  it('prioritizes lower IRQ numbers and lets higher priority nest', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.setIrq(4, true);
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x33);
    // IRQ4 is lower priority than the in-service IRQ3
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x31);
    pic.master.write(0, 1, 0x20); // EOI clears IRQ1 (highest in service)
    expect(pic.isr).toBe(1 << 3);
    pic.master.write(0, 1, 0x63); // specific EOI for IRQ3
    expect(pic.isr).toBe(0);
    expect(pic.acknowledge()).toBe(0x34);
  });

  it('cascades slave IRQs through IR2 and needs EOI on both chips', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.setIrq(12, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x3c);
    expect(pic.isr).toBe((1 << 2) | (1 << 12));
    pic.slave.write(0, 1, 0x20);
    pic.master.write(0, 1, 0x20);
    expect(pic.isr).toBe(0);
  });

  it('gives spurious IRQ7 when the request goes away before INTA', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.master.write(1, 1, 0xff);
    expect(pic.acknowledge()).toBe(0x37);
    expect(pic.isr).toBe(0); // spurious IRQ7 is not put in service
    expect(pic.spuriousCount).toBe(1);
  });

  it('withdraws the cascade request when the slave request is masked', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.setIrq(9, true);
    expect(pic.hasInterrupt()).toBe(true);
    pic.slave.write(1, 1, 0x02); // mask IRQ9 on the slave
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.acknowledge()).toBe(0x37);
  });

  it('auto-EOI does not set ISR', () => {
    const pic = new PicPair();
    initLinux(pic, true);
    pic.setIrq(0, true);
    expect(pic.acknowledge()).toBe(0x30);
    expect(pic.isr).toBe(0);
  });

  it('reads IRR and ISR through OCW3', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.master.write(1, 1, 0xff);
    pic.setIrq(5, true);
    pic.master.write(0, 1, 0x0a); // OCW3: read IRR
    expect(pic.master.read(0, 1)).toBe(1 << 5);
    pic.master.write(0, 1, 0x0b); // OCW3: read ISR
    expect(pic.master.read(0, 1)).toBe(0);
  });

  it('level-triggered IRQs via ELCR stay pending while the line is high', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.elcr.write(1, 1, 0x02); // IRQ9 level
    expect(pic.elcr.read(1, 1)).toBe(0x02);
    pic.elcr.write(0, 1, 0xff); // IRQ0,1,2 cannot be level
    expect(pic.elcr.read(0, 1)).toBe(0xf8);
    pic.setIrq(9, true);
    expect(pic.acknowledge()).toBe(0x39);
    pic.slave.write(0, 1, 0x20);
    pic.master.write(0, 1, 0x20);
    expect(pic.hasInterrupt()).toBe(true); // still asserted
    pic.setIrq(9, false);
    expect(pic.hasInterrupt()).toBe(false);
  });

  it('edge IRQs need a new rising edge', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.setIrq(4, true);
    pic.acknowledge();
    pic.master.write(0, 1, 0x20);
    expect(pic.hasInterrupt()).toBe(false); // line still high but no new edge
    pic.setIrq(4, false);
    pic.setIrq(4, true);
    expect(pic.hasInterrupt()).toBe(true);
  });

  it('poll mode returns the request and acknowledges it', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.setIrq(6, true);
    pic.master.write(0, 1, 0x0c); // OCW3 poll
    expect(pic.master.read(0, 1)).toBe(0x86);
    expect(pic.isr).toBe(1 << 6);
    pic.master.write(0, 1, 0x0c);
    expect(pic.master.read(0, 1)).toBe(0);
  });

  it('rotates priorities with set-priority and rotate-on-EOI', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.master.write(0, 1, 0xc0 | 3); // lowest priority = IRQ3, so IRQ4 is highest
    pic.setIrq(1, true);
    pic.setIrq(5, true);
    expect(pic.acknowledge()).toBe(0x35);
    pic.master.write(0, 1, 0xa0); // rotate on non-specific EOI: IRQ5 becomes lowest
    expect(pic.acknowledge()).toBe(0x31);
  });

  it('notifies output changes and survives hostile writes', () => {
    const pic = new PicPair();
    const seen: boolean[] = [];
    pic.onOutput((l) => seen.push(l));
    initLinux(pic);
    pic.setIrq(3, true);
    pic.acknowledge();
    expect(seen).toEqual([true, false]);
    pic.setIrq(99, true);
    pic.setIrq(-1, true);
    pic.master.write(7, 1, 0xff);
    expect(pic.master.read(5, 1)).toBe(0xff);
    expect(pic.elcr.read(3, 1)).toBe(0xff);
  });

  it('round-trips its state', () => {
    const pic = new PicPair();
    initLinux(pic);
    pic.setIrq(10, true);
    pic.master.write(1, 1, 0x10);
    const copy = new PicPair();
    copy.restore(pic.save());
    expect(copy.save()).toEqual(pic.save());
    expect(copy.hasInterrupt()).toBe(true);
    expect(copy.acknowledge()).toBe(0x3a);
  });
});

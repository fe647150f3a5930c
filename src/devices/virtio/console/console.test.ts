import { describe, expect, it } from 'vitest';
import { STATUS_DEVICE_NEEDS_RESET } from '../device.js';
import { PciDriverHarness } from '../pci/testing.js';
import { CONSOLE_QUEUE_SIZE, OUTPUT_CHAIN_MAX, VirtioConsole } from './console.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function setup(size?: { cols: number; rows: number }) {
  const out: string[] = [];
  const dev = new VirtioConsole({ output: (b) => out.push(dec.decode(b)), size });
  let spaces = 0;
  dev.onRxSpace(() => spaces++);
  const h = new PciDriverHarness(dev);
  h.enable();
  h.negotiate();
  h.msixVector(0, 0x41);
  h.msixVector(1, 0x42);
  const rx = h.setupQueue(0, CONSOLE_QUEUE_SIZE, 0x10000, 0).drv;
  const tx = h.setupQueue(1, CONSOLE_QUEUE_SIZE, 0x20000, 1).drv;
  h.driverOk();
  return { dev, h, rx, tx, out, spaces: () => spaces };
}

describe('virtio-console', () => {
  it('is device 1af4:1043 with two queues; the size feature and config when given a size', () => {
    const { h, dev } = setup({ cols: 132, rows: 43 });
    expect(h.cfgRead(0x00)).toBe(0x1043_1af4);
    expect(h.common(0x12, 2)).toBe(2);
    expect(dev.features).toBe(1n);
    expect(dev.readConfig(0, 2)).toBe(132);
    expect(dev.readConfig(2, 2)).toBe(43);
    expect(dev.readConfig(40, 4)).toBe(0); // past the end
    expect(setup().dev.features).toBe(0n);
  });

  it('passes the guest output on, chain by chain, and returns the buffers', () => {
    const { h, tx, out, dev } = setup();
    h.mem.writeBytes(0x40000, enc.encode('hello, '));
    h.mem.writeBytes(0x41000, enc.encode('world\n'));
    tx.add([{ addr: 0x40000, len: 7 }, { addr: 0x41000, len: 6 }]);
    tx.add([{ addr: 0x40000, len: 5 }]);
    h.kick(1);
    expect(out).toEqual(['hello, world\n', 'hello']);
    expect(tx.takeUsed()).toEqual([{ id: 0, len: 0 }, { id: 2, len: 0 }]);
    expect(dev.bytesOut).toBe(18);
  });

  it('takes input only once the guest has written, only into posted buffers, and signals when the driver posts more', async () => {
    const { h, rx, tx, dev, spaces } = setup();
    expect(dev.receive(enc.encode('abc'))).toBe(0); // nothing posted yet
    rx.add([{ addr: 0x50000, len: 2, write: true }]);
    h.kick(0);
    expect(dev.receive(enc.encode('abc'))).toBe(0); // buffers, but the guest has not written yet
    tx.add([{ addr: 0x40000, len: 1 }]);
    h.kick(1);
    await Promise.resolve();
    expect(spaces()).toBeGreaterThan(0); // input offered once the guest's port is live
    const before = spaces();
    rx.add([{ addr: 0x60000, len: 2, write: true }]);
    h.kick(0);
    expect(spaces()).toBe(before + 1);
    expect(dev.receive(enc.encode('abc'))).toBe(3); // two posted buffers of 2
    expect(rx.takeUsed()).toEqual([{ id: 0, len: 2 }, { id: 1, len: 1 }]);
    expect(dec.decode(h.mem.readBytes(0x50000, 2))).toBe('ab');
    expect(dec.decode(h.mem.readBytes(0x60000, 1))).toBe('c');
    expect(dev.receive(enc.encode('d'))).toBe(0); // every buffer used
  });

  it('bounds what one output chain can make it copy', () => {
    const { h, tx, out } = setup();
    tx.add([{ addr: 0x100000, len: 0x30000 }]);
    h.kick(1);
    expect(out[0]!.length).toBe(OUTPUT_CHAIN_MAX);
  });

  it('a writable buffer in the transmit queue breaks the device, not the VMM', () => {
    const { h, tx, out } = setup();
    tx.add([{ addr: 0x40000, len: 4, write: true }]);
    expect(() => h.kick(1)).not.toThrow();
    expect(out.join('')).toBe('');
    expect(h.common(0x14, 1) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
  });
});

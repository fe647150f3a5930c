import { describe, expect, it } from 'vitest';
import { PanicWatch } from './panic-watch.js';

const enc = new TextEncoder();

describe('PanicWatch', () => {
  it('finds the panic line whatever the chunking, and keeps the first reason', () => {
    const w = new PanicWatch();
    const text = '[    1.0] ok\r\n[    2.5] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n' +
      '[    2.6] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---\r\n';
    const bytes = enc.encode(text);
    for (let i = 0; i < bytes.length; i += 7) w.feed(bytes.subarray(i, i + 7));
    expect(w.reason).toBe('VFS: Unable to mount root fs on unknown-block(0,0)');
  });

  it('ignores ordinary output, and bounds what it keeps of an endless line', () => {
    const w = new PanicWatch();
    w.feed(enc.encode('hello\nKernel panic - not\n'));
    w.feed(new Uint8Array(1 << 20).fill(0x41));
    expect(w.reason).toBeUndefined();
    w.feed(enc.encode('\nKernel panic - not syncing: sysrq triggered crash\n'));
    expect(w.reason).toBe('sysrq triggered crash');
  });
});

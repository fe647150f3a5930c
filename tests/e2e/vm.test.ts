/**
 * The Vm object in-process, as a program drives it (bt engine, the default guest): boot, type
 * into the console stream, pause (the guest neither runs nor sees the paused time), resume,
 * stop through the ACPI power button (the default initramfs runs acpid), and `await using`
 * releasing the disk lock when the block throws. One boot for the lifecycle checks.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { INIT_MARKER } from '../../src/guest/initramfs.js';
import { MiB } from '../../src/machine/layout.js';
import { Vm } from '../../src/vmm/vm.js';

const BOOT_TIMEOUT = 5 * 60_000;
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-vm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Console output collected, with waits for a pattern after an offset. */
class Console {
  text = '';
  private waiters: { re: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];
  constructor(vm: Vm) {
    vm.console.on('data', (b: Buffer) => {
      this.text += b.toString('latin1');
      this.waiters = this.waiters.filter((w) => {
        const m = this.text.slice(w.from).match(w.re);
        if (m) w.resolve(m);
        return !m;
      });
    });
  }
  waitFor(re: RegExp, from = 0, timeoutMs = 180_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}; console tail:\n${this.text.slice(-2000)}`)), timeoutMs);
      const done = (m: RegExpMatchArray): void => {
        clearTimeout(t);
        resolve(m);
      };
      const m = this.text.slice(from).match(re);
      if (m) done(m);
      else this.waiters.push({ re, from, resolve: done });
    });
  }
}

describe('Vm (library object, bt engine)', () => {
  it('boots, answers on its console stream, pauses without the guest seeing the time, resumes, and stops by the power button', async () => {
    const vm = await Vm.create({ memoryBytes: 256 * MiB, cpus: 1, engine: 'bt' });
    const con = new Console(vm);
    const states: string[] = [];
    vm.on('state', (s) => states.push(s));
    expect(vm.state).toBe('created');
    vm.start();
    await con.waitFor(new RegExp(INIT_MARKER));
    await con.waitFor(/typevisor:~# /);

    const sh = async (cmd: string): Promise<string> => {
      const from = con.text.length;
      vm.console.write(`echo "<<$((1))"; ${cmd}; echo "$((2))>>"\n`);
      return (await con.waitFor(/<<1\r?\n([\s\S]*?)2>>/, from))[1]!.replace(/\r/g, '').trim();
    };
    const uptime = async (): Promise<number> => Number((await sh('cat /proc/uptime')).split(' ')[0]);

    const before = await uptime();
    await vm.pause();
    expect(vm.state).toBe('paused');
    // a background writer stops with the guest: nothing reaches the console while paused
    const quiet = con.text.length;
    await new Promise((r) => setTimeout(r, 3000));
    expect(con.text.length).toBe(quiet);
    vm.resume();
    expect(vm.state).toBe('running');
    const after = await uptime();
    // the 3 s paused are not guest time (the two commands around it take well under a second
    // of guest time each)
    expect(after - before).toBeGreaterThan(0);
    expect(after - before).toBeLessThan(2.5);

    const reason = await vm.stop(120_000);
    expect(reason).toEqual({ kind: 'poweroff' });
    expect(con.text).toContain('power button pressed');
    expect(vm.state).toBe('stopped');
    expect(states).toEqual(['running', 'paused', 'running', 'stopped']);
    await expect(vm.pause()).rejects.toThrow(/cannot pause: it is stopped/);
  }, BOOT_TIMEOUT);

  it('`await using` kills the VM and releases its disk when the block throws', async () => {
    const image = path.join(dir, 'disk.img');
    writeFileSync(image, Buffer.alloc(MiB));
    const lock = `${image}.typevisor-lock`;
    let vmRef: Vm | undefined;
    await expect((async () => {
      await using vm = await Vm.create({ memoryBytes: 256 * MiB, cpus: 1, engine: 'bt', disks: [{ path: image, readOnly: false, snapshot: false }] });
      vmRef = vm;
      vm.start();
      expect(existsSync(lock)).toBe(true);
      throw new Error('the caller failed');
    })()).rejects.toThrow('the caller failed');
    expect(vmRef!.state).toBe('stopped');
    expect(existsSync(lock)).toBe(false);
  }, BOOT_TIMEOUT);

  it('refuses what it cannot run, in one line, leaving nothing open', async () => {
    await expect(Vm.create({ memoryBytes: 256 * MiB, cpus: 0, engine: 'bt' })).rejects.toThrow(/--cpus 0 is out of range: use 1 to 64/);
    await expect(Vm.create({ memoryBytes: 256 * MiB, cpus: 65, engine: 'bt' })).rejects.toThrow(/out of range/);
    await expect(Vm.create({ memoryBytes: 256 * MiB, cpus: 1, engine: 'bt', kernel: path.join(dir, 'missing') })).rejects.toThrow(/missing/);
  });
});

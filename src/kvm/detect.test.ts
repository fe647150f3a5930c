import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kvmAvailability } from './detect.js';

const root = mkdtempSync(join(tmpdir(), 'typevisor-detect-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function host(name: string, opts: { flags: string; modules: string[]; dev: 'ok' | 'missing' | 'denied' }) {
  const dir = join(root, name);
  mkdirSync(join(dir, 'module'), { recursive: true });
  for (const m of opts.modules) mkdirSync(join(dir, 'module', m));
  writeFileSync(join(dir, 'cpuinfo'), `processor\t: 0\nflags\t\t: fpu ${opts.flags} sse2\n\nprocessor\t: 1\nflags\t\t: fpu ${opts.flags}\n`);
  const dev = join(dir, 'kvm');
  if (opts.dev !== 'missing') writeFileSync(dev, '');
  if (opts.dev === 'denied') chmodSync(dev, 0);
  return { devKvm: dev, cpuinfo: join(dir, 'cpuinfo'), sysModule: join(dir, 'module') };
}

describe('kvmAvailability', () => {
  it('uses kvm on a host with vmx and kvm_intel', () => {
    const a = kvmAvailability(host('intel', { flags: 'vmx', modules: ['kvm', 'kvm_intel'], dev: 'ok' }));
    expect(a).toMatchObject({ usable: true, hardware: true, opens: true, module: 'kvm_intel' });
  });

  it('explains why bt is chosen on a kvm_pvm host', () => {
    const a = kvmAvailability(host('pvm', { flags: 'hypervisor', modules: ['kvm', 'kvm_pvm'], dev: 'ok' }));
    expect(a).toMatchObject({ usable: false, hardware: false, opens: true, module: 'kvm_pvm' });
    expect(a.reason).toMatch(/kvm_pvm.*bt engine/);
  });

  it('names the fix when /dev/kvm is missing', () => {
    const a = kvmAvailability(host('missing', { flags: 'svm', modules: [], dev: 'missing' }));
    expect(a.usable).toBe(false);
    expect(a.reason).toMatch(/does not exist.*kvm_amd/);
  });

  it('names group kvm when /dev/kvm is not permitted', () => {
    const denied = (): void => {
      throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    };
    const a = kvmAvailability({ ...host('denied', { flags: 'vmx', modules: ['kvm_intel'], dev: 'denied' }), openDevice: denied });
    expect(a.usable).toBe(false);
    expect(a.reason).toMatch(/group `kvm`.*--engine bt/);
  });

  it('is consistent with this host', () => {
    const a = kvmAvailability();
    expect(a.usable).toBe(a.opens && a.hardware);
    expect(a.reason.length).toBeGreaterThan(0);
  });
});

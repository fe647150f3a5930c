/**
 * The CLI as the npm package runs it: dist/bundle/main.js, which `npm run build` bundles from
 * dist/ (scripts/bundle.mjs) with its worker entries (the kvm vCPU thread and the machine it
 * builds, the bt engine's application processor thread) beside it. The other end-to-end tests run the sources through tsx; these check that
 * the bundle runs, finds its worker files and its native dependency (koffi), on both engines.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kvmAvailability } from '../../src/kvm/detect.js';

const NASM = '/usr/bin/nasm';
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const BUNDLE = path.join(root, 'dist', 'bundle', 'main.js');
const missing = !existsSync(BUNDLE) ? 'no dist/bundle/main.js: run npm run build' : !existsSync(NASM) ? 'nasm missing' : undefined;
const kvm = kvmAvailability();

describe.skipIf(missing !== undefined)(`the bundled CLI (dist/bundle)${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const cache = mkdtempSync(path.join(tmpdir(), 'typevisor-bundle-cache-'));
  const run = (args: string[]) => spawnSync(process.execPath, [BUNDLE, ...args], { encoding: 'latin1', input: '', timeout: 60_000, env: { ...process.env, TYPEVISOR_CACHE: cache } });

  it('prints the package version', () => {
    const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
    expect(run(['--version']).stdout.trim()).toBe(version);
  });

  it.each([
    ['bt', undefined],
    ['kvm', kvm.opens ? undefined : kvm.reason],
  ])('boots a multiboot kernel on the %s engine with two vCPUs', (engine, skip) => {
    if (skip !== undefined) return void console.log(`skipped on ${engine}: ${skip}`);
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-bundle-'));
    const mod = path.join(dir, 'module.bin');
    writeFileSync(mod, 'MODULE42 and more');
    const kernel = path.join(dir, 'hello.bin');
    execFileSync(NASM, ['-f', 'bin', '-o', kernel, path.join(here, 'guests/multiboot-hello.asm')]);
    const r = run(['run', '--engine', engine, '--cpus', '2', '-m', '64M', '--kernel', kernel, '--initrd', mod, '--cmdline', 'from the bundle']);
    expect(r.stdout, r.stderr).toContain(`multiboot ok, cmdline: ${kernel} from the bundle\n`);
    expect(r.stdout).toContain('MODULE42\n');
    expect(r.status).toBe((0x21 << 1) | 1);
  });

  it('keeps its code cache in the cache directory and runs with a damaged one', () => {
    const file = path.join(cache, 'code-cache', 'cli.bin');
    expect(run(['--version']).status).toBe(0);
    const made = readFileSync(file);
    expect(made.subarray(0, 21).toString()).toBe('typevisor-code-cache-');
    writeFileSync(file, made.subarray(0, made.length >> 1));
    const r = run(['run', '--memory', 'lots']);
    const unbundled = spawnSync(process.execPath, [path.join(root, 'dist', 'cli', 'main.js'), 'run', '--memory', 'lots'], { encoding: 'latin1', input: '' });
    expect(r.stderr).toBe(unbundled.stderr);
    expect(r.status).toBe(2);
    const again = readFileSync(file); // written again, whole
    expect(again.length).toBeGreaterThan(made.length >> 1);
    expect(again.subarray(0, 21).toString()).toBe('typevisor-code-cache-');
  });
});

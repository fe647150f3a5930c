import { describe, it, expect, afterAll } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AptSession, guestCacheDir, packageDir, pickKernelImage, versionForPath } from './debian.js';
import { prepareDefaultGuest } from './default-guest.js';
import { GuestError } from './errors.js';

const work = mkdtempSync(join(tmpdir(), 'typevisor-debian-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ELF = '\x7fELF-fake-busybox';

/**
 * A fake apt-get / apt-cache / dpkg-deb in `dir` (shell scripts), so resolution, `apt-get update`,
 * download and extraction run without the network. Calls are appended to `dir/calls`. Until
 * `apt-get update` runs, apt-cache knows nothing (as on a host whose lists were never fetched).
 */
function fakeApt(dir: string, opts: { listsPresent: boolean }): void {
  mkdirSync(dir, { recursive: true });
  const state = join(dir, 'updated');
  if (opts.listsPresent) writeFileSync(state, '');
  const script = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!/bin/sh\necho "${name} $*" >> ${join(dir, 'calls')}\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  script('apt-cache', `
[ -e ${state} ] || exit 0
case "$1" in
policy)
  case "$2" in
  linux-image-cloud-amd64) printf 'linux-image-cloud-amd64:\\n  Installed: (none)\\n  Candidate: 6.1.99-1\\n' ;;
  linux-image-6.1.0-77-cloud-amd64) printf 'linux-image-6.1.0-77-cloud-amd64:\\n  Installed: (none)\\n  Candidate: 6.1.99-1\\n' ;;
  busybox-static) printf 'busybox-static:\\n  Installed: (none)\\n  Candidate: 1:1.35.0-4\\n' ;;
  esac ;;
show)
  [ "$3" = "linux-image-cloud-amd64=6.1.99-1" ] && printf 'Package: linux-image-cloud-amd64\\nVersion: 6.1.99-1\\nDepends: linux-image-6.1.0-77-cloud-amd64 (= 6.1.99-1)\\n' ;;
esac`);
  script('apt-get', `
case "$1" in
update) : > ${state} ;;
download)
  [ -e ${join(dir, 'offline')} ] && { echo "E: Failed to fetch http://deb.debian.org/x 404 Not Found" >&2; exit 100; }
  case "$3" in
  linux-image-6.1.0-77-cloud-amd64=6.1.99-1) echo kernel > linux-image-6.1.0-77-cloud-amd64_6.1.99-1_amd64.deb ;;
  busybox-static=1:1.35.0-4) echo busybox > busybox-static_1%3a1.35.0-4_amd64.deb ;;
  *) echo "E: no $3" >&2; exit 100 ;;
  esac ;;
esac`);
  script('dpkg-deb', `
[ "$1" = "-x" ] || exit 2
mkdir -p "$3"
if [ "$(cat "$2")" = kernel ]; then mkdir -p "$3/boot" && echo bz > "$3/boot/vmlinuz-6.1.0-77-cloud-amd64"; fi
if [ "$(cat "$2")" = busybox ]; then mkdir -p "$3/bin" && printf '${ELF}' > "$3/bin/busybox"; fi`);
}

function calls(dir: string): string[] {
  const f = join(dir, 'calls');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n') : [];
}

describe('paths and parsing', () => {
  it('finds the cache dir from TYPEVISOR_CACHE, then XDG_CACHE_HOME, then ~/.cache', () => {
    expect(guestCacheDir({ TYPEVISOR_CACHE: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(guestCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/typevisor');
    expect(guestCacheDir({})).toBe(join(homedir(), '.cache', 'typevisor'));
  });

  it('turns versions into file names as apt does', () => {
    expect(versionForPath('1:1.35.0-4+deb12u1+b1')).toBe('1%3a1.35.0-4+deb12u1+b1');
    expect(versionForPath('a/b')).toBe('a_b');
    expect(packageDir('/c', { name: 'busybox-static', version: '1:1.35' })).toBe('/c/packages/busybox-static_1%3a1.35');
  });

  it('picks the kernel image from the metapackage Depends', () => {
    expect(pickKernelImage('linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)')).toBe('linux-image-6.1.0-56-cloud-amd64');
    expect(pickKernelImage('foo (>= 1), linux-image-6.12.9+bpo-cloud-amd64 | bar')).toBe('linux-image-6.12.9+bpo-cloud-amd64');
    expect(pickKernelImage('linux-image-cloud-amd64:any, kmod')).toBeUndefined();
    expect(pickKernelImage('')).toBeUndefined();
  });
});

describe('without apt-get on PATH', () => {
  it('throws a GuestError that says to pass --kernel and --initrd', async () => {
    const empty = mkdtempSync(join(work, 'empty-path-'));
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    const env = { PATH: empty };
    const err = await new AptSession({ env, cacheDir, log: () => {} }).resolveKernel().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuestError);
    expect((err as GuestError).code).toBe('NO_APT');
    expect((err as Error).message).toMatch(/apt-get.*not found on PATH/);
    expect((err as Error).message).toMatch(/--kernel/);
    expect((err as Error).message).toMatch(/--initrd/);
    await expect(prepareDefaultGuest({ env, cacheDir, log: () => {} })).rejects.toThrow(/--kernel <bzImage> and --initrd/);
  });

  it('still uses a cache filled earlier', async () => {
    const bin = join(work, 'fake-apt-fill');
    fakeApt(bin, { listsPresent: true });
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    await prepareDefaultGuest({ env: { PATH: `${bin}:/usr/bin:/bin` }, cacheDir, log: () => {} });
    const lines: string[] = [];
    const g = await prepareDefaultGuest({ env: { PATH: mkdtempSync(join(work, 'empty-path-')) }, cacheDir, log: (l) => lines.push(l) });
    expect(g.kernelVersion).toBe('6.1.0-77-cloud-amd64');
    expect(g.busyboxVersion).toBe('1:1.35.0-4');
    expect(lines).toEqual([expect.stringMatching(/^apt not found; using the cached linux-image-6\.1\.0-77-cloud-amd64/)]);
  });
});

describe('with a (fake) apt', () => {
  it('resolves the metapackage, downloads and extracts, then a second run downloads nothing', async () => {
    const bin = join(work, 'fake-apt');
    fakeApt(bin, { listsPresent: true });
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    const env = { PATH: `${bin}:/usr/bin:/bin` };
    const lines: string[] = [];
    const g = await prepareDefaultGuest({ env, cacheDir, log: (l) => lines.push(l) });
    expect(g.kernelPackage).toEqual({ name: 'linux-image-6.1.0-77-cloud-amd64', version: '6.1.99-1' });
    expect(g.kernelVersion).toBe('6.1.0-77-cloud-amd64');
    expect(g.kernelPath).toBe(join(cacheDir, 'packages', 'linux-image-6.1.0-77-cloud-amd64_6.1.99-1', 'boot', 'vmlinuz-6.1.0-77-cloud-amd64'));
    expect(readFileSync(g.kernelPath, 'utf8')).toBe('bz\n');
    expect(g.initrdPath.startsWith(join(cacheDir, 'initramfs'))).toBe(true);
    expect(lines).toContain('downloading linux-image-6.1.0-77-cloud-amd64 6.1.99-1 ...');
    expect(lines).toContain('downloading busybox-static 1:1.35.0-4 ...');
    expect(calls(bin)).not.toContain('apt-get update -q');
    // Work dirs are gone; only the two extracted packages remain.
    expect(readdirSync(join(cacheDir, 'packages')).sort()).toEqual([
      'busybox-static_1%3a1.35.0-4', 'linux-image-6.1.0-77-cloud-amd64_6.1.99-1',
    ]);

    const before = calls(bin).filter((c) => c.startsWith('apt-get download')).length;
    expect(before).toBe(2);
    const quiet: string[] = [];
    const again = await prepareDefaultGuest({ env, cacheDir, log: (l) => quiet.push(l) });
    expect(again).toEqual(g);
    expect(quiet).toEqual([]);
    expect(calls(bin).filter((c) => c.startsWith('apt-get download')).length).toBe(before);
  });

  it('runs apt-get update once, and says so, when the package lists are missing', async () => {
    const bin = join(work, 'fake-apt-nolists');
    fakeApt(bin, { listsPresent: false });
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    const lines: string[] = [];
    const session = new AptSession({ env: { PATH: `${bin}:/usr/bin:/bin` }, cacheDir, log: (l) => lines.push(l) });
    expect(await session.resolveKernel()).toEqual({ name: 'linux-image-6.1.0-77-cloud-amd64', version: '6.1.99-1' });
    expect(lines).toEqual([expect.stringMatching(/no candidate for linux-image-cloud-amd64.*running apt-get update \(once\)/)]);
    expect(calls(bin).filter((c) => c === 'apt-get update -q')).toHaveLength(1);
  });

  it('names the package when apt does not know it even after an update', async () => {
    const bin = join(work, 'fake-apt-unknown');
    fakeApt(bin, { listsPresent: true });
    const session = new AptSession({ env: { PATH: `${bin}:/usr/bin:/bin` }, cacheDir: work, log: () => {} });
    await expect(session.resolve('no-such-package')).rejects.toThrow(/no installable version of no-such-package.*--kernel/);
    expect(calls(bin).filter((c) => c === 'apt-get update -q')).toHaveLength(1);
  });

  it('reports a failed download after one apt-get update, and leaves no half-made package behind', async () => {
    const bin = join(work, 'fake-apt-404');
    fakeApt(bin, { listsPresent: true });
    writeFileSync(join(bin, 'offline'), '');
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    const lines: string[] = [];
    const session = new AptSession({ env: { PATH: `${bin}:/usr/bin:/bin` }, cacheDir, log: (l) => lines.push(l) });
    await expect(session.fetch({ name: 'busybox-static', version: '1:1.35.0-4' }))
      .rejects.toThrow(/apt-get download busybox-static=1:1\.35\.0-4 failed \(E: Failed to fetch .*404 Not Found\); check network/);
    expect(calls(bin).filter((c) => c === 'apt-get update -q')).toHaveLength(1);
    expect(lines.at(-1)).toMatch(/download of busybox-static 1:1\.35\.0-4 failed; running apt-get update/);
    expect(readdirSync(join(cacheDir, 'packages'))).toEqual([]);
  });

  it('asks for a re-run when apt-get update moved the version on', async () => {
    const bin = join(work, 'fake-apt-moved');
    fakeApt(bin, { listsPresent: true });
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    const session = new AptSession({ env: { PATH: `${bin}:/usr/bin:/bin` }, cacheDir, log: () => {} });
    await expect(session.fetch({ name: 'linux-image-6.1.0-77-cloud-amd64', version: '6.1.98-1' }))
      .rejects.toThrow(/changed from 6\.1\.98-1 to 6\.1\.99-1 after apt-get update; run again/);
    expect(readdirSync(join(cacheDir, 'packages'))).toEqual([]);
  });
});

import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { guestCacheDir } from './debian.js';
import { GuestError } from './errors.js';
import { IMAGE_MARKER } from './image/config.js';
import { buildInitramfs, INIT_MARKER, INIT_SCRIPT, MODULES, prepareInitramfs, readModules, SHRC, textFiles } from './initramfs.js';

const CPIO = '/usr/bin/cpio';
const haveCpio = existsSync(CPIO);
const work = mkdtempSync(join(tmpdir(), 'typevisor-initramfs-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Stands in for busybox: an ELF magic and a recognisable body. */
const FAKE_BUSYBOX = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, ...new TextEncoder().encode('not really busybox')]);

/** A real busybox from an earlier `scripts/fetch-guest.ts` run, if the cache has one (tests never download). */
function cachedBusybox(): string | undefined {
  const dir = join(guestCacheDir(), 'packages');
  if (!existsSync(dir)) return undefined;
  const pkg = readdirSync(dir).find((n) => n.startsWith('busybox-static_'));
  const bin = pkg && join(dir, pkg, 'bin', 'busybox');
  return bin && existsSync(bin) ? bin : undefined;
}
const busybox = cachedBusybox();

describe('buildInitramfs', () => {
  it('gzip output unpacks to the uncompressed archive, and output is reproducible', () => {
    const raw = buildInitramfs(FAKE_BUSYBOX, { compress: false });
    const gz = buildInitramfs(FAKE_BUSYBOX);
    expect(gz[0]).toBe(0x1f);
    expect(gz[1]).toBe(0x8b);
    expect(new Uint8Array(gunzipSync(gz))).toEqual(raw);
    expect(buildInitramfs(FAKE_BUSYBOX)).toEqual(gz);
  });

  it('refuses a busybox that is not an ELF file', () => {
    expect(() => buildInitramfs(new TextEncoder().encode('#!/bin/sh\n'))).toThrow(GuestError);
  });

  it('/init prints the banner and the marker on its own line, starts a session shell and powers off', () => {
    expect(INIT_SCRIPT.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(INIT_SCRIPT.split('\n')).toContain(`echo ${INIT_MARKER}`);
    expect(INIT_SCRIPT).toContain('echo "typevisor: init started (kernel $(uname -r))"');
    expect(INIT_SCRIPT).toMatch(/^mount -t proc proc \/proc$/m);
    expect(INIT_SCRIPT).toMatch(/^mount -t sysfs sysfs \/sys$/m);
    expect(INIT_SCRIPT).toMatch(/^mount -t devtmpfs devtmpfs \/dev/m);
    expect(INIT_SCRIPT).toMatch(/^setsid cttyhack sh$/m);
    expect(INIT_SCRIPT.trimEnd().split('\n').at(-1)).toBe('/bin/busybox poweroff -f');
    expect(SHRC).toMatch(/^poweroff\(\) \{ \/bin\/busybox poweroff -f/m);
  });
});

describe('/init and a root file system on disk (typevisor image debian)', () => {
  const lines = INIT_SCRIPT.split('\n');
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));

  it('probes /dev/vda read-only for the image marker after the modules load and before the shell', () => {
    const probe = at(/mount -t ext4 -o ro \/dev\/vda \/newroot/);
    expect(probe).toBeGreaterThan(at(/insmod/));
    expect(probe).toBeLessThan(at(new RegExp(`^echo ${INIT_MARKER}$`)));
    expect(INIT_SCRIPT).toContain(`if [ -f /newroot/${IMAGE_MARKER} ]; then root=/dev/vda mounted=1; else umount /newroot; fi`);
  });

  it('takes root= from the kernel command line, and typevisor.shell keeps the initramfs shell', () => {
    expect(INIT_SCRIPT).toMatch(/^for a in \$\(cat \/proc\/cmdline\); do case "\$a" in root=\*\) root="\$\{a#root=\}";; typevisor\.shell\) shell=1;; esac; done$/m);
    expect(INIT_SCRIPT).toMatch(/^if \[ -z "\$shell" \] && \[ -n "\$root" \]; then$/m);
  });

  it('moves /dev, /proc and /sys into the new root and execs switch_root to its /sbin/init as PID 1', () => {
    const sw = at(/^ {4}exec switch_root \/newroot \/sbin\/init$/);
    expect(sw).toBeGreaterThan(0);
    expect(lines[sw - 1]).toBe('    for d in dev proc sys; do mount -o move /$d /newroot/$d; done');
    // /sbin/init is an absolute symlink (to /lib/systemd/systemd) that only resolves in the new root
    expect(INIT_SCRIPT).toContain('[ -L /newroot/sbin/init ] || [ -x /newroot/sbin/init ]');
    expect(INIT_SCRIPT).toContain('echo "typevisor: cannot boot $root (no file system with /sbin/init on it); here is the initramfs shell"');
  });
});

describe.skipIf(!haveCpio)('initramfs contents (GNU cpio)', () => {
  const archive = join(work, 'initramfs.cpio');
  writeFileSync(archive, buildInitramfs(FAKE_BUSYBOX, { compress: false }));

  it('lists init, busybox, applet links, device nodes and the mount points', () => {
    const list = execFileSync(CPIO, ['-tv', '-n', '--quiet', '-F', archive], { encoding: 'utf8' });
    const names = list.trim().split('\n').map((l) => l.replace(/ -> .*$/, '').split(/\s+/).at(-1));
    for (const n of ['init', 'bin/busybox', 'bin/sh', 'bin/mount', 'bin/cttyhack', 'bin/setsid', 'sbin/poweroff',
      'sbin/reboot', 'etc/shrc', 'dev/console', 'dev/null', 'dev/ttyS0', 'proc', 'sys', 'dev', 'tmp', 'root']) {
      expect(names).toContain(n);
    }
    expect(list).toMatch(/^crw-------\s+1\s+0\s+0\s+5,\s+1 .* dev\/console$/m);
    expect(list).toMatch(/^crw-rw-rw-\s+1\s+0\s+0\s+1,\s+3 .* dev\/null$/m);
    expect(list).toMatch(/^crw-rw----\s+1\s+0\s+0\s+4,\s+64 .* dev\/ttyS0$/m);
    expect(list).toMatch(/^-rwxr-xr-x .* init$/m);
    expect(list).toMatch(/^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m);
  });

  it('extracts /init and busybox byte for byte', () => {
    const dir = mkdtempSync(join(work, 'x-'));
    execFileSync(CPIO, ['-i', '-d', '--quiet', '-F', archive, 'init', 'bin/busybox', 'etc/*', 'sbin/*'], { cwd: dir });
    expect(readFileSync(join(dir, 'init'), 'utf8')).toBe(INIT_SCRIPT);
    expect(new Uint8Array(readFileSync(join(dir, 'bin/busybox')))).toEqual(FAKE_BUSYBOX);
    expect(readFileSync(join(dir, 'sbin/poweroff'), 'utf8')).toContain('exec /bin/busybox poweroff -f "$@"');
    expect(statSync(join(dir, 'init')).mode & 0o777).toBe(0o755);
  });
});

describe('kernel modules in the initramfs', () => {
  it('MODULES lists the virtio core before the drivers that use it', () => {
    const names = MODULES.map((m) => m.split('/').at(-1));
    expect(names.slice(0, 5)).toEqual(['virtio_ring.ko', 'virtio.ko', 'virtio_pci_legacy_dev.ko', 'virtio_pci_modern_dev.ko', 'virtio_pci.ko']);
    expect(names).toContain('virtio-rng.ko');
    expect(INIT_SCRIPT).toMatch(/insmod "\/lib\/modules\/\$m"/);
  });

  it.skipIf(!haveCpio)('stores modules under lib/modules and their order in /etc/modules', () => {
    const modules = [{ name: 'a.ko', bytes: new Uint8Array([1, 2]) }, { name: 'b.ko', bytes: new Uint8Array([3]) }];
    const file = join(work, 'modules.cpio');
    writeFileSync(file, buildInitramfs(FAKE_BUSYBOX, { compress: false, modules }));
    const dir = mkdtempSync(join(work, 'm-'));
    execFileSync(CPIO, ['-i', '-d', '--quiet', '-F', file, 'lib/modules/*', 'etc/modules'], { cwd: dir });
    expect(readFileSync(join(dir, 'etc/modules'), 'utf8')).toBe('a.ko\nb.ko\n');
    expect([...readFileSync(join(dir, 'lib/modules/b.ko'))]).toEqual([3]);
  });

  it('the cache key changes with the modules; a module the package lacks is left out, an unreadable one says what to do', async () => {
    const cacheDir = mkdtempSync(join(work, 'cache-m-'));
    const bb = join(work, 'fake-busybox-m');
    writeFileSync(bb, FAKE_BUSYBOX);
    const kdir = mkdtempSync(join(work, 'k-'));
    for (const m of MODULES) {
      execFileSync('mkdir', ['-p', join(kdir, m, '..')]);
      writeFileSync(join(kdir, m), 'v1');
    }
    const a = await prepareInitramfs({ cacheDir, busyboxPath: bb, busyboxVersion: '1', kernelModulesDir: kdir });
    writeFileSync(join(kdir, MODULES[0]!), 'v2');
    const b = await prepareInitramfs({ cacheDir, busyboxPath: bb, busyboxVersion: '1', kernelModulesDir: kdir });
    expect(b).not.toBe(a);
    expect((await readModules(kdir)).map((m) => m.name)).toEqual(MODULES.map((m) => m.split('/').at(-1)));
    expect(await readModules(join(kdir, 'nope'))).toEqual([]);
    execFileSync('rm', [join(kdir, MODULES[1]!)]);
    execFileSync('mkdir', [join(kdir, MODULES[1]!)]); // a directory where the module should be: EISDIR
    await expect(readModules(kdir)).rejects.toThrow(/Cannot read kernel module .* delete the typevisor cache/);
  });
});

describe('prepareInitramfs cache', () => {
  it('builds once per busybox version and /init content, then reuses the file', async () => {
    const cacheDir = mkdtempSync(join(work, 'cache-'));
    const bb = join(work, 'fake-busybox');
    writeFileSync(bb, FAKE_BUSYBOX);
    const first = await prepareInitramfs({ cacheDir, busyboxPath: bb, busyboxVersion: '1:1.35.0-4' });
    expect(first.startsWith(join(cacheDir, 'initramfs'))).toBe(true);
    expect(first).toContain('1%3a1.35.0-4');
    const mtime = statSync(first).mtimeMs;
    const again = await prepareInitramfs({ cacheDir, busyboxPath: bb, busyboxVersion: '1:1.35.0-4' });
    expect(again).toBe(first);
    expect(statSync(again).mtimeMs).toBe(mtime);
    const other = await prepareInitramfs({ cacheDir, busyboxPath: bb, busyboxVersion: '1:1.36.1-1' });
    expect(other).not.toBe(first);
    const raw = await prepareInitramfs({ cacheDir, busyboxPath: bb, busyboxVersion: '1:1.35.0-4', compress: false });
    expect(raw.endsWith('.cpio')).toBe(true);
    // No temp files left behind.
    expect(readdirSync(join(cacheDir, 'initramfs')).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('says what to do when busybox is missing', async () => {
    await expect(prepareInitramfs({ cacheDir: work, busyboxPath: join(work, 'nope'), busyboxVersion: '1' }))
      .rejects.toThrow(/Cannot read busybox .* delete the typevisor cache/);
  });
});

// Needs the real busybox-static from the cache (filled by `node --import tsx scripts/fetch-guest.ts`).
describe.skipIf(!busybox)('generated scripts under the real busybox sh (cached busybox-static)', () => {
  it('/init, /etc/shrc and the wrappers pass `busybox sh -n`', () => {
    const scripts = textFiles().filter((t) => t.text.startsWith('#!') || t.path === 'etc/shrc');
    expect(scripts.map((s) => s.path)).toEqual(expect.arrayContaining(['init', 'etc/shrc', 'sbin/poweroff', 'sbin/reboot']));
    for (const { path, text } of scripts) {
      const f = join(work, `syntax-${path.replace(/\//g, '_')}`);
      writeFileSync(f, text);
      execFileSync(busybox!, ['sh', '-n', f]);
    }
  });

  it('/etc/shrc turns poweroff, reboot and halt into functions (applets would signal PID 1)', () => {
    const f = join(work, 'shrc');
    writeFileSync(f, SHRC);
    const out = execFileSync(busybox!, ['sh', '-c', `. ${f}; type poweroff; type reboot; type halt`], { encoding: 'utf8' });
    expect(out).toMatch(/poweroff is a function/);
    expect(out).toMatch(/reboot is a function/);
    expect(out).toMatch(/halt is a function/);
  });

  it('a syntax error would be caught (the check can fail)', () => {
    const f = join(work, 'bad');
    writeFileSync(f, 'if then fi\n');
    expect(() => execFileSync(busybox!, ['sh', '-n', f], { stdio: 'pipe' })).toThrow();
  });
});

if (!busybox) {
  describe('generated scripts under the real busybox sh', () => {
    it.skip('skipped: no busybox-static in the typevisor cache (run `node --import tsx scripts/fetch-guest.ts`; tests never download)', () => {});
  });
}

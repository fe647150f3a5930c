import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  EXTRA_PACKAGES, FALLBACK_MIRROR, fakerootScript, IMAGE_MARKER, ImageError, imageCacheKey, imageFileName, imageFiles, mirrorLines,
  parseAptSources, parseImageSize, shQuote, SUITE,
} from './config.js';
import { checkOut, chooseMode, hasSubordinateRange } from './build.js';

const MKFS = '/sbin/mkfs.ext4';
const DEBUGFS = '/sbin/debugfs';
const work = mkdtempSync(join(tmpdir(), 'typevisor-image-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('parseImageSize', () => {
  it('takes sizes like --memory does, in whole MiB', () => {
    expect(parseImageSize('2G')).toBe(2 * 1024 ** 3);
    expect(parseImageSize('1500M')).toBe(1500 * 1024 ** 2);
    expect(parseImageSize('1024')).toBe(1024 ** 3); // a bare number is MiB
    expect(parseImageSize('1.5G')).toBe(1536 * 1024 ** 2);
    expect(parseImageSize('4GiB')).toBe(4 * 1024 ** 3);
  });

  it('refuses empty, malformed, too small, too large and fractional-MiB sizes as usage errors', () => {
    for (const [text, re] of [
      ['', /--size is empty/], ['2X', /is not a size/], ['0x10', /is not a size/], ['-1G', /is not a size/],
      ['100M', /too small for Debian: give at least 512M/], ['3T', /too large/], ['600.5M', /whole number of MiB/],
    ] as const) {
      let err: unknown;
      try {
        parseImageSize(text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ImageError);
      expect((err as ImageError).usage).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
  });
});

describe('apt sources', () => {
  const DEB822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security/
Suites: bookworm-security
Components: main contrib
Enabled: yes

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no
`;

  it('reads deb822 stanzas: deb only, enabled only, one entry per URI and suite', () => {
    expect(parseAptSources(DEB822, true)).toEqual([
      { uri: 'http://deb.debian.org/debian', suite: 'bookworm', components: ['main'] },
      { uri: 'http://deb.debian.org/debian', suite: 'bookworm-updates', components: ['main'] },
      { uri: 'http://deb.debian.org/debian-security', suite: 'bookworm-security', components: ['main', 'contrib'] },
    ]);
  });

  it('reads one-line sources.list entries, skipping deb-src, comments and [options]', () => {
    const list = '# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\ndeb-src http://x/debian bookworm main\n  # deb http://off/debian bookworm main\n';
    expect(parseAptSources(list, false)).toEqual([{ uri: 'http://mirror.example/debian', suite: 'bookworm', components: ['main', 'contrib'] }]);
  });

  it('makes the archive, updates and security lines from the host mirror', () => {
    expect(mirrorLines(parseAptSources(DEB822, true))).toEqual([
      'deb http://deb.debian.org/debian bookworm main',
      'deb http://deb.debian.org/debian bookworm-updates main',
      'deb http://deb.debian.org/debian-security bookworm-security main',
    ]);
  });

  it('takes a Debian mirror from a host on another release, ignores non-Debian archives, and honours --mirror', () => {
    const trixie = parseAptSources('deb http://ftp.example/debian trixie main\n', false);
    expect(mirrorLines(trixie)[0]).toBe(`deb http://ftp.example/debian ${SUITE} main`);
    const ubuntu = parseAptSources('deb http://archive.ubuntu.com/ubuntu noble main\n', false);
    expect(mirrorLines(ubuntu)).toEqual([`deb ${FALLBACK_MIRROR} ${SUITE} main`, `deb ${FALLBACK_MIRROR} ${SUITE}-updates main`]);
    expect(mirrorLines([], 'http://local:3142/debian/')[0]).toBe(`deb http://local:3142/debian ${SUITE} main`);
  });
});

describe('the files added to the image', () => {
  const files = new Map(imageFiles().map((f) => [f.path, f]));

  it('mounts /dev/vda as / and names the machine', () => {
    expect(files.get('etc/fstab')!.text).toMatch(/^\/dev\/vda\t\/\text4\trw,errors=remount-ro\t0\t0$/m);
    expect(files.get('etc/hostname')!.text).toBe('typevisor\n');
    expect(files.get('etc/hosts')!.text).toMatch(/^127\.0\.1\.1\ttypevisor$/m);
  });

  it('logs root in on every serial getty (ttyS0, hvc0) without a password', () => {
    const unit = files.get('etc/systemd/system/serial-getty@.service')!.text;
    expect(unit).toMatch(/^ExecStart=-\/sbin\/agetty --autologin root .* - \$TERM$/m);
    expect(unit).toMatch(/^TTYPath=\/dev\/%I$/m);
    expect(unit).toMatch(/^WantedBy=getty\.target$/m);
    // no wait for udev's device unit, which can time out on the bt engine
    expect(unit).not.toMatch(/dev-%i\.device/);
  });

  it('configures the network card by DHCP with systemd-networkd, and the user network\'s DNS relay', () => {
    const unit = files.get('etc/systemd/network/80-typevisor.network')!.text;
    expect(unit).toMatch(/^\[Match\]\nName=eth\* en\*$/m);
    expect(unit).toMatch(/^DHCP=ipv4$/m);
    expect(files.get('etc/resolv.conf')!.text).toMatch(/^nameserver 10\.0\.2\.3$/m);
  });

  it('writes the marker the initramfs looks for, with the package set', () => {
    expect(files.get(IMAGE_MARKER)!.text).toContain(`packages=${EXTRA_PACKAGES.join(',')}`);
    expect(EXTRA_PACKAGES).toContain('systemd-sysv');
    expect(EXTRA_PACKAGES).not.toContain('udev'); // measured: a third of the boot on the bt engine
  });

  it('quotes for sh', () => {
    expect(shQuote("it's a b")).toBe(`'it'\\''s a b'`);
  });
});

describe('the fakeroot script', () => {
  const paths = { tarball: '/c/t/rootfs.tar', files: '/c/t/files', root: '/c/t/root', image: '/c/t/image.img', mkfs: '/sbin/mkfs.ext4', sizeBytes: 2 * 1024 ** 3 };
  const script = fakerootScript(paths);

  it('extracts, configures, removes root\'s password and makes the file system, in that order', () => {
    const lines = script.trim().split('\n');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    expect(lines[0]).toBe('set -eu');
    expect(at(/^tar -C '\/c\/t\/root' --numeric-owner -xpf '\/c\/t\/rootfs\.tar'$/)).toBeGreaterThan(0);
    expect(at(/^install -D -o 0 -g 0 -m 644 '\/c\/t\/files\/etc\/fstab' '\/c\/t\/root\/etc\/fstab'$/)).toBeGreaterThan(at(/^tar /));
    expect(at(/^ln -sf \/dev\/null '\/c\/t\/root\/etc\/systemd\/system\/getty-static\.service'$/)).toBeGreaterThan(at(/^tar /));
    expect(at(/^ln -sf \/lib\/systemd\/system\/systemd-networkd\.service '\/c\/t\/root\/etc\/systemd\/system\/multi-user\.target\.wants\/systemd-networkd\.service'$/)).toBeGreaterThan(at(/^tar /));
    expect(script).not.toMatch(/wait-online/);
    expect(at(/^sed -i 's\/\^root:\[\^:\]\*:\/root::\/' '\/c\/t\/root\/etc\/shadow'$/)).toBeGreaterThan(at(/^install /));
    expect(at(/^truncate -s 2147483648 '\/c\/t\/image\.img'$/)).toBeGreaterThan(at(/^sed /));
    expect(lines.at(-1)).toBe(`'/sbin/mkfs.ext4' -q -F -L debian -d '/c/t/root' '/c/t/image.img'`);
    expect(lines.filter((l) => l.startsWith('echo "phase: ')).length).toBe(3);
  });

  it('removes root\'s password from a shadow file, keeping the others and the file\'s mode', () => {
    const dir = mkdtempSync(join(work, 's-'));
    const shadow = join(dir, 'shadow');
    writeFileSync(shadow, 'root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n', { mode: 0o640 });
    const sed = fakerootScript(paths).split('\n').find((l) => l.startsWith('sed '))!.replace(`'/c/t/root/etc/shadow'`, shQuote(shadow));
    execFileSync('sh', ['-c', sed]);
    expect(execFileSync('cat', [shadow], { encoding: 'utf8' })).toBe('root::20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n');
    expect(execFileSync('stat', ['-c', '%a', shadow], { encoding: 'utf8' }).trim()).toBe('640');
  });
});

describe.skipIf(!existsSync('/usr/bin/fakeroot') || !existsSync(DEBUGFS))('the fakeroot script, run (fakeroot, e2fsprogs)', () => {
  it('turns a tarball into an ext4 image whose files are root\'s, with typevisor\'s files added', () => {
    const dir = mkdtempSync(join(work, 'run-'));
    const tree = join(dir, 'tree');
    execFileSync('mkdir', ['-p', join(tree, 'etc'), join(tree, 'root')]);
    writeFileSync(join(tree, 'etc/shadow'), 'root:*:20000:0:99999:7:::\n', { mode: 0o640 });
    execFileSync('tar', ['-C', tree, '--owner=0', '--group=0', '-cf', join(dir, 'rootfs.tar'), '.']);
    const files = join(dir, 'files');
    for (const f of imageFiles()) {
      execFileSync('mkdir', ['-p', join(files, f.path, '..')]);
      writeFileSync(join(files, f.path), f.text);
    }
    const image = join(dir, 'image.img');
    const p = { tarball: join(dir, 'rootfs.tar'), files, root: join(dir, 'root'), image, mkfs: MKFS, sizeBytes: 16 * 1024 ** 2 };
    writeFileSync(join(dir, 'build.sh'), fakerootScript(p));
    const err = execFileSync('fakeroot', ['--', 'sh', join(dir, 'build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(err).toBe('');
    const debugfs = (cmd: string) => execFileSync(DEBUGFS, ['-R', cmd, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(debugfs('cat /etc/shadow')).toBe('root::20000:0:99999:7:::\n');
    expect(debugfs('cat /etc/fstab')).toContain('/dev/vda');
    expect(debugfs('stat /etc/systemd/system/getty-static.service')).toMatch(/Fast link dest: "\/dev\/null"/);
    expect(debugfs('stat /etc/systemd/system/sockets.target.wants/systemd-networkd.socket')).toMatch(/Fast link dest: "\/lib\/systemd\/system\/systemd-networkd\.socket"/);
    expect(debugfs(`cat /${IMAGE_MARKER}`)).toContain('suite=bookworm');
    const owner = (path: string) => /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(debugfs(`stat ${path}`))!.slice(1).join(':');
    for (const path of ['/etc/shadow', '/etc/fstab', '/etc/systemd/system/serial-getty@.service', '/root']) expect(owner(path)).toBe('0:0');
  });
});

describe('cache key and checks', () => {
  const mirrors = ['deb http://deb.debian.org/debian bookworm main'];

  it('keys the cached image by recipe, mirrors, packages and size', () => {
    const key = imageCacheKey({ mirrors, sizeBytes: 2 * 1024 ** 3 });
    expect(key).toMatch(/^[0-9a-f]{12}$/);
    expect(imageCacheKey({ mirrors, sizeBytes: 2 * 1024 ** 3 })).toBe(key);
    expect(imageCacheKey({ mirrors, sizeBytes: 1024 ** 3 })).not.toBe(key);
    expect(imageCacheKey({ mirrors: ['deb http://other/debian bookworm main'], sizeBytes: 2 * 1024 ** 3 })).not.toBe(key);
    expect(imageCacheKey({ mirrors, sizeBytes: 2 * 1024 ** 3, packages: [...EXTRA_PACKAGES, 'udev'] })).not.toBe(key);
    expect(imageFileName(key, 2 * 1024 ** 3)).toBe(`debian-bookworm-2048M-${key}.img`);
  });

  it('refuses an --out that exists or whose directory does not, in one line', async () => {
    const existing = join(work, 'there.img');
    writeFileSync(existing, 'x');
    await expect(checkOut(existing)).rejects.toThrow(new RegExp(`^${existing} already exists: remove it or give another --out$`));
    await expect(checkOut(join(work, 'no', 'such', 'x.img'))).rejects.toThrow(/directory .*no\/such does not exist$/);
    await expect(checkOut(join(work, 'new.img'))).resolves.toBeUndefined();
  });

  it('finds subordinate id ranges by name or uid', () => {
    const text = 'alice:100000:65536\n1001:165536:65536\nbob:231072:0\n';
    expect(hasSubordinateRange(text, 'alice', 1000)).toBe(true);
    expect(hasSubordinateRange(text, 'carol', 1001)).toBe(true);
    expect(hasSubordinateRange(text, 'bob', 1002)).toBe(false); // an empty range
    expect(hasSubordinateRange('', 'alice', 1000)).toBe(false);
  });

  it('uses --mode=root as root, and names the package to install when newuidmap is missing', async () => {
    expect(await chooseMode({ PATH: '' }, 0, 'root')).toBe('root');
    if (!existsSync('/usr/bin/newuidmap')) {
      await expect(chooseMode({ PATH: '' }, 1000, 'alice')).rejects.toThrow(/^newuidmap not found: install Debian's uidmap package/);
    }
  });
});

/**
 * What `typevisor image debian` builds, as data: the package set, the apt sources (taken from
 * the host's own), the files typevisor adds to the root tree, the one shell script that runs
 * under `fakeroot`, and the cache key. Nothing here touches the network or runs a program, so
 * all of it is unit-tested (config.test.ts); src/guest/image/build.ts runs the tools.
 *
 * The image boots with the default initramfs (src/guest/initramfs.ts): its /init mounts
 * /dev/vda and switch_roots to systemd when the disk holds IMAGE_MARKER and /sbin/init.
 */
import { createHash } from 'node:crypto';

export class ImageError extends Error {
  override name = 'ImageError';
  /** A bad command line (exit status 2) rather than a failed build (status 12). */
  readonly usage: boolean;

  constructor(message: string, options?: ErrorOptions & { usage?: boolean }) {
    super(message, options);
    this.usage = options?.usage ?? false;
  }
}

/** Debian 12. The package versions are whatever the mirror serves today; none is named here. */
export const SUITE = 'bookworm';
/** debootstrap's minbase: Essential and Priority required packages, plus apt. */
export const VARIANT = 'minbase';
/**
 * Added to minbase for a root shell on the serial console: systemd as /sbin/init (login,
 * passwd, apt, dpkg and bash are in minbase already; Recommends are not installed). No udev:
 * booting the same image side by side with and without it on the bt engine, udev's coldplug
 * made the way to the login prompt about 55% longer (440 s vs 284 s under load), and nothing
 * here needs it once serial-getty does not wait for dev-ttyS0.device (SERIAL_GETTY);
 * devtmpfs provides the device nodes. `apt install udev` in the guest adds it.
 */
export const EXTRA_PACKAGES: readonly string[] = ['systemd-sysv'];

/** The file the initramfs looks for on /dev/vda before it boots the disk's own init. */
export const IMAGE_MARKER = 'etc/typevisor-image';
export const HOSTNAME = 'typevisor';

export const DEFAULT_IMAGE_SIZE = 2 * 1024 ** 3;
/** minbase + systemd unpacks to about 330 MB; ext4 needs room around it. */
export const MIN_IMAGE_SIZE = 512 * 1024 ** 2;
export const MAX_IMAGE_SIZE = 2 * 1024 ** 4;

/** Bump when the build recipe changes in a way the hashed inputs below do not show. */
const RECIPE_VERSION = 2;

const UNITS: Record<string, number> = { '': 1024 ** 2, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const SIZE_FORMS = 'a size such as 2G or 1500M (a bare number means MiB)';

/** `--size`: like `--memory`, a decimal with an optional unit K, M, G, T; whole MiB. */
export function parseImageSize(text: string): number {
  if (text.trim() === '') throw new ImageError(`--size is empty: give ${SIZE_FORMS}`, { usage: true });
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new ImageError(`--size "${text}" is not a size: give ${SIZE_FORMS}`, { usage: true });
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (bytes < MIN_IMAGE_SIZE) throw new ImageError(`--size ${text} is too small for Debian: give at least 512M`, { usage: true });
  if (bytes > MAX_IMAGE_SIZE) throw new ImageError(`--size ${text} is too large: give at most 2T`, { usage: true });
  if (bytes % (1024 * 1024) !== 0) throw new ImageError(`--size ${text} is not a whole number of MiB`, { usage: true });
  return bytes;
}

// ---- apt sources ------------------------------------------------------------------------------

/** One `deb` entry of the host's apt configuration. */
export interface AptSource {
  uri: string;
  suite: string;
  components: string[];
}

/**
 * The `deb` entries of one apt sources file: one-line format (`sources.list`, `*.list`) or
 * deb822 (`*.sources`). `deb-src`, comments, disabled stanzas and `[options]` are skipped.
 */
export function parseAptSources(text: string, deb822: boolean): AptSource[] {
  const out: AptSource[] = [];
  if (!deb822) {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*$/, '').replace(/\[[^\]]*\]/g, ' ').trim();
      const [type, uri, suite, ...components] = line.split(/\s+/);
      if (type === 'deb' && uri && suite) out.push({ uri: uri.replace(/\/+$/, ''), suite, components });
    }
    return out;
  }
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let key: string | undefined;
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && key) {
        fields.set(key, `${fields.get(key)} ${raw.trim()}`);
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (!m) continue;
      key = m[1]!.toLowerCase();
      fields.set(key, m[2]!.trim());
    }
    if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) continue;
    if (/^(no|false)$/i.test(fields.get('enabled') ?? 'yes')) continue;
    const components = (fields.get('components') ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) {
      for (const suite of (fields.get('suites') ?? '').split(/\s+/).filter(Boolean)) {
        out.push({ uri: uri.replace(/\/+$/, ''), suite, components });
      }
    }
  }
  return out;
}

export const FALLBACK_MIRROR = 'http://deb.debian.org/debian';

/**
 * The archive lines mmdebstrap gets (and writes into the image's /etc/apt/sources.list):
 * `SUITE` and `SUITE-updates` from the host's Debian mirror, `SUITE-security` from its security
 * mirror. A host source counts as Debian's when its suite is one of Debian's release names or
 * its URI path is Debian's (`/debian`, `/debian-security`); `mirror` overrides the archive.
 */
export function mirrorLines(hostSources: readonly AptSource[], mirror?: string): string[] {
  const isSecurity = (s: AptSource) => /-security$/.test(s.suite) || /\/debian-security$/.test(s.uri);
  const looksDebian = (s: AptSource) => s.suite.startsWith(SUITE) || /\/debian(-security)?$/.test(s.uri);
  const debian = hostSources.filter(looksDebian);
  const archive = mirror?.replace(/\/+$/, '') ?? debian.find((s) => !isSecurity(s))?.uri ?? FALLBACK_MIRROR;
  const lines = [`deb ${archive} ${SUITE} main`, `deb ${archive} ${SUITE}-updates main`];
  const security = debian.find(isSecurity)?.uri;
  if (security) lines.push(`deb ${security} ${SUITE}-security main`);
  return lines;
}

// ---- the root tree ----------------------------------------------------------------------------

export interface ImageFile {
  /** Relative to the root of the image. */
  path: string;
  text: string;
  mode: number;
}

/**
 * Debian's serial-getty@.service (systemd 252) with two changes: agetty logs root in, and the
 * unit does not wait for udev's dev-%i.device (BindsTo/After): without udev that device unit
 * never appears, and with it, on the bt engine, udev's coldplug outlasted the device job's 90 s
 * timeout and the console got no getty. The console device exists from the start anyway. A whole unit in /etc replaces the vendor's: a
 * drop-in cannot remove dependencies.
 */
export const SERIAL_GETTY = `# typevisor: Debian's serial-getty@.service, logging root in, without waiting for udev
[Unit]
Description=Serial Getty on %I
Documentation=man:agetty(8) man:systemd-getty-generator(8)
After=systemd-user-sessions.service plymouth-quit-wait.service getty-pre.target
After=rc-local.service
Before=getty.target
IgnoreOnIsolate=yes
Conflicts=rescue.service
Before=rescue.service

[Service]
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
Type=idle
Restart=always
UtmpIdentifier=%I
StandardInput=tty
StandardOutput=tty
TTYPath=/dev/%I
TTYReset=yes
TTYVHangup=yes
IgnoreSIGPIPE=no
SendSIGHUP=yes

[Install]
WantedBy=getty.target
`;

/**
 * systemd-networkd configures the network card (`typevisor run --net ...`) by DHCP: eth0, as the
 * card is named without udev's predictable names (en* with them). On the user network the lease
 * gives 10.0.2.15, the gateway 10.0.2.2 and the DNS relay 10.0.2.3.
 */
export const NETWORK_UNIT = `# typevisor: DHCP on the virtio-net card
[Match]
Name=eth* en*

[Network]
DHCP=ipv4
`;

/**
 * The image has no udev, but /sys is writable, so systemd-networkd (252) takes udev for present
 * and leaves every link "pending" until udev has initialized it, which never happens. This unit
 * marks the links that exist initialized in udev's database before networkd starts (what udev
 * would have recorded), unless udev runs (`apt install udev` in the guest).
 */
export const NET_READY_UNIT = `# typevisor: mark network links initialized for systemd-networkd: the image has no udev
[Unit]
Description=Network links ready for systemd-networkd (no udev)
DefaultDependencies=no
Before=systemd-networkd.service
ConditionPathExists=!/run/udev/control

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /run/udev/data; for d in /sys/class/net/*; do n=$$(cat "$$d/ifindex"); [ -e /run/udev/data/n$$n ] || echo I:1 > /run/udev/data/n$$n; done'

[Install]
WantedBy=systemd-networkd.service
`;

/**
 * /etc/resolv.conf: the user network's DNS relay. Debian 12's networkd writes no resolv.conf
 * without systemd-resolved (one more service in every boot); on a tap or passt network, put the
 * network's resolver here instead.
 */
export const RESOLV_CONF = '# typevisor: the DNS relay of typevisor\'s user network (--net user)\nnameserver 10.0.2.3\n';

/**
 * Units enabled in the image (as `systemctl enable` would: a symlink in the target's .wants):
 * networkd and its netlink socket. Not systemd-networkd-wait-online, which would hold the boot
 * for two minutes when the VM has no network card.
 */
export const ENABLED_UNITS: readonly { unit: string; wantedBy: string; dir: string }[] = [
  { unit: 'systemd-networkd.service', wantedBy: 'multi-user.target', dir: '/lib/systemd/system' },
  { unit: 'systemd-networkd.socket', wantedBy: 'sockets.target', dir: '/lib/systemd/system' },
  { unit: 'typevisor-net-ready.service', wantedBy: 'systemd-networkd.service', dir: '/etc/systemd/system' },
];

/**
 * The files typevisor adds to the tree mmdebstrap made: name, /dev/vda as / (no fsck at boot:
 * the ext4 journal covers an unclean stop, and the check would lengthen every boot on the bt
 * engine), every serial console's getty logs root in without a password, and the network card
 * is configured by DHCP.
 */
export function imageFiles(packages: readonly string[] = EXTRA_PACKAGES): ImageFile[] {
  return [
    { path: 'etc/hostname', text: `${HOSTNAME}\n`, mode: 0o644 },
    { path: 'etc/hosts', text: `127.0.0.1\tlocalhost\n127.0.1.1\t${HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`, mode: 0o644 },
    { path: 'etc/fstab', text: '# typevisor: the virtio-blk disk given first to typevisor run --disk\n/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n', mode: 0o644 },
    // serial-getty@.service: ttyS0 (the default console) and hvc0 (--console virtio) alike
    { path: 'etc/systemd/system/serial-getty@.service', text: SERIAL_GETTY, mode: 0o644 },
    { path: 'etc/systemd/network/80-typevisor.network', text: NETWORK_UNIT, mode: 0o644 },
    { path: 'etc/systemd/system/typevisor-net-ready.service', text: NET_READY_UNIT, mode: 0o644 },
    { path: 'etc/resolv.conf', text: RESOLV_CONF, mode: 0o644 },
    {
      path: IMAGE_MARKER,
      text: `# typevisor: the default initramfs boots this disk's /sbin/init when /dev/vda holds this file\nsuite=${SUITE}\nvariant=${VARIANT}\npackages=${packages.join(',')}\n`,
      mode: 0o644,
    },
  ];
}

/**
 * Units masked in the image: gettys on virtual terminals nobody sees (typevisor has no display;
 * Debian's getty-static starts tty2-tty6 when there is no logind over D-Bus). Each is a process
 * the bt engine would start for nothing during the boot.
 */
export const MASKED_UNITS: readonly string[] = ['getty@tty1.service', 'getty-static.service'];

/** Single-quoted for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface ScriptPaths {
  /** mmdebstrap's tarball. */
  tarball: string;
  /** Directory holding imageFiles() under their paths (written by the caller, any owner). */
  files: string;
  /** Work directory for the extracted tree (must not exist). */
  root: string;
  /** The image to create. */
  image: string;
  mkfs: string;
  sizeBytes: number;
}

/**
 * The shell script run in ONE fakeroot session, so the ownership fakeroot records while
 * extracting is what mkfs.ext4 -d writes into the file system. Lines `phase: ...` on stderr
 * are progress. `install` (not cp -a) so the added files are root's, not the caller's.
 */
export function fakerootScript(p: ScriptPaths, files: readonly ImageFile[] = imageFiles()): string {
  const q = shQuote;
  const lines = [
    'set -eu',
    'echo "phase: unpacking the root tree" >&2',
    `mkdir ${q(p.root)}`,
    `tar -C ${q(p.root)} --numeric-owner -xpf ${q(p.tarball)}`,
    'echo "phase: configuring: hostname, /etc/fstab, root without a password, autologin on the serial console, DHCP" >&2',
    `mkdir -p ${q(`${p.root}/etc/systemd/system`)}`,
    ...files.map((f) => `install -D -o 0 -g 0 -m ${f.mode.toString(8)} ${q(`${p.files}/${f.path}`)} ${q(`${p.root}/${f.path}`)}`),
    ...MASKED_UNITS.map((u) => `ln -sf /dev/null ${q(`${p.root}/etc/systemd/system/${u}`)}`),
    ...ENABLED_UNITS.flatMap(({ unit, wantedBy, dir }) => [
      `mkdir -p ${q(`${p.root}/etc/systemd/system/${wantedBy}.wants`)}`,
      `ln -sf ${dir}/${unit} ${q(`${p.root}/etc/systemd/system/${wantedBy}.wants/${unit}`)}`,
    ]),
    // passwd -d root, without chroot (which needs real root)
    `sed -i 's/^root:[^:]*:/root::/' ${q(`${p.root}/etc/shadow`)}`,
    `echo "phase: writing the ext4 file system (${Math.round(p.sizeBytes / 1024 ** 2)} MiB, sparse)" >&2`,
    `truncate -s ${p.sizeBytes} ${q(p.image)}`,
    `${q(p.mkfs)} -q -F -L debian -d ${q(p.root)} ${q(p.image)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** What the cached image depends on: change any of it and the next build makes a new image. */
export function imageCacheKey(input: { mirrors: readonly string[]; sizeBytes: number; packages?: readonly string[] }): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({
    v: RECIPE_VERSION, suite: SUITE, variant: VARIANT, packages: input.packages ?? EXTRA_PACKAGES,
    mirrors: input.mirrors, size: input.sizeBytes, files: imageFiles(input.packages), masked: MASKED_UNITS, enabled: ENABLED_UNITS,
  }));
  return h.digest('hex').slice(0, 12);
}

/** The cached image's file name under `<cache>/images/`. */
export function imageFileName(key: string, sizeBytes: number): string {
  return `debian-${SUITE}-${Math.round(sizeBytes / 1024 ** 2)}M-${key}.img`;
}

/**
 * The default initramfs: Debian's static busybox, a few device nodes and an /init script that
 * mounts the kernel filesystems, prints `TYPEVISOR-INIT-OK`, and runs an interactive shell on
 * the serial console with a controlling tty (so Ctrl-C and job control work). When that shell
 * exits, the VM powers off.
 *
 * poweroff/reboot: busybox's `poweroff` without `-f` only signals PID 1 (it expects busybox
 * init), and Debian's busybox-static runs applets before searching PATH
 * (FEATURE_SH_STANDALONE), so a /sbin/poweroff script alone is not enough. The console shell
 * therefore sources /etc/shrc (via $ENV), which defines poweroff/reboot/halt as functions calling
 * the `-f` forms (the kernel then powers off through ACPI); /sbin wrappers cover programs that
 * exec them by path, and /init traps the signals as a last resort.
 *
 * Kernel modules: /init loads the ones listed in /etc/modules (MODULES, copied from the kernel
 * package's lib/modules/<version>/kernel/) with busybox `insmod`, in order — the package has no
 * modules.dep (depmod runs in its postinst), so the order is the dependency order.
 *
 * `buildInitramfs` is a pure function of the busybox binary and the modules; `prepareInitramfs`
 * caches its output under `<cache>/initramfs/`, keyed by the busybox version and a hash of every
 * generated file and module.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CpioError, CpioWriter } from './cpio.js';
import { GuestError } from './errors.js';
import { versionForPath } from './debian.js';
import { IMAGE_MARKER } from './image/config.js';

/** The line /init prints once the guest userspace is up; tests and the benchmark wait for it. */
export const INIT_MARKER = 'TYPEVISOR-INIT-OK';

/** Bump when the archive layout changes in a way the text hash below does not capture. */
const LAYOUT_VERSION = 1;

/** Device numbers (Documentation/admin-guide/devices.txt). */
const DEVICES: ReadonlyArray<{ path: string; major: number; minor: number; mode: number }> = [
  { path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
  { path: 'dev/tty', major: 5, minor: 0, mode: 0o666 },
  { path: 'dev/ttyS0', major: 4, minor: 64, mode: 0o660 },
  { path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
];

const DIRECTORIES = [
  'bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'etc', 'proc', 'sys', 'tmp', 'root', 'run', 'var', 'mnt',
  'lib', 'lib/modules', 'etc/udhcpc', 'etc/acpi', 'etc/acpi/PWRF',
];

/**
 * Kernel modules /init loads, relative to the kernel package's lib/modules/<version>/kernel/,
 * each after the modules whose symbols it uses (virtio before virtio_ring fails with "Unknown
 * symbol"). A new device driver is one line here.
 */
export const MODULES: readonly string[] = [
  'drivers/virtio/virtio_ring.ko',
  'drivers/virtio/virtio.ko',
  'drivers/virtio/virtio_pci_legacy_dev.ko',
  'drivers/virtio/virtio_pci_modern_dev.ko',
  'drivers/virtio/virtio_pci.ko',
  'drivers/char/virtio_console.ko',
  'drivers/block/virtio_blk.ko',
  'net/core/failover.ko',
  'drivers/net/net_failover.ko',
  'drivers/net/virtio_net.ko',
  'drivers/char/hw_random/virtio-rng.ko',
  // pvpanic (ACPI QEMU0001): a panic ends typevisor with its own status
  'drivers/misc/pvpanic/pvpanic.ko',
  'drivers/misc/pvpanic/pvpanic-mmio.ko',
  // the ACPI power button as an input device: acpid powers off on it (Vm.stop())
  'drivers/input/evdev.ko',
  'drivers/acpi/button.ko',
];

/** A kernel module for the archive: stored as lib/modules/<name>. */
export interface InitramfsModule {
  name: string;
  bytes: Uint8Array;
}

/**
 * Applets linked at build time, so the basics work even before /init runs
 * `busybox --install -s` (which adds the rest and leaves these alone).
 */
const BIN_APPLETS = [
  'sh', 'ash', 'cat', 'cp', 'date', 'dd', 'dmesg', 'echo', 'false', 'grep', 'hostname', 'kill', 'ln', 'ls',
  'mkdir', 'mknod', 'mount', 'mv', 'ps', 'pwd', 'rm', 'rmdir', 'sed', 'sleep', 'stty', 'sync', 'true',
  'umount', 'uname', 'setsid', 'cttyhack', 'sha256sum', 'md5sum', 'head', 'tail', 'wc', 'vi', 'free',
  'top', 'uptime', 'env', 'test', '[', 'printf', 'id', 'tr', 'cut', 'sort', 'time',
];

export const INIT_SCRIPT = `#!/bin/busybox sh
# typevisor default guest, PID 1: mount the kernel filesystems, announce ourselves on the
# console, run an interactive shell on the console as a new session with a controlling tty
# (job control, Ctrl-C), and power the VM off when that shell exits.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root TERM=linux ENV=/etc/shrc
umask 022
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev || echo "typevisor: cannot mount devtmpfs; using the static /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
# Kernel modules (the virtio drivers), in dependency order.
if [ -f /etc/modules ]; then
  while read -r m; do insmod "/lib/modules/$m" || echo "typevisor: cannot load kernel module $m"; done < /etc/modules
fi
# With console=hvc0 (typevisor run --console virtio) the console appears only now, with the
# virtio_console module: PID 1 started without one, so open it again.
if ! [ -t 1 ] && [ -c /dev/hvc0 ]; then exec </dev/console >/dev/console 2>&1; fi
# Debian from a disk: run the init of root=DEV (kernel command line), or of /dev/vda when it is
# an image \`typevisor image debian\` made (/${IMAGE_MARKER}); other disks stay data disks.
# The probe mounts read-only and stays mounted for the boot. typevisor.shell: no boot.
root= shell= mounted=
for a in $(cat /proc/cmdline); do case "$a" in root=*) root="\${a#root=}";; typevisor.shell) shell=1;; esac; done
mkdir -p /newroot
if [ -z "$shell" ] && [ -z "$root" ] && [ -b /dev/vda ] && mount -t ext4 -o ro /dev/vda /newroot 2>/dev/null; then
  if [ -f /newroot/${IMAGE_MARKER} ]; then root=/dev/vda mounted=1; else umount /newroot; fi
fi
if [ -z "$shell" ] && [ -n "$root" ]; then
  if { [ -n "$mounted" ] || mount -o ro "$root" /newroot; } && { [ -L /newroot/sbin/init ] || [ -x /newroot/sbin/init ]; }; then
    echo "typevisor: booting $root (its /sbin/init; kernel $(uname -r))"
    for d in dev proc sys; do mount -o move /$d /newroot/$d; done
    exec switch_root /newroot /sbin/init
  fi
  echo "typevisor: cannot boot $root (no file system with /sbin/init on it); here is the initramfs shell"
  umount /newroot 2>/dev/null
fi
hostname typevisor
# The ACPI power button (the host's graceful stop): busybox acpid runs /etc/acpi/PWRF/00000080
# (its log goes nowhere: without -l it dies for want of /var/log).
acpid -f -c /etc/acpi -l /dev/null </dev/null >/dev/null 2>&1 &
# busybox halt/poweroff/reboot without -f signal PID 1 (USR1/USR2/TERM); honour them once the
# console shell is gone (a foreground child defers traps). halt powers off: a halted VM just sits.
trap '/bin/busybox poweroff -f' USR1 USR2
trap '/bin/busybox reboot -f' TERM
echo "typevisor: init started (kernel $(uname -r))"
echo ${INIT_MARKER}
cd /root
# setsid: a new session without a controlling tty; cttyhack then opens the real console device
# (e.g. /dev/ttyS0) so that it becomes the shell's controlling tty.
setsid cttyhack sh
echo "typevisor: shell exited; powering off"
/bin/busybox poweroff -f
`;

export const SHRC = `# typevisor: read by every interactive sh (ENV=/etc/shrc).
PS1='typevisor:\\w\\$ '
# busybox runs its applets before searching PATH, and its poweroff/reboot/halt without -f only
# signal PID 1, which is a shell script here: call the -f forms, which ask the kernel directly.
poweroff() { /bin/busybox poweroff -f "$@"; }
reboot() { /bin/busybox reboot -f "$@"; }
# A halted VM would just sit there: halt powers off too.
halt() { /bin/busybox poweroff -f "$@"; }
`;

const wrapper = (applet: string): string => `#!/bin/busybox sh
# typevisor: there is no init daemon to signal; ask the kernel directly.
exec /bin/busybox ${applet} -f "$@"
`;

/** acpid runs this on the ACPI power button (the host asked the VM to shut down). */
export const POWER_BUTTON_SCRIPT = `#!/bin/busybox sh
echo "typevisor: power button pressed; powering off" > /dev/console
sync
exec /bin/busybox poweroff -f
`;

/** busybox udhcpc's hook: `udhcpc -i eth0` configures the interface from the DHCP lease. */
export const UDHCPC_SCRIPT = `#!/bin/busybox sh
# typevisor default guest: udhcpc calls this with deconfig / bound / renew and the lease in
# its environment (interface, ip, mask, router, dns).
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "\${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    ;;
esac
exit 0
`;

/** Generated text files: path, content, mode. Everything except the busybox binary. */
export function textFiles(): Array<{ path: string; text: string; mode: number }> {
  return [
    { path: 'init', text: INIT_SCRIPT, mode: 0o755 },
    { path: 'etc/shrc', text: SHRC, mode: 0o644 },
    { path: 'etc/udhcpc/default.script', text: UDHCPC_SCRIPT, mode: 0o755 },
    { path: 'etc/passwd', text: 'root:x:0:0:root:/root:/bin/sh\n', mode: 0o644 },
    { path: 'etc/group', text: 'root:x:0:\n', mode: 0o644 },
    { path: 'etc/hostname', text: 'typevisor\n', mode: 0o644 },
    { path: 'sbin/poweroff', text: wrapper('poweroff'), mode: 0o755 },
    { path: 'sbin/reboot', text: wrapper('reboot'), mode: 0o755 },
    { path: 'sbin/halt', text: wrapper('poweroff'), mode: 0o755 }, // a halted VM would just sit there
    { path: 'etc/acpi/PWRF/00000080', text: POWER_BUTTON_SCRIPT, mode: 0o755 },
  ];
}

export interface InitramfsOptions {
  /** gzip the archive (the kernel has gzip built in). Default true. */
  compress?: boolean;
  /** mtime for every entry, seconds. Default 0, which makes the output reproducible. */
  mtime?: number;
  /** Kernel modules /init loads, in this order (listed in /etc/modules). */
  modules?: readonly InitramfsModule[];
}

/** Builds the initramfs around a static busybox binary. */
export function buildInitramfs(busybox: Uint8Array, options: InitramfsOptions = {}): Uint8Array {
  if (busybox.length < 4 || busybox[0] !== 0x7f || busybox[1] !== 0x45 || busybox[2] !== 0x4c || busybox[3] !== 0x46) {
    throw new GuestError('Cannot build the initramfs: the busybox binary is not an ELF file; delete the typevisor cache and retry');
  }
  const enc = new TextEncoder();
  const w = new CpioWriter({ mtime: options.mtime ?? 0 });
  try {
    for (const d of DIRECTORIES) w.addDirectory(d, { mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 });
    for (const dev of DEVICES) w.addCharDevice(dev.path, dev.major, dev.minor, { mode: dev.mode });
    w.addFile('bin/busybox', busybox, { mode: 0o755 });
    for (const f of textFiles()) w.addFile(f.path, enc.encode(f.text), { mode: f.mode });
    const modules = options.modules ?? [];
    for (const m of modules) w.addFile(`lib/modules/${m.name}`, m.bytes, { mode: 0o644 });
    if (modules.length > 0) w.addFile('etc/modules', enc.encode(modules.map((m) => `${m.name}\n`).join('')), { mode: 0o644 });
    for (const a of BIN_APPLETS) w.addSymlink(`bin/${a}`, '/bin/busybox');
  } catch (e) {
    if (e instanceof CpioError) throw new GuestError(`Cannot build the initramfs: ${e.message}`, { cause: e });
    throw e;
  }
  const cpio = w.finish();
  return options.compress === false ? cpio : new Uint8Array(gzipSync(cpio, { level: 9 }));
}

/** Hash of everything the archive contains apart from busybox: changes whenever /init etc. do. */
export function initramfsContentHash(options: InitramfsOptions = {}): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({
    v: LAYOUT_VERSION, files: textFiles(), dirs: DIRECTORIES, devs: DEVICES, applets: BIN_APPLETS,
    gz: options.compress !== false, mtime: options.mtime ?? 0,
    modules: (options.modules ?? []).map((m) => [m.name, createHash('sha256').update(m.bytes).digest('hex')]),
  }));
  return h.digest('hex').slice(0, 16);
}

export interface PrepareInitramfsOptions extends InitramfsOptions {
  cacheDir: string;
  /** Path of the busybox binary (bin/busybox of the extracted busybox-static). */
  busyboxPath: string;
  /** Package version of that busybox, part of the cache key. */
  busyboxVersion: string;
  /** The kernel package's lib/modules/<version>/kernel directory: MODULES are taken from it. */
  kernelModulesDir?: string;
}

/**
 * MODULES read from a kernel package (small files; read each time, so the cache key covers
 * their bytes). A module the package does not have is left out: that kernel has the driver
 * built in, or not at all.
 */
export async function readModules(kernelModulesDir: string, paths: readonly string[] = MODULES): Promise<InitramfsModule[]> {
  const out: InitramfsModule[] = [];
  for (const p of paths) {
    const file = join(kernelModulesDir, p);
    try {
      out.push({ name: basename(p), bytes: await readFile(file) });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new GuestError(`Cannot read kernel module ${file}: ${(e as Error).message}; delete the typevisor cache and retry`, { cause: e });
    }
  }
  return out;
}

/** The cached initramfs for this busybox and this /init, built (atomically) if missing. */
export async function prepareInitramfs(prepare: PrepareInitramfsOptions): Promise<string> {
  const options = prepare.kernelModulesDir === undefined ? prepare : { ...prepare, modules: await readModules(prepare.kernelModulesDir) };
  const dir = join(options.cacheDir, 'initramfs');
  const ext = options.compress === false ? 'cpio' : 'cpio.gz';
  const file = join(dir, `initramfs-busybox_${versionForPath(options.busyboxVersion)}-${initramfsContentHash(options)}.${ext}`);
  try {
    if ((await stat(file)).isFile()) return file;
  } catch {
    // not built yet
  }
  let busybox: Uint8Array;
  try {
    busybox = await readFile(options.busyboxPath);
  } catch (e) {
    throw new GuestError(`Cannot read busybox at ${options.busyboxPath}: ${(e as Error).message}; delete the typevisor cache and retry`, { cause: e });
  }
  const image = buildInitramfs(busybox, options);
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, image);
  await rename(tmp, file);
  return file;
}

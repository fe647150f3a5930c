/**
 * The VM configuration: one validated shape produced by the CLI (and later the HTTP API and
 * the SDK), consumed by the VM builder. Validation errors say what to change.
 */
import { GiB, MiB } from '../machine/layout.js';
import { isIP } from 'node:net';

export type EngineChoice = 'auto' | 'bt' | 'kvm';
export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'bt', 'kvm'];
/** The CPU the guest sees: the host's (kvm engine) or typevisor's own model (both engines). */
export type CpuModelChoice = 'host' | 'typevisor';
export const CPU_MODELS: readonly CpuModelChoice[] = ['host', 'typevisor'];

export interface VmConfig {
  /** Kernel image path; absent = the default Debian guest. */
  kernel?: string;
  initrd?: string;
  /** Kernel command line; absent = the default for the chosen guest. */
  cmdline?: string;
  memoryBytes: number;
  cpus: number;
  engine: EngineChoice;
  /**
   * The CPU model: `typevisor` (the bt engine's, and the only one it has) or `host` (the kvm
   * engine's default: every feature the host's KVM offers). A kvm VM started with `typevisor`
   * takes snapshots the bt engine can restore.
   */
  cpuModel?: CpuModelChoice;
  /** Boot the ELF vmlinux extracted from the bzImage instead of the bzImage itself. */
  vmlinux?: boolean;
  /** A guest reset restarts the VM (true, the default, as QEMU) or ends typevisor (false: --no-reboot). */
  reboot?: boolean;
  /** virtio-blk disks, in order: /dev/vda, /dev/vdb, ... (bt engine). */
  disks?: DiskConfig[];
  /** Where the guest's console is: the 16550A UART (ttyS0, default) or a virtio console (hvc0, bt engine). */
  console?: ConsoleChoice;
  /** The network card (both engines); absent or none: no NIC. */
  net?: NetConfig;
}

/**
 * `--net`: no NIC; a virtio-net card on typevisor's own user-mode network (10.0.2.0/24, with
 * `--publish`ed ports); one whose frames go over a Unix socket (QEMU stream framing); or one
 * on a tap device root has made. `mac` is the card's address ("52:54:00:12:34:56", lower case);
 * absent, Vm.create picks one (DEFAULT_USER_MAC for the user network, a random 52:54:00:xx:xx:xx
 * for stream and tap) and records it in the VM's config, so snapshots and resets keep it.
 */
export type NetConfig =
  | { mode: 'none' }
  | { mode: 'stream'; path: string; mac?: string }
  | { mode: 'tap'; name: string; mac?: string }
  | { mode: 'user'; publish: PublishConfig[]; mac?: string };

/**
 * The MAC of a `--net user` card without mac=: QEMU's, which users know. The user network is
 * private to the VM (nothing else is on its Ethernet), so every VM can have the same one.
 */
export const DEFAULT_USER_MAC = '52:54:00:12:34:56';

const MAC_EXAMPLE = 'mac=52:54:00:12:34:56';
const NET_FORMS = 'give --net user (typevisor\'s own NAT network; a bare --net means it), --net stream=UNIX_SOCKET_PATH (e.g. a passt socket), --net tap=NAME (a tap device root made) or --net none, each but none optionally followed by ,mac=XX:XX:XX:XX:XX:XX';

/**
 * Check a MAC address for a NIC: six hex pairs separated by colons, unicast (bit 0 of the first
 * octet clear), not all zeros. Returns it in lower case; `what` starts the error message.
 */
export function parseMac(text: string, what = 'the MAC address'): string {
  if (!/^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$/.test(text)) {
    throw new ConfigError(`${what}: "${text}" is not a MAC address: give six hex pairs separated by colons, e.g. ${MAC_EXAMPLE}`);
  }
  const mac = text.toLowerCase();
  if (parseInt(mac.slice(0, 2), 16) & 1) {
    throw new ConfigError(`${what}: ${mac} is a multicast address (bit 0 of the first octet is set), which no card may have: make the first octet even, e.g. ${MAC_EXAMPLE}`);
  }
  if (mac === '00:00:00:00:00:00') throw new ConfigError(`${what}: 00:00:00:00:00:00 is not a usable address: give another, e.g. ${MAC_EXAMPLE}`);
  return mac;
}

/** A MAC address ("52:54:00:12:34:56") as its 6 bytes; `mac` must have passed parseMac. */
export function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':'), (h) => parseInt(h, 16));
}

/**
 * A new address for a card, libvirt's way: QEMU's prefix 52:54:00 (locally administered,
 * unicast) and three random bytes from `fill` (crypto.randomFillSync in the VMM).
 */
export function randomMac(fill: (bytes: Uint8Array) => void): string {
  const b = new Uint8Array(6);
  fill(b.subarray(3));
  b.set([0x52, 0x54, 0x00]);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Parse `--net user`, `--net none`, `--net stream=PATH` or `--net tap=NAME`, each but none with
 * an optional `,mac=XX:XX:XX:XX:XX:XX` at the end (a stream path may itself hold commas).
 */
export function parseNet(text: string): NetConfig {
  let spec = text;
  let mac: string | undefined;
  const o = /^(.*),mac=([^,]*)$/.exec(text);
  if (o) {
    spec = o[1]!;
    mac = parseMac(o[2]!, `--net "${text}"`);
  }
  const withMac = mac === undefined ? {} : { mac };
  if (spec === 'none') {
    if (mac !== undefined) throw new ConfigError(`--net "${text}": none gives no card to put a MAC address on: drop ,mac=... or choose a network`);
    return { mode: 'none' };
  }
  if (spec === 'user') return { mode: 'user', publish: [], ...withMac };
  const m = /^stream=(.+)$/.exec(spec);
  if (m) return { mode: 'stream', path: m[1]!, ...withMac };
  const t = /^tap=(.+)$/.exec(spec);
  const comma = (t ? t[1]! : spec).indexOf(',');
  if ((t || spec.startsWith('user,')) && comma >= 0) {
    const option = (t ? t[1]! : spec).slice(comma + 1);
    throw new ConfigError(`--net "${text}": the option "${option}" is not known: the one option is ,${MAC_EXAMPLE}`);
  }
  if (t) {
    if (!/^[^/:\s]{1,15}$/.test(t[1]!) || t[1] === '.' || t[1] === '..') throw new ConfigError(`--net "${text}": "${t[1]}" is not a network interface name (1 to 15 characters, no '/', ':', ',' or spaces)`);
    return { mode: 'tap', name: t[1]!, ...withMac };
  }
  throw new ConfigError(`--net "${text}" is not understood: ${NET_FORMS}`);
}

/** One `--publish [ADDR:]HOSTPORT:GUESTPORT[/udp]`: a host port whose connections reach the guest's port. */
export interface PublishConfig {
  protocol: 'tcp' | 'udp';
  /** The host address to listen on (default 127.0.0.1: only this machine can connect). */
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

const PUBLISH_FORMS = 'give [ADDR:]HOSTPORT:GUESTPORT[/udp], e.g. --publish 8080:80, --publish 0.0.0.0:8080:80 or --publish 5353:53/udp';

/** Parse `--publish [ADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]`; ADDR is IPv4, or IPv6 in brackets. */
export function parsePublish(text: string): PublishConfig {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|localhost):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(text);
  if (!m) throw new ConfigError(`--publish "${text}" is not understood: ${PUBLISH_FORMS}`);
  let hostAddress = m[1] ?? '127.0.0.1';
  if (hostAddress === 'localhost') hostAddress = '127.0.0.1';
  if (hostAddress.startsWith('[')) hostAddress = hostAddress.slice(1, -1);
  if (isIP(hostAddress) === 0) throw new ConfigError(`--publish "${text}": ${hostAddress} is not an IP address: ${PUBLISH_FORMS}`);
  const port = (s: string, which: string): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError(`--publish "${text}": the ${which} port ${s} is not 1 to 65535: ${PUBLISH_FORMS}`);
    return n;
  };
  return { protocol: m[4] === 'udp' ? 'udp' : 'tcp', hostAddress, hostPort: port(m[2]!, 'host'), guestPort: port(m[3]!, 'guest') };
}

/**
 * The network from `--net` and `--publish`: publishing asks for a network, and the user network
 * is the kind a bare request gets; only the user network can publish ports.
 */
export function resolveNet(net: NetConfig | undefined, publish: PublishConfig[]): NetConfig | undefined {
  if (publish.length === 0) return net;
  if (net !== undefined && net.mode !== 'user') {
    throw new ConfigError(`--publish needs typevisor's user network, not --net ${net.mode === 'stream' ? `stream=${net.path}` : net.mode === 'tap' ? `tap=${net.name}` : 'none'}: drop that --net (or give --net user); with passt, publish with passt's own -t/-u options; a tap's guest is reached at its own address`);
  }
  const seen = new Set<string>();
  for (const p of publish) {
    const key = `${p.protocol} ${p.hostAddress} ${p.hostPort}`;
    if (seen.has(key)) throw new ConfigError(`--publish gives ${p.protocol} port ${p.hostPort} on ${p.hostAddress} twice: publish each host port once`);
    seen.add(key);
  }
  return { mode: 'user', publish, ...(net?.mac === undefined ? {} : { mac: net.mac }) };
}

export type ConsoleChoice = 'serial' | 'virtio';
export const CONSOLE_CHOICES: readonly ConsoleChoice[] = ['serial', 'virtio'];

export function validateConsole(name: string): ConsoleChoice {
  if ((CONSOLE_CHOICES as readonly string[]).includes(name)) return name as ConsoleChoice;
  throw new ConfigError(`unknown console "${name}": choose serial (ttyS0) or virtio (hvc0)`);
}

/** One `--disk PATH[,ro][,snapshot][,serial=ID]`. */
export interface DiskConfig {
  /** A raw disk image. */
  path: string;
  /** The guest sees a read-only disk (VIRTIO_BLK_F_RO). */
  readOnly: boolean;
  /** Guest writes go to an overlay dropped at exit; the image is not modified. */
  snapshot: boolean;
  /** Serial number the guest reads (GET_ID; /sys/block/vdX/serial): 1 to 20 of A-Z a-z 0-9 . _ - */
  serial?: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const DEFAULT_MEMORY = 512 * MiB;
/** Largest guest we support today (the software engine keeps RAM in ArrayBuffers). */
export const MAX_MEMORY = 64 * GiB;

const UNITS: Record<string, number> = { '': MiB, k: 1024, m: MiB, g: GiB, t: 1024 * GiB };

const SIZE_FORMS = 'a decimal number with an optional unit K, M, G or T (512M, 2G, 1.5G; a bare number means MiB)';

/**
 * Parse a memory size: "512M", "2G", "1.5g", "256MiB", "2048" (a bare number means MiB).
 * Decimal digits only: no sign, exponent, hex or empty string.
 */
export function parseSize(text: string): number {
  if (text.trim() === '') throw new ConfigError(`--memory is empty: give ${SIZE_FORMS}`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new ConfigError(`--memory "${text}" is not a memory size: give ${SIZE_FORMS}`);
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) throw new ConfigError(`--memory "${text}" is far too large: give at most ${fmtBytes(MAX_MEMORY)}`);
  return bytes;
}

export function validateMemory(bytes: number, hostBytes: number): void {
  if (!(bytes > 0)) throw new ConfigError('guest memory must be more than 0: use --memory 512M, for example');
  if (bytes < 16 * MiB) throw new ConfigError(`guest memory ${fmtBytes(bytes)} is too small for a kernel: give at least 16M`);
  if (bytes % 4096 !== 0) throw new ConfigError(`guest memory ${bytes} bytes is not a whole number of 4 KiB pages`);
  const limit = Math.min(MAX_MEMORY, hostBytes);
  if (bytes > limit) {
    throw new ConfigError(
      `guest memory ${fmtBytes(bytes)} is more than this host can give (${fmtBytes(limit)}): use a smaller --memory`,
    );
  }
}

export function validateCpuModel(name: string): CpuModelChoice {
  if ((CPU_MODELS as readonly string[]).includes(name)) return name as CpuModelChoice;
  throw new ConfigError(`unknown CPU model "${name}": choose host (the kvm engine's default: the host CPU's features) or typevisor (typevisor's own model, which snapshots can move between the engines with)`);
}

export function validateEngine(name: string): EngineChoice {
  if ((ENGINE_CHOICES as readonly string[]).includes(name)) return name as EngineChoice;
  throw new ConfigError(`unknown engine "${name}": choose one of ${ENGINE_CHOICES.join(', ')}`);
}

export const MAX_CPUS = 64;

export function validateCpus(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_CPUS) throw new ConfigError(`--cpus ${n} is out of range: use 1 to ${MAX_CPUS}`);
  return n;
}

/** Parse a vCPU count strictly: decimal digits only (no sign, hex, exponent, fraction or empty string). */
export function parseCpus(text: string): number {
  if (!/^\d+$/.test(text.trim())) {
    const shown = text.trim() === '' ? 'is empty' : `"${text}" is not a decimal whole number`;
    throw new ConfigError(`--cpus ${shown}: give a count from 1 to ${MAX_CPUS}`);
  }
  return validateCpus(Number(text.trim()));
}

export function fmtBytes(n: number): string {
  if (n >= GiB && n % GiB === 0) return `${n / GiB}G`;
  if (n >= MiB) return `${+(n / MiB).toFixed(1)}M`;
  return `${n}B`;
}

/** Most `--disk` options (vda..vdp); each takes a PCI slot. */
export const MAX_DISKS = 16;
const DISK_FORMS = 'give --disk PATH[,ro][,snapshot][,serial=ID]';

/** Parse one `--disk` value: a path, then options separated by commas. */
export function parseDiskSpec(text: string): DiskConfig {
  const [file, ...options] = text.split(',');
  if (file === undefined || file.trim() === '') throw new ConfigError(`--disk "${text}" has no image path: ${DISK_FORMS}`);
  const disk: DiskConfig = { path: file, readOnly: false, snapshot: false };
  for (const o of options) {
    if (o === 'ro') disk.readOnly = true;
    else if (o === 'snapshot') disk.snapshot = true;
    else if (o.startsWith('serial=')) {
      const serial = o.slice('serial='.length);
      if (!/^[A-Za-z0-9._-]{1,20}$/.test(serial)) {
        throw new ConfigError(`--disk serial "${serial}" is not 1 to 20 of the characters A-Z a-z 0-9 . _ -`);
      }
      disk.serial = serial;
    } else {
      throw new ConfigError(`--disk option "${o}" is not known: ${DISK_FORMS}`);
    }
  }
  return disk;
}

export function validateDisks(disks: readonly DiskConfig[]): DiskConfig[] {
  if (disks.length > MAX_DISKS) throw new ConfigError(`--disk is given ${disks.length} times: at most ${MAX_DISKS} disks`);
  return [...disks];
}

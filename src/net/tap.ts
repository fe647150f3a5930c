/**
 * `--net tap=NAME`: the guest's Ethernet frames through a tap device root has made, e.g.
 * `sudo ip tuntap add NAME mode tap user $USER` (Linux, /dev/net/tun, TUNSETIFF with
 * IFF_TAP | IFF_NO_PI: one read or write is one whole frame, no header).
 *
 * The tap must exist already: as root, TUNSETIFF on an unknown name would quietly create a
 * throw-away device, so the name is checked in /sys/class/net first. Every problem opening it
 * (no such device, not a tap, no permission, in use) is one NetError naming the fix.
 *
 * Node cannot watch a character device's fd (libuv treats it as a file, so net.Socket refuses
 * it, and fs streams block a pool thread in read(2) that close() cannot wake). So the fd is
 * non-blocking and one `poll(2)` at a time waits for it on the libuv pool (koffi's async call,
 * with a timeout so close() never waits long); when it reports data, the main thread reads
 * frames with plain non-blocking read(2) until EAGAIN. A frame the guest has no buffers for
 * stays here (one) and polling stops until the NIC fires onRxSpace: a slow guest leaves frames
 * in the kernel's tap queue (which drops at its txqueuelen, as a real NIC does), never here.
 * Frames from the guest are written with one non-blocking write(2) each; a full queue
 * (EAGAIN, rare: the kernel routes them at once) drops the frame, as a NIC's wire would.
 */
import { existsSync, readFileSync } from 'node:fs';
import koffi from 'koffi';
import { NetError, type NetDevice } from './stream.js';

// linux/if_tun.h, asm-generic/fcntl.h, asm-generic/errno-base.h, poll.h (x86-64)
const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int)
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFNAMSIZ = 16;
/** struct ifreq: ifr_name[16], then a 24-byte union whose first member here is short ifr_flags. */
const IFREQ_SIZE = 40;
const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const POLLIN = 0x1;
export const EPERM = 1;
export const ENOENT = 2;
const EINTR = 4;
export const EACCES = 13;
export const EBUSY = 16;
export const ENODEV = 19;
export const EINVAL = 22;
const EAGAIN = 11;
/** How long one poll waits before looking again (so close() is never held up longer). */
const POLL_MS = 200;

interface Libc {
  open: (path: string, flags: number) => number;
  close: (fd: number) => number;
  ioctl: (fd: number, request: number, arg: Uint8Array) => number;
  read: (fd: number, buf: Uint8Array, n: number) => number;
  write: (fd: number, buf: Uint8Array, n: number) => number;
  poll: { async: (fds: Uint8Array, n: number, ms: number, cb: (err: unknown, r: number) => void) => void };
}

let libc: Libc | undefined;
function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    open: lib.func('int open(const char *path, int flags)') as Libc['open'],
    close: lib.func('int close(int fd)') as Libc['close'],
    ioctl: lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']) as Libc['ioctl'],
    read: lib.func('long read(int fd, void *buf, size_t n)') as Libc['read'],
    write: lib.func('long write(int fd, const void *buf, size_t n)') as Libc['write'],
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)') as unknown as Libc['poll'],
  };
  return libc;
}

const FIX = (name: string): string => `sudo ip tuntap add ${name} mode tap user $USER && sudo ip link set ${name} up`;

/**
 * The one-line message for a tap that cannot be used: `step` is what failed ('open' of
 * /dev/net/tun or the 'attach' of TUNSETIFF), `errno` why.
 */
export function tapErrorMessage(name: string, step: 'missing' | 'not-tap' | 'open' | 'attach', errno = 0): string {
  const head = `cannot use tap device ${name}`;
  if (step === 'missing') return `${head}: there is no network interface ${name}: create it first, e.g. ${FIX(name)}`;
  if (step === 'not-tap') return `${head}: ${name} is not a tap device (a tun device, or another kind of interface): make one with ${FIX(name)}`;
  if (step === 'open') {
    if (errno === ENOENT || errno === ENODEV) return `${head}: this host has no /dev/net/tun: load the tun module (sudo modprobe tun)`;
    if (errno === EACCES || errno === EPERM) return `${head}: no permission to open /dev/net/tun: make it usable (sudo chmod 0666 /dev/net/tun, as distributions ship it) or run as root`;
    return `${head}: opening /dev/net/tun failed (errno ${errno})`;
  }
  if (errno === EPERM || errno === EACCES) return `${head}: no permission to attach to ${name} (it belongs to another user): give it to this user with sudo ip tuntap del ${name} mode tap && ${FIX(name)}`;
  if (errno === EBUSY) return `${head}: ${name} is in use by another process (a VM already attached to it?): stop that process or use another tap`;
  if (errno === EINVAL) return `${head}: ${name} does not match the flags asked for (a tun device, or one made with multi_queue or vnet_hdr): make one with ${FIX(name)}`;
  return `${head}: TUNSETIFF failed (errno ${errno})`;
}

/** A valid Linux interface name: 1 to 15 bytes, no '/', ':' or white space, not '.' or '..'. */
export function validTapName(name: string): boolean {
  return /^[^/:\s]{1,15}$/.test(name) && name !== '.' && name !== '..' && Buffer.byteLength(name) < IFNAMSIZ;
}

export class TapNetBackend {
  private fd = -1;
  private device: NetDevice | undefined;
  /** A frame the guest could not take yet. */
  private pending: Uint8Array | undefined;
  private polling = false;
  private readonly pollFd = new Uint8Array(8); // struct pollfd {int fd; short events; short revents}
  private readonly rxBuf: Uint8Array;
  /** Frames each way, and frames from the guest dropped because the tap's queue was full. */
  framesIn = 0;
  framesOut = 0;
  dropped = 0;

  constructor(
    readonly name: string,
    private readonly maxFrame: number,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.rxBuf = new Uint8Array(maxFrame);
  }

  /** Open the tap (it must exist); a problem is one NetError with the fix. */
  connect(): Promise<void> {
    const name = this.name;
    if (!validTapName(name)) return Promise.reject(new NetError(`--net tap=${name}: "${name}" is not a network interface name (1 to 15 characters, no '/', ':' or spaces)`));
    const sys = `/sys/class/net/${name}`;
    if (!existsSync(sys)) return Promise.reject(new NetError(tapErrorMessage(name, 'missing')));
    let flags = Number.NaN;
    try {
      flags = parseInt(readFileSync(`${sys}/tun_flags`, 'utf8'), 16);
    } catch {
      // no tun_flags: not a tun/tap device at all
    }
    if (!(flags & IFF_TAP)) return Promise.reject(new NetError(tapErrorMessage(name, 'not-tap')));
    const c = loadLibc();
    const fd = c.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return Promise.reject(new NetError(tapErrorMessage(name, 'open', koffi.errno())));
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(Buffer.from(name), 0);
    new DataView(ifr.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI, true);
    if (c.ioctl(fd, TUNSETIFF, ifr) < 0) {
      const e = koffi.errno();
      c.close(fd);
      return Promise.reject(new NetError(tapErrorMessage(name, 'attach', e)));
    }
    this.fd = fd;
    new DataView(this.pollFd.buffer).setInt32(0, fd, true);
    new DataView(this.pollFd.buffer).setInt16(4, POLLIN, true);
    return Promise.resolve();
  }

  /** The NIC frames go to (again after a guest reset builds a new machine). */
  attach(device: NetDevice): void {
    this.device = device;
    this.pending = undefined;
    device.onRxSpace(() => this.drain());
    this.drain();
  }

  /** A frame the guest sent (borrowed: written before this returns). */
  transmit(frame: Uint8Array): void {
    if (this.fd < 0 || frame.length === 0) return;
    const n = loadLibc().write(this.fd, frame, frame.length);
    if (n === frame.length) this.framesOut++;
    else this.dropped++;
  }

  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    // A poll in flight keeps its own reference to the tap until it times out (POLL_MS), then
    // the device is free; one not yet started sees fd -1, which poll(2) ignores.
    new DataView(this.pollFd.buffer).setInt32(0, -1, true);
    loadLibc().close(fd);
  }

  /** Hand the guest frames until it has no room or the tap is empty; then wait for either. */
  private drain(): void {
    const dev = this.device;
    if (!dev || this.fd < 0) return;
    if (this.pending) {
      if (!dev.receive(this.pending)) return;
      this.pending = undefined;
      this.framesIn++;
    }
    const c = loadLibc();
    for (;;) {
      const n = c.read(this.fd, this.rxBuf, this.rxBuf.length);
      if (n < 0) {
        const e = koffi.errno();
        if (e === EINTR) continue;
        if (e !== EAGAIN) {
          this.log(`typevisor: tap ${this.name}: read failed (errno ${e}): the network is down`);
          return;
        }
        break;
      }
      if (n === 0) continue;
      // borrowed by receive() only while it runs: it copies into guest memory or we keep a copy
      const frame = this.rxBuf.subarray(0, n);
      if (!dev.receive(frame)) {
        this.pending = frame.slice();
        return; // onRxSpace calls drain again
      }
      this.framesIn++;
    }
    this.wait();
  }

  /** One poll for "readable" on the libuv pool; drain when it says so. */
  private wait(): void {
    if (this.polling || this.fd < 0) return;
    this.polling = true;
    loadLibc().poll.async(this.pollFd, 1, POLL_MS, (_err, r) => {
      this.polling = false;
      if (this.fd < 0) return;
      if (r > 0) this.drain();
      else this.wait();
    });
  }
}

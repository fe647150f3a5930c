/**
 * `--net stream=PATH`: the guest's Ethernet frames over a Unix stream socket with QEMU's
 * `-netdev stream` framing — a 4-byte big-endian length, then the frame — so passt (Debian's
 * `passt` package), gvproxy or a user's own switch can serve the guest's network.
 *
 * Back-pressure both ways: a frame from the socket that the guest has no buffers for stays here
 * (one at a time) and the socket is paused until the driver posts buffers; frames from the guest
 * are written with Node's stream buffering. A frame of length 0 or over MAX_FRAME ends the
 * connection (the peer does not speak the protocol).
 */
import net from 'node:net';

/** What the backend needs of the NIC (VirtioNet). */
export interface NetDevice {
  /** `gsoSize` > 0: a TCP/IPv4 frame larger than the MTU, to be taken as segments of that size (see gsoMax). */
  receive(frame: Uint8Array, gsoSize?: number): boolean;
  onRxSpace(listener: () => void): void;
  /** The largest such frame the NIC takes now (0 or absent: none; VirtioNet's GUEST_TSO4). */
  gsoMax?(): number;
}

export class NetError extends Error {
  override name = 'NetError';
}

export class StreamNetBackend {
  private socket: net.Socket | undefined;
  /** Bytes received and not yet parsed (at most one frame and its length). */
  private buf = new Uint8Array(0);
  /** A frame the guest could not take yet. */
  private pending: Uint8Array | undefined;
  /** Frames each way and protocol errors (statistics). */
  framesIn = 0;
  framesOut = 0;

  private device: NetDevice | undefined;

  constructor(
    readonly path: string,
    private readonly maxFrame: number,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** The NIC frames go to (again after a guest reset builds a new machine). */
  attach(device: NetDevice): void {
    this.device = device;
    this.pending = undefined; // a new machine: what the old one did not take is gone with it
    device.onRxSpace(() => this.drain());
    this.drain();
  }

  /** Connect to the socket; a missing or refusing socket is one clear error. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(this.path);
      s.once('connect', () => {
        s.off('error', onError);
        s.on('error', (e) => this.log(`typevisor: network socket ${this.path}: ${e.message}`));
        s.on('data', (d: Buffer) => this.onData(d));
        s.on('close', () => (this.socket = undefined));
        this.socket = s;
        resolve();
      });
      const onError = (e: NodeJS.ErrnoException): void => {
        const why = e.code === 'ENOENT' ? 'no such socket' : e.code === 'ECONNREFUSED' ? 'nothing is listening on it' : e.message;
        reject(new NetError(`cannot connect to the network socket ${this.path} (${why}): start the network back end first, e.g. passt -f -1 -s ${this.path}`, { cause: e }));
      };
      s.once('error', onError);
    });
  }

  /** A frame the guest sent (borrowed: copied here). */
  transmit(frame: Uint8Array): void {
    const s = this.socket;
    if (!s || frame.length === 0) return;
    const out = Buffer.allocUnsafe(4 + frame.length);
    out.writeUInt32BE(frame.length, 0);
    out.set(frame, 4);
    s.write(out);
    this.framesOut++;
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private onData(d: Buffer): void {
    const joined = new Uint8Array(this.buf.length + d.length);
    joined.set(this.buf, 0);
    joined.set(d, this.buf.length);
    this.buf = joined;
    this.drain();
  }

  /** Hand the guest every whole frame it can take; pause the socket when it cannot. */
  private drain(): void {
    const dev = this.device;
    if (!dev) {
      this.socket?.pause();
      return;
    }
    if (this.pending) {
      if (!dev.receive(this.pending)) return;
      this.pending = undefined;
      this.framesIn++;
    }
    let off = 0;
    const b = this.buf;
    while (b.length - off >= 4) {
      const len = ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
      if (len === 0 || len > this.maxFrame) {
        this.log(`typevisor: network socket ${this.path} sent a frame of ${len} bytes: closing it (not QEMU stream framing?)`);
        this.close();
        this.buf = new Uint8Array(0);
        return;
      }
      if (b.length - off - 4 < len) break;
      const frame = b.slice(off + 4, off + 4 + len);
      off += 4 + len;
      if (!dev.receive(frame)) {
        this.pending = frame;
        break;
      }
      this.framesIn++;
    }
    this.buf = b.slice(off);
    if (this.pending || this.buf.length > this.maxFrame + 4) this.socket?.pause();
    else this.socket?.resume();
  }
}

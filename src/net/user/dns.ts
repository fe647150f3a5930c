/**
 * The DNS relay at 10.0.2.3:53 (RFC 1035 messages over UDP). A and AAAA questions are answered
 * from the host's own resolver (`dns.lookup`, i.e. getaddrinfo: /etc/hosts, then the host's DNS),
 * so the guest resolves what the host resolves; other questions are forwarded as they are to
 * the upstream server (the first `nameserver` of /etc/resolv.conf unless one is given) and its
 * answer is passed back. Queries are parsed before anything is looked up: one question, labels
 * of at most 63 bytes, no compression in the question; at most MAX_PENDING in flight.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const HEADER = 12;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;
const ANSWER_TTL = 60;
/** Lookups and forwarded queries in flight at once; more are dropped (the guest retries). */
export const MAX_PENDING = 64;
const FORWARD_TIMEOUT_MS = 5000;
/** Answers larger than this are not sent (a 1500-byte MTU, no fragments): the guest sees SERVFAIL. */
const MAX_ANSWER = 1472;

export interface DnsQuestion {
  id: number;
  flags: number;
  name: string;
  type: number;
  klass: number;
  /** Offset just past the question (the end of what a reply copies). */
  end: number;
}

/** Parse a query with exactly one question; undefined when it is anything else. */
export function parseQuery(msg: Uint8Array): DnsQuestion | undefined {
  if (msg.length < HEADER + 5) return undefined;
  const flags = (msg[2]! << 8) | msg[3]!;
  if (flags & 0x8000) return undefined; // a response
  if (((flags >>> 11) & 0xf) !== 0) return undefined; // not a standard query
  const qd = (msg[4]! << 8) | msg[5]!;
  if (qd !== 1) return undefined;
  const labels: string[] = [];
  let i = HEADER;
  let total = 0;
  for (;;) {
    if (i >= msg.length) return undefined;
    const len = msg[i]!;
    if (len === 0) {
      i++;
      break;
    }
    if (len > 63) return undefined; // a compression pointer or a reserved label type
    if (i + 1 + len > msg.length) return undefined;
    total += len + 1;
    if (total > 255) return undefined;
    let label = '';
    for (let j = i + 1; j <= i + len; j++) {
      const c = msg[j]!;
      // letters, digits, hyphen, underscore: what getaddrinfo may be asked about
      if (!((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f)) return undefined;
      label += String.fromCharCode(c);
    }
    labels.push(label);
    i += 1 + len;
  }
  if (i + 4 > msg.length) return undefined;
  return {
    id: (msg[0]! << 8) | msg[1]!,
    flags,
    name: labels.join('.'),
    type: (msg[i]! << 8) | msg[i + 1]!,
    klass: (msg[i + 2]! << 8) | msg[i + 3]!,
    end: i + 4,
  };
}

/** The reply to `q` (its header and question copied from `query`) with address answers. */
export function buildAnswer(query: Uint8Array, q: DnsQuestion, rcode: number, addresses: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(q.end + addresses.reduce((n, a) => n + 12 + a.length, 0));
  out.set(query.subarray(0, q.end), 0);
  // QR, the query's opcode and RD, RA; the response code
  const flags = 0x8000 | (q.flags & 0x0100) | 0x0080 | rcode;
  out[2] = flags >>> 8;
  out[3] = flags & 0xff;
  out[6] = addresses.length >>> 8;
  out[7] = addresses.length & 0xff;
  out.fill(0, 8, 12); // no authority or additional records
  let i = q.end;
  for (const a of addresses) {
    out[i] = 0xc0; // a pointer to the question's name
    out[i + 1] = HEADER;
    out[i + 2] = q.type >>> 8;
    out[i + 3] = q.type & 0xff;
    out[i + 4] = 0;
    out[i + 5] = CLASS_IN;
    out[i + 6] = 0;
    out[i + 7] = 0;
    out[i + 8] = ANSWER_TTL >>> 8;
    out[i + 9] = ANSWER_TTL & 0xff;
    out[i + 10] = 0;
    out[i + 11] = a.length;
    out.set(a, i + 12);
    i += 12 + a.length;
  }
  return out;
}

/** The address bytes of a textual IPv4 or IPv6 address (from dns.lookup). */
function addressBytes(text: string): Uint8Array | undefined {
  const kind = net.isIP(text);
  if (kind === 4) return Uint8Array.from(text.split('.').map(Number));
  if (kind !== 6) return undefined;
  const parts = text.split('%')[0]!.split('::');
  const head = parts[0] ? parts[0].split(':') : [];
  const tail = parts.length > 1 && parts[1] ? parts[1].split(':') : [];
  if (head.some((h) => h.includes('.')) || tail.some((h) => h.includes('.'))) return undefined; // embedded IPv4 forms: skip
  const groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, k) => {
    const n = parseInt(g, 16);
    out[2 * k] = n >>> 8;
    out[2 * k + 1] = n & 0xff;
  });
  return out;
}

/** The first nameserver in /etc/resolv.conf, if any. */
export function resolvConfServer(): string | undefined {
  try {
    const m = /^\s*nameserver\s+(\S+)/m.exec(readFileSync('/etc/resolv.conf', 'utf8'));
    return m && net.isIP(m[1]!) ? m[1]! : undefined;
  } catch {
    return undefined;
  }
}

export type LookupFn = (name: string, cb: (err: NodeJS.ErrnoException | null, addresses: { address: string; family: number }[]) => void) => void;

const hostLookup: LookupFn = (name, cb) => dns.lookup(name, { all: true, family: 0 }, cb);

export interface DnsRelayOptions {
  /** Where questions other than A/AAAA go (default: resolv.conf's first nameserver, port 53). */
  upstream?: { host: string; port: number };
  /** The host's name lookup (tests replace it). */
  lookup?: LookupFn;
}

export class DnsRelay {
  private pending = 0;
  private readonly sockets = new Set<dgram.Socket>();
  private closed = false;
  private readonly upstream: { host: string; port: number } | undefined;
  private readonly lookup: LookupFn;
  /** Queries dropped: malformed, too many in flight, or not answered upstream. */
  dropped = 0;

  constructor(opts: DnsRelayOptions = {}) {
    const server = opts.upstream ? undefined : resolvConfServer();
    this.upstream = opts.upstream ?? (server ? { host: server, port: 53 } : undefined);
    this.lookup = opts.lookup ?? hostLookup;
  }

  /** Answer one query (a UDP payload from the guest, borrowed); `reply` gets the answer later. */
  query(msg: Uint8Array, reply: (answer: Uint8Array) => void): void {
    const q = parseQuery(msg);
    if (!q || this.pending >= MAX_PENDING || this.closed) {
      this.dropped++;
      return;
    }
    const query = msg.slice(0, q.end); // only the header and question are needed from here on
    const send = (a: Uint8Array): void => {
      if (this.closed) return;
      reply(a.length <= MAX_ANSWER ? a : buildAnswer(query, q, RCODE_SERVFAIL, []));
    };
    if (q.klass === CLASS_IN && (q.type === TYPE_A || q.type === TYPE_AAAA)) {
      this.pending++;
      this.lookup(q.name, (err, addrs) => {
        this.pending--;
        if (err) {
          const missing = err.code === 'ENOTFOUND' || err.code === 'ENODATA' || err.code === 'EAI_NONAME';
          send(buildAnswer(query, q, missing ? RCODE_NXDOMAIN : RCODE_SERVFAIL, []));
          return;
        }
        const family = q.type === TYPE_A ? 4 : 6;
        const seen = new Set<string>();
        const answers: Uint8Array[] = [];
        for (const a of addrs) {
          if (a.family !== family || seen.has(a.address)) continue;
          seen.add(a.address);
          const b = addressBytes(a.address);
          if (b) answers.push(b);
        }
        send(buildAnswer(query, q, 0, answers)); // none of this type: NOERROR with no answers
      });
      return;
    }
    if (!this.upstream) {
      send(buildAnswer(query, q, RCODE_NOTIMP, []));
      return;
    }
    this.forward(msg.slice(), query, q, send);
  }

  private forward(msg: Uint8Array, query: Uint8Array, q: DnsQuestion, send: (a: Uint8Array) => void): void {
    const up = this.upstream!;
    const s = dgram.createSocket(net.isIPv6(up.host) ? 'udp6' : 'udp4');
    this.pending++;
    this.sockets.add(s);
    let done = false;
    const finish = (answer: Uint8Array | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.pending--;
      this.sockets.delete(s);
      s.close();
      if (answer) send(answer);
      else this.dropped++;
    };
    const timer = setTimeout(() => finish(undefined), FORWARD_TIMEOUT_MS);
    s.on('error', () => finish(buildAnswer(query, q, RCODE_SERVFAIL, [])));
    s.on('message', (m, rinfo) => {
      // only the server we asked, with the query's id
      if (rinfo.port !== up.port || m.length < HEADER || ((m[0]! << 8) | m[1]!) !== q.id) return;
      finish(new Uint8Array(m.buffer, m.byteOffset, m.length));
    });
    s.send(msg, up.port, up.host);
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets) s.close();
    this.sockets.clear();
  }
}

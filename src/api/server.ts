/**
 * The Firecracker-compatible REST API: `typevisor serve --api-sock PATH` serves it over a Unix
 * socket, one VM per process, as Firecracker does, so Firecracker's own clients drive typevisor
 * unchanged: configure (boot-source, machine-config, drives, network-interfaces, entropy,
 * logger, metrics), `PUT /actions {"action_type": "InstanceStart"}`, then `PATCH /vm`
 * Paused/Resumed, `PUT /snapshot/create` while paused, or `PUT /snapshot/load` before start.
 *
 * Status codes and bodies follow Firecracker: 204 with no body on success, 200 with JSON for
 * GETs, 400 with `{"fault_message": "..."}` for anything refused — malformed JSON, unknown
 * fields, an operation in the wrong state — and nothing half-done stays behind.
 *
 * `ApiServer.handle()` is the whole API as a function of (method, path, body) (tests call it
 * directly); `listen()` puts node:http in front of it.
 */
import http from 'node:http';
import { existsSync, rmSync } from 'node:fs';
import type { z } from 'zod';
import { DEFAULT_MEMORY, parseMac, type DiskConfig, type NetConfig, type VmConfig } from '../vmm/config.js';
import { Vm } from '../vmm/vm.js';
import type { StopReason } from '../machine/machine.js';
import * as S from './schema.js';
import { openApiDocument } from './openapi.js';

export interface ApiResponse {
  status: number;
  body?: unknown;
}

/** Firecracker's instance states. */
type InstanceState = 'Not started' | 'Running' | 'Paused';

const MAX_BODY = 64 * 1024;
const VERSION = '0.1.0';

const fault = (message: string): ApiResponse => ({ status: 400, body: { fault_message: message } });
const NO_CONTENT: ApiResponse = { status: 204 };
/** The card's address from a network interface's guest_mac (checked when it was put). */
const macOf = (n: S.NetworkInterface): { mac?: string } => (n.guest_mac === undefined ? {} : { mac: n.guest_mac });
/** A network interface as the VM's net config: a tap for host_dev_name (Firecracker's meaning), else the user-mode network. */
const netOf = (n: S.NetworkInterface): NetConfig =>
  n.host_dev_name !== undefined ? { mode: 'tap', name: n.host_dev_name, ...macOf(n) } : { mode: 'user', publish: [], ...macOf(n) };
const AFTER_START = 'The requested operation is not supported after starting the microVM.';

export interface ApiServerOptions {
  /** The started VM: the caller connects its console (stdio for `typevisor serve`). */
  onVm?: (vm: Vm) => void;
  /** The VM stopped. */
  onStopped?: (reason: StopReason) => void;
  log?: (line: string) => void;
}

export class ApiServer {
  private vm: Vm | undefined;
  private starting = false;
  private bootSource: S.BootSource | undefined;
  private machine: S.MachineConfig = { vcpu_count: 1, mem_size_mib: DEFAULT_MEMORY / (1024 * 1024), smt: false, track_dirty_pages: false };
  private readonly drives = new Map<string, S.Drive>();
  private readonly nets = new Map<string, S.NetworkInterface>();
  private logger: z.infer<typeof S.Logger> | undefined;
  private metrics: z.infer<typeof S.Metrics> | undefined;
  private entropy: z.infer<typeof S.Entropy> | undefined;
  private server: http.Server | undefined;

  constructor(private readonly opts: ApiServerOptions = {}) {}

  get state(): InstanceState {
    if (!this.vm) return 'Not started';
    return this.vm.state === 'paused' ? 'Paused' : 'Running';
  }

  /** One request. `body` is the raw text (empty for none). Never throws. */
  async handle(method: string, url: string, body: string): Promise<ApiResponse> {
    try {
      return await this.route(method.toUpperCase(), url.split('?')[0]!, body);
    } catch (e) {
      return fault((e as Error).message);
    }
  }

  private async route(method: string, path: string, text: string): Promise<ApiResponse> {
    const parts = path.split('/').filter(Boolean);
    const [top, id] = parts;
    const exact = `${method} ${path.replace(/\/+$/, '') || '/'}`;
    const key = exact === 'GET /vm/config' ? exact : `${method} /${top ?? ''}${parts.length > 1 ? '/{id}' : ''}`;
    if (parts.length > 2) return fault(`Invalid request method and/or path: ${method} ${path}.`);
    switch (key) {
      case 'GET /':
        return { status: 200, body: { id: 'anonymous-instance', state: this.state, vmm_version: VERSION, app_name: 'typevisor' } };
      case 'GET /version':
        return { status: 200, body: { firecracker_version: VERSION } };
      case 'GET /openapi.json':
        return { status: 200, body: openApiDocument() };
      case 'GET /machine-config':
        return { status: 200, body: this.machine };
      case 'GET /vm/config':
        return { status: 200, body: this.fullConfig() };
      case 'PUT /boot-source':
        return this.preBoot(S.BootSource, text, (b) => (this.bootSource = b));
      case 'PUT /machine-config':
        return this.preBoot(S.MachineConfig, text, (m) => {
          if (m.smt) throw new Error('smt is not supported: set "smt": false');
          this.machine = { smt: false, track_dirty_pages: false, ...m };
        });
      case 'PATCH /machine-config': {
        const patch = parse(S.MachineConfig.partial(), text);
        if (this.vm) return fault(AFTER_START);
        return this.preBoot(S.MachineConfig, JSON.stringify({ ...this.machine, ...patch }), (m) => (this.machine = m));
      }
      case 'PUT /drives/{id}':
        return this.preBoot(S.Drive, text, (d) => {
          if (d.drive_id !== id) throw new Error(`The id from the path (${id}) does not match the id from the body (${d.drive_id})`);
          if (d.socket) throw new Error('vhost-user drives (socket) are not supported: give path_on_host');
          if (d.is_root_device && [...this.drives.values()].some((o) => o.is_root_device && o.drive_id !== d.drive_id)) {
            throw new Error('A root block device already exists: only one drive can have is_root_device true');
          }
          this.drives.set(d.drive_id, d);
        });
      case 'PUT /network-interfaces/{id}':
        return this.preBoot(S.NetworkInterface, text, (n) => {
          if (n.iface_id !== id) throw new Error(`The id from the path (${id}) does not match the id from the body (${n.iface_id})`);
          if (n.host_dev_name !== undefined && n.typevisor_net !== undefined) {
            throw new Error(`give either host_dev_name (a tap device, "${n.host_dev_name}") or "typevisor_net": "${n.typevisor_net}" (the user-mode network), not both`);
          }
          if (this.nets.size && !this.nets.has(n.iface_id)) throw new Error('typevisor offers one network interface for now');
          if (n.guest_mac !== undefined) n.guest_mac = parseMac(n.guest_mac, 'guest_mac'); // unicast, lower case
          this.nets.set(n.iface_id, n);
        });
      case 'PUT /vsock':
        parse(S.Vsock, text);
        return fault('vsock is not available in typevisor yet');
      case 'PUT /entropy':
        return this.preBoot(S.Entropy, text, (e) => (this.entropy = e));
      case 'PUT /logger':
        return this.preBoot(S.Logger, text, (l) => (this.logger = l));
      case 'PUT /metrics':
        return this.preBoot(S.Metrics, text, (m) => (this.metrics = m));
      case 'PUT /actions':
        return this.action(parse(S.InstanceActionInfo, text).action_type);
      case 'PATCH /vm':
        return this.vmState(parse(S.VmState, text).state);
      case 'PUT /snapshot/{id}':
        if (id === 'create') return this.snapshotCreate(parse(S.SnapshotCreateParams, text));
        if (id === 'load') return this.snapshotLoad(parse(S.SnapshotLoadParams, text));
        break;
      default:
        break;
    }
    return fault(`Invalid request method and/or path: ${method} ${path}.`);
  }

  /** A pre-boot configuration request: parsed, refused after start, applied only when valid. */
  private preBoot<T>(schema: z.ZodType<T>, text: string, apply: (v: T) => void): ApiResponse {
    const v = parse(schema, text);
    if (this.vm || this.starting) return fault(AFTER_START);
    apply(v);
    return NO_CONTENT;
  }

  private async action(type: 'InstanceStart' | 'SendCtrlAltDel' | 'FlushMetrics'): Promise<ApiResponse> {
    if (type === 'FlushMetrics') return NO_CONTENT;
    if (type === 'SendCtrlAltDel') {
      if (!this.vm) return fault('The microVM is not running: SendCtrlAltDel needs a started instance');
      // typevisor's graceful stop is the ACPI power button (x86 Firecracker sends Ctrl-Alt-Del
      // through the i8042; both end in the guest shutting down)
      void this.vm.stop();
      return NO_CONTENT;
    }
    if (this.vm || this.starting) return fault('InstanceStart: the microVM is already running');
    if (!this.bootSource) return fault('Cannot start microvm without kernel configuration: PUT /boot-source first');
    this.starting = true;
    try {
      const vm = await Vm.create(this.vmConfig(), { log: this.opts.log });
      this.attach(vm);
      vm.start();
    } finally {
      this.starting = false;
    }
    return NO_CONTENT;
  }

  private attach(vm: Vm): void {
    this.vm = vm;
    vm.on('stopped', (r) => this.opts.onStopped?.(r));
    this.opts.onVm?.(vm);
  }

  private async vmState(state: 'Paused' | 'Resumed'): Promise<ApiResponse> {
    const vm = this.vm;
    if (!vm || vm.state === 'stopped') return fault(`The microVM is not running: cannot set it ${state}`);
    if (state === 'Paused') await vm.pause();
    else vm.resume();
    return NO_CONTENT;
  }

  private async snapshotCreate(p: z.infer<typeof S.SnapshotCreateParams>): Promise<ApiResponse> {
    const vm = this.vm;
    if (!vm) return fault('Cannot create a snapshot: the microVM is not started');
    if (vm.state !== 'paused') return fault('Cannot create a snapshot of a running microVM: PATCH /vm {"state": "Paused"} first');
    if (p.snapshot_type === 'Diff') return fault('Diff snapshots are not supported: use "snapshot_type": "Full"');
    await vm.snapshot({ statePath: p.snapshot_path, memPath: p.mem_file_path });
    return NO_CONTENT;
  }

  private async snapshotLoad(p: z.infer<typeof S.SnapshotLoadParams>): Promise<ApiResponse> {
    if (this.vm || this.starting) return fault('Loading a snapshot is only allowed before the microVM is started');
    if (p.mem_backend?.backend_type === 'Uffd') return fault('The Uffd memory backend is not supported: use "backend_type": "File"');
    const memPath = p.mem_backend?.backend_path ?? p.mem_file_path;
    if (!memPath) return fault('Missing memory file: give mem_backend {"backend_type": "File", "backend_path": ...} or mem_file_path');
    if (p.mem_backend && p.mem_file_path) return fault('Give either mem_backend or mem_file_path, not both');
    this.starting = true;
    try {
      const vm = await Vm.restore({ statePath: p.snapshot_path, memPath }, { log: this.opts.log, engine: p.typevisor_engine, allowCpuMismatch: p.typevisor_allow_cpu_mismatch });
      this.attach(vm);
      vm.start();
      if (!p.resume_vm) await vm.pause();
    } finally {
      this.starting = false;
    }
    return NO_CONTENT;
  }

  /** The configuration as Firecracker's `GET /vm/config` returns it. */
  private fullConfig(): unknown {
    return {
      'boot-source': this.bootSource ?? null,
      'machine-config': this.machine,
      drives: [...this.drives.values()],
      'network-interfaces': [...this.nets.values()],
      vsock: null,
      entropy: this.entropy ?? null,
      logger: this.logger ?? null,
      metrics: this.metrics ?? null,
    };
  }

  /** The VmConfig that InstanceStart boots. */
  vmConfig(): VmConfig {
    const b = this.bootSource!;
    // the root device first (/dev/vda), then the others in the order they were put
    const drives = [...this.drives.values()].sort((x, y) => Number(y.is_root_device) - Number(x.is_root_device));
    const disks: DiskConfig[] = drives.map((d) => ({ path: d.path_on_host, readOnly: Boolean(d.is_read_only), snapshot: Boolean(d.typevisor_snapshot) }));
    let cmdline = b.boot_args;
    if (drives[0]?.is_root_device && cmdline !== undefined && !/(^|\s)root=/.test(cmdline)) {
      cmdline += ` root=/dev/vda${drives[0].is_read_only ? ' ro' : ' rw'}`;
    }
    return {
      kernel: b.kernel_image_path,
      initrd: b.initrd_path,
      cmdline,
      memoryBytes: this.machine.mem_size_mib * 1024 * 1024,
      cpus: this.machine.vcpu_count,
      engine: this.machine.typevisor_engine ?? 'bt',
      cpuModel: this.machine.typevisor_cpu_model,
      disks,
      net: this.nets.size ? netOf([...this.nets.values()][0]!) : undefined,
    };
  }

  /** Serve on a Unix socket (removed first if it is a stale socket file; refused if in use). */
  listen(socketPath: string): Promise<void> {
    const server = http.createServer((req, res) => {
      let size = 0;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      req.on('end', () => {
        const done = (r: ApiResponse): void => {
          const text = r.body === undefined ? '' : JSON.stringify(r.body);
          res.writeHead(r.status, text ? { 'Content-Type': 'application/json' } : {});
          res.end(text);
        };
        if (size > MAX_BODY) return done(fault(`The request body is larger than ${MAX_BODY} bytes`));
        void this.handle(req.method ?? 'GET', req.url ?? '/', Buffer.concat(chunks).toString('utf8')).then(done);
      });
    });
    this.server = server;
    return new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        reject(new Error(e.code === 'EADDRINUSE' ? `the API socket ${socketPath} is in use by another process: give another --api-sock` : `cannot listen on the API socket ${socketPath}: ${e.message}`));
      });
      if (existsSync(socketPath)) {
        // a socket left by a process that died is removed; one that answers is in use
        const probe = http.get({ socketPath, path: '/' }, () => {
          probe.destroy();
          reject(new Error(`the API socket ${socketPath} is in use by another process: give another --api-sock`));
        });
        probe.on('error', () => {
          rmSync(socketPath, { force: true });
          server.listen(socketPath, () => resolve());
        });
      } else {
        server.listen(socketPath, () => resolve());
      }
    }).then(() => warmSchemas());
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/**
 * zod compiles a schema's parser when it is first used: 1–6 ms, the most for the first schema
 * of all. Done once the socket listens, one schema per turn of the event loop (a request that
 * arrives meanwhile waits for one at most), so a client's first request — often PUT
 * /snapshot/load, whose time to running is a figure users compare — does not pay for it
 * (measured: the load request's parse took 3.8 ms cold).
 */
function warmSchemas(): void {
  const todo: [z.ZodType, unknown][] = Object.values(S.SCHEMAS).map((schema) => [schema, {}]);
  todo.unshift([S.SnapshotLoadParams, { snapshot_path: 'a', mem_backend: { backend_type: 'File', backend_path: 'b' }, resume_vm: true }]);
  const next = (): void => {
    const job = todo.shift();
    if (job === undefined) return;
    job[0].safeParse(job[1]);
    setImmediate(next).unref();
  };
  setImmediate(next).unref();
}

/** Parse JSON text against a schema; throws with Firecracker-style messages. */
function parse<T>(schema: z.ZodType<T>, text: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`The request body is not valid JSON: ${(e as Error).message}`);
  }
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`The request body is not valid: ${S.describeIssues(r.error)}`);
  return r.data;
}

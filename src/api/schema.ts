/**
 * The request bodies of the API, as Firecracker defines them (its `firecracker.yaml`: field
 * names, types and which are required), in zod: one source for the TypeScript types, the
 * validation messages and the OpenAPI document (`openapi.ts`). Objects are strict — an unknown
 * field is a 400, as in Firecracker. Fields Firecracker does not have are ours and start with
 * `typevisor_`; none of theirs changes meaning.
 */
import { z } from 'zod';

const RateLimiter = z.object({}).passthrough().describe('accepted and ignored: typevisor does not limit rates yet');

export const BootSource = z.strictObject({
  kernel_image_path: z.string().min(1).describe('Host path of the kernel: ELF vmlinux, bzImage or multiboot ELF'),
  boot_args: z.string().optional().describe('Kernel command line'),
  initrd_path: z.string().min(1).optional().describe('Host path of the initrd'),
});
export type BootSource = z.infer<typeof BootSource>;

export const MachineConfig = z.strictObject({
  vcpu_count: z.number().int().min(1).max(32).describe('Number of vCPUs (the bt engine runs 1 for now)'),
  mem_size_mib: z.number().int().min(16).max(1024 * 1024).describe('Guest RAM in MiB'),
  smt: z.boolean().optional().describe('Simultaneous multithreading: only false is supported'),
  track_dirty_pages: z.boolean().optional().describe('accepted; diff snapshots are not offered'),
  cpu_template: z.enum(['None']).optional(),
  huge_pages: z.enum(['None']).optional(),
  typevisor_engine: z.enum(['auto', 'bt', 'kvm']).optional().describe('typevisor: the execution engine (default auto: kvm where the host has hardware virtualization, else bt)'),
  typevisor_cpu_model: z.enum(['host', 'typevisor']).optional().describe('typevisor: the CPU the guest sees: host (the kvm engine\'s default) or typevisor (the bt engine\'s model; a kvm VM with it takes snapshots the bt engine restores)'),
});
export type MachineConfig = z.infer<typeof MachineConfig>;

export const Drive = z.strictObject({
  drive_id: z.string().min(1).max(64),
  path_on_host: z.string().min(1).describe('Host path of a raw or qcow2 image'),
  is_root_device: z.boolean(),
  is_read_only: z.boolean().optional(),
  partuuid: z.string().optional(),
  cache_type: z.enum(['Unsafe', 'Writeback']).optional(),
  io_engine: z.enum(['Sync', 'Async']).optional(),
  rate_limiter: RateLimiter.optional(),
  socket: z.string().optional(),
  typevisor_snapshot: z.boolean().optional().describe('typevisor: guest writes go to a temporary overlay dropped at exit'),
});
export type Drive = z.infer<typeof Drive>;

export const NetworkInterface = z.strictObject({
  iface_id: z.string().min(1).max(64),
  host_dev_name: z.string().min(1).max(15).optional().describe('A tap device root has made (as in Firecracker); without it, the user-mode network'),
  guest_mac: z.string().regex(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/).optional().describe('The card\'s MAC address, unicast (default 52:54:00:12:34:56 on the user network)'),
  rx_rate_limiter: RateLimiter.optional(),
  tx_rate_limiter: RateLimiter.optional(),
  typevisor_net: z.enum(['user']).optional().describe('typevisor: the user-mode NAT network (10.0.2.0/24, no root needed; the default without host_dev_name)'),
});
export type NetworkInterface = z.infer<typeof NetworkInterface>;

export const Vsock = z.strictObject({
  guest_cid: z.number().int().min(3),
  uds_path: z.string().min(1),
  vsock_id: z.string().optional(),
});

export const Entropy = z.strictObject({ rate_limiter: RateLimiter.optional() });

export const InstanceActionInfo = z.strictObject({
  action_type: z.enum(['InstanceStart', 'SendCtrlAltDel', 'FlushMetrics']),
});

export const VmState = z.strictObject({ state: z.enum(['Paused', 'Resumed']) });

export const SnapshotCreateParams = z.strictObject({
  snapshot_type: z.enum(['Full', 'Diff']).optional(),
  snapshot_path: z.string().min(1).describe('Where the state file is written'),
  mem_file_path: z.string().min(1).describe('Where the guest memory file is written'),
  version: z.string().optional(),
});

export const SnapshotLoadParams = z.strictObject({
  snapshot_path: z.string().min(1),
  mem_file_path: z.string().min(1).optional(),
  mem_backend: z.strictObject({ backend_type: z.enum(['File', 'Uffd']), backend_path: z.string().min(1) }).optional(),
  enable_diff_snapshots: z.boolean().optional(),
  track_dirty_pages: z.boolean().optional(),
  resume_vm: z.boolean().optional(),
  typevisor_engine: z.enum(['auto', 'bt', 'kvm']).optional().describe('typevisor: the engine to resume on (default auto: the snapshot\'s; bt where this host cannot run kvm); a snapshot moves between the engines'),
  typevisor_allow_cpu_mismatch: z.boolean().optional().describe('typevisor: move the snapshot even when its guest was offered CPU features the new engine lacks (default: refused)'),
});

export const Logger = z.strictObject({
  log_path: z.string().optional(),
  level: z.enum(['Error', 'Warning', 'Info', 'Debug', 'Trace', 'Off']).optional(),
  show_level: z.boolean().optional(),
  show_log_origin: z.boolean().optional(),
  module: z.string().optional(),
});

export const Metrics = z.strictObject({ metrics_path: z.string().min(1) });

/** The bodies, by name, for the OpenAPI document. */
export const SCHEMAS = {
  BootSource, MachineConfig, Drive, NetworkInterface, Vsock, Entropy, InstanceActionInfo, Vm: VmState,
  SnapshotCreateParams, SnapshotLoadParams, Logger, Metrics,
} as const;

/** zod's issues as one line: `field: problem; field: problem`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`).join('; ');
}

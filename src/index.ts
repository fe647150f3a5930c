/**
 * typevisor as a library: the `Vm` object and the Firecracker-compatible API server.
 *
 *   import { Vm, MiB } from 'typevisor';
 *   await using vm = await Vm.create({ memoryBytes: 512 * MiB, cpus: 1, engine: 'bt' });
 *
 * See examples/sdk.ts and docs/api.md.
 */
export { Vm, VmError, DEFAULT_CMDLINE, DEFAULT_CMDLINE_HVC } from './vmm/vm.js';
export type { VmState, VmOptions, RestoreOptions, SnapshotFiles, SerialPort } from './vmm/vm.js';
export { ConfigError, parseSize, parseDiskSpec, parseNet, parsePublish, DEFAULT_MEMORY } from './vmm/config.js';
export type { VmConfig, DiskConfig, NetConfig, PublishConfig, EngineChoice, CpuModelChoice } from './vmm/config.js';
export type { StopReason } from './machine/machine.js';
export { exitStatus } from './machine/machine.js';
export { SnapshotError } from './vmm/snapshot/state.js';
export { ApiServer } from './api/server.js';
export { MiB, GiB } from './machine/layout.js';

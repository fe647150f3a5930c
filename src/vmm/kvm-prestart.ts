/**
 * The kvm engine's vCPU threads started ahead of the VM (src/kvm/prestart.ts), with the module
 * that builds this product's machine in the boot CPU's thread. Imports nothing heavy: the CLI
 * calls it before it loads the rest of typevisor.
 */
import { prestartVcpuThreads } from '../kvm/prestart.js';

/** The device thread's machine (./kvm-machine.ts), as a module URL. */
export const KVM_MACHINE_MODULE = new URL(`./kvm-machine.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

/** Start `cpus` vCPU threads now, the boot CPU's loading the machine's devices meanwhile. */
export function prestartKvm(cpus: number): void {
  prestartVcpuThreads(cpus, [KVM_MACHINE_MODULE]);
}

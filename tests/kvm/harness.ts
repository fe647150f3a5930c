/** Run a small guest on the KVM engine with the test machine. */
import { existsSync } from 'node:fs';
import { KvmEngine } from '../../src/kvm/engine.js';
import { createKvmGuestMemory } from '../../src/kvm/memory.js';
import type { StopReason } from '../../src/machine/machine.js';
import type { EntryState } from '../../src/machine/engine.js';
import type { GuestMemory } from '../../src/machine/memory.js';
import { MiB } from '../../src/machine/layout.js';
import { GUEST_ORG, assemble, nasmAvailable } from './guests.js';
import type { TestEvent } from './test-machine.js';
import type { ConsoleMessage } from '../../src/vmm/kvm-machine.js';

/** Why the KVM small-guest tests cannot run here, or undefined when they can. */
export function kvmSkipReason(): string | undefined {
  if (!existsSync('/dev/kvm')) return 'no /dev/kvm on this host';
  if (!nasmAvailable()) return 'nasm is not installed (apt-get install nasm)';
  return undefined;
}

export interface GuestRun {
  reason: StopReason;
  out: string;
  events: TestEvent[];
}

const MACHINE_MODULE = new URL('./test-machine.ts', import.meta.url);
/** The machine `typevisor run --engine kvm` builds (src/machine/builder.ts, in-kernel irqchip). */
export const PRODUCT_MACHINE_MODULE = new URL('../../src/vmm/kvm-machine.ts', import.meta.url);
const cache = new Map<string, Uint8Array>();

export async function runGuest(
  source: string,
  opts: {
    cpus?: number;
    onEvent?: (e: TestEvent, engine: KvmEngine) => void;
    /** Entry state (default: real mode at 0000:7c00) and where the image goes (default 0x7c00). */
    entry?: EntryState;
    loadAt?: number;
    /** Write more into guest RAM before the run (GDT, page tables...). */
    prepare?: (memory: GuestMemory) => void;
    /** The machine module (default: test-machine.ts); its console output lands in `out` too. */
    machine?: URL;
    /** The machine's config (KvmMachineContext.config; e.g. KvmMachineConfig for the product machine). */
    machineConfig?: unknown;
    /** Stop the guest (reason `quit`) if it is still running after this long. */
    timeoutMs?: number;
    /** The engine is made, not yet running (a test that posts to the machine keeps it). */
    onStart?: (engine: KvmEngine, memory: GuestMemory) => void;
    /** Every message of the machine first: true when the test took it (not an event then). */
    onMessage?: (message: unknown) => boolean;
  } = {},
): Promise<GuestRun> {
  let image = cache.get(source);
  if (!image) cache.set(source, (image = assemble(source)));
  const ram = createKvmGuestMemory(2 * MiB);
  try {
    ram.memory.writeBytes(opts.loadAt ?? GUEST_ORG, image);
    opts.prepare?.(ram.memory);
    const events: TestEvent[] = [];
    let out = '';
    const engine: KvmEngine = new KvmEngine({
      memory: ram,
      cpus: opts.cpus ?? 1,
      machine: { module: opts.machine ?? MACHINE_MODULE, config: opts.machineConfig },
      onMessage: (m) => {
        if (opts.onMessage?.(m)) return;
        const c = m as ConsoleMessage;
        const e: TestEvent = c.type === 'serial-out' ? { out: c.bytes[0] ?? 0 } : (m as TestEvent);
        if (c.type === 'serial-out') out += String.fromCharCode(...c.bytes);
        else if ('out' in e) out += String.fromCharCode(e.out);
        events.push(e);
        opts.onEvent?.(e, engine);
      },
    });
    opts.onStart?.(engine, ram.memory);
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => engine.stop({ kind: 'quit' }), opts.timeoutMs);
    try {
      const reason = await engine.run(opts.entry ?? { mode: 'real16', rip: GUEST_ORG, regs: {}, realCs: 0 });
      return { reason, out, events };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    ram.dispose();
  }
}

/**
 * The run loop: interprets instructions one at a time, and in 64-bit mode runs translated
 * blocks back to back where the block cache (translate/cache.ts) has them; polls for interrupts
 * every IRQ_POLL instructions or blocks (and right after an STI/MOV SS shadow); while TF, RF or
 * a breakpoint is in play, interprets with the debug rules (debug.ts); turns guest
 * exceptions raised anywhere in it into deliveries (a fault while delivering escalates to #DF,
 * then to shutdown). It returns to its caller (the engine) after `budget` instructions, at an
 * exit request, a halt or a shutdown.
 */
import type { Cpu } from './cpu.js';
import { step } from './exec.js';
import { deliver, isNmiBlocked } from '../system/interrupts.js';
import { CpuFault, TripleFault, EventKind } from '../system-api.js';
import { DEBUG_FLAGS, debugStep } from './debug.js';

/** Polling interval (instructions or blocks) for interrupts while IF=1. */
export const IRQ_POLL = 64;

/** Deliver an event, escalating a fault during delivery to #DF and then to shutdown. */
export function deliverSafe(c: Cpu, vector: number, errorCode: number, kind: EventKind, returnRip: number): boolean {
  try {
    deliver(c, vector, errorCode, kind, returnRip);
    return true;
  } catch (e) {
    if (e instanceof TripleFault) {
      c.shutdown = e.message || 'triple fault';
      return false;
    }
    if (!(e instanceof CpuFault)) throw e;
    try {
      deliver(c, 8, 0, EventKind.Exception, c.s.rip);
      return true;
    } catch (e2) {
      if (e2 instanceof TripleFault || e2 instanceof CpuFault) {
        c.shutdown = `triple fault: exception ${e.vector} while delivering ${vector}`;
        return false;
      }
      throw e2;
    }
  }
}

/** Take a pending NMI or maskable interrupt if one is deliverable now. Returns true if taken. */
function pollInterrupts(c: Cpu): boolean {
  const s = c.s;
  // code other threads' stores changed goes first, before any interrupt (an IPI may be the
  // patching CPU's "see my new code")
  if (c.crossThread?.pending()) dropCrossThread(c);
  // another thread wants what the thread running this vCPU serves: end the slice
  if (c.kickable && c.kicked()) c.exitRequested = true;
  if (s.interruptShadow) return false;
  const ic = c.interrupts;
  // an NMI waits while the handler of the last one runs (until its IRET); however many arrive
  // meanwhile, the controller holds one
  if ((ic.hasNmi?.() ?? true) && !isNmiBlocked(s) && ic.takeNmi()) {
    s.halted = false;
    deliverSafe(c, 2, -1, EventKind.Nmi, s.rip);
    return true;
  }
  if (s.rflagsRest & 0x200 && ic.hasInterrupt()) {
    s.halted = false;
    const v = ic.acknowledge();
    deliverSafe(c, v & 0xff, -1, EventKind.External, s.rip);
    return true;
  }
  return false;
}

/** Drop the blocks other threads' stores hit (cross-thread.ts). */
function dropCrossThread(c: Cpu): void {
  const cache = c.cache;
  c.crossThread!.drain((off, len) => cache?.invalidate(off, len), () => cache?.dropAll());
}

export function runSlice(c: Cpu, budget: number): number {
  const s = c.s;
  c.exitRequested = false;
  if (c.crossThread?.pending()) dropCrossThread(c);
  if (c.shutdown !== undefined) return 0;
  if (s.halted) {
    s.interruptShadow = false;
    if (!pollInterrupts(c)) return 0;
    if (c.shutdown !== undefined) return 0;
  }
  let n = 0;
  while (n < budget) {
    if (c.exitRequested || s.halted) break;
    /** The last interpreted instruction went on to the next one (no branch): no block lookup. */
    let seq = false;
    try {
      while (n < budget) {
        if (--c.pollCounter <= 0) {
          c.pollCounter = IRQ_POLL;
          if (pollInterrupts(c)) {
            if (c.shutdown !== undefined) return n;
            break;
          }
        }
        // The instruction after STI (or MOV SS) runs with interrupts inhibited: interpret just
        // that one, then poll again — a poll that found the shadow must not wait IRQ_POLL
        // more instructions, or a loop that enables interrupts briefly never takes one.
        const shadow = s.interruptShadow;
        if (shadow) {
          s.interruptShadow = false;
          c.pollCounter = 1;
        }
        c.startRip = s.rip;
        // TF, RF or an enabled breakpoint: one instruction at a time with the debug rules
        if (s.rflagsRest & DEBUG_FLAGS || s.dr[7]! & 0xff) {
          debugStep(c);
          n++;
          c.stepsRun++;
          seq = false;
          if (c.exitRequested || s.halted) break;
          continue;
        }
        if (c.long && c.jitOn && !seq && !shadow) {
          const cache = c.cache!;
          let b = cache.find(s.rip);
          if (b !== undefined) {
            // run translated blocks back to back; anything unusual goes back to the outer loop
            for (;;) {
              c.smc = 0;
              cache.run++;
              const n0 = n;
              n += b.run(c);
              if (c.exitRequested || s.halted || s.interruptShadow || !c.long || n >= budget) break;
              if (s.rflagsRest & DEBUG_FLAGS || s.dr[7]! & 0xff) break; // POPF/IRET set TF or RF, MOV DR7 a breakpoint
              // a chain of up to CHAIN_LIMIT instructions counts one poll interval per 1,024
              c.pollCounter -= 1 + ((n - n0) >> 10);
              if (c.pollCounter <= 0) {
                c.pollCounter = 1; // the outer loop polls now
                break;
              }
              c.startRip = s.rip;
              const nb = cache.next(b, s.rip);
              if (nb === undefined) break;
              b = nb;
            }
            if (c.exitRequested || s.halted) break;
            continue;
          }
        }
        step(c);
        n++;
        c.stepsRun++;
        // translated blocks are looked for where control arrives by a branch, or after an
        // instruction in an STI/MOV SS shadow (its block ended at the STI): RIP moving forward
        // by at most an instruction's length counts as sequential (a short forward jump too,
        // which only delays finding a block there)
        const adv = s.rip - c.startRip;
        seq = !shadow && adv > 0 && adv <= 15;
        if (c.exitRequested || s.halted) break;
      }
    } catch (e) {
      if (e instanceof CpuFault) {
        c.faultsTaken++;
        s.rip = c.startRip;
        c.onFault?.(e.vector, e.errorCode, c.startRip);
        c.pollCounter = IRQ_POLL;
        if (!deliverSafe(c, e.vector, e.errorCode, EventKind.Exception, c.startRip)) {
          c.retired += n;
          return n;
        }
        continue;
      }
      if (e instanceof TripleFault) {
        c.shutdown = e.message || 'triple fault';
        break;
      }
      throw e;
    }
  }
  c.retired += n;
  const cache = c.cache;
  if (cache !== undefined) {
    cache.decay(c.retired);
    if (cache.reclaimDue) {
      cache.reclaimDue = false;
      c.reclaim?.();
    }
  }
  return n;
}

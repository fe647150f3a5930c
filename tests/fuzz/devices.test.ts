/**
 * Devices see guest-chosen register writes: hammer every port and MMIO register of the
 * machine with random accesses (sizes, offsets and values), interleaved with time passing,
 * and check that no device throws, timers stay bounded, and reads stay in range.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../support/rng.js';
import { FakeClock } from '../../src/devices/testing/fake-clock.js';
import { buildMachine } from '../../src/machine/builder.js';
import type { AccessSize } from '../../src/machine/bus.js';
import { GuestMemory } from '../../src/machine/memory.js';

const ACCESSES = Number(process.env['FUZZ_ITERATIONS'] ?? 20000);

describe('random register traffic to every device', () => {
  it.each([1, 2, 3])(`${ACCESSES} accesses (seed %i) never throw`, (seed) => {
    const clock = new FakeClock();
    const memory = new GuestMemory([{ base: 0, size: 16 * 1024 * 1024 }]);
    let output = 0;
    const { machine, lapic } = buildMachine({
      memory, interruptModel: 'emulated', serialOut: (b) => (output += b.length), clock, fillRandom: (b) => b.fill(0x5a),
    });
    expect(machine.mmio.list().map((m) => m.name)).toContain('virtio-rng'); // its BAR gets hammered too
    const rand = rng(seed * 0x9e3779b1);
    const ports = machine.pio.list();
    const mmios = machine.mmio.list();
    const sizes: AccessSize[] = [1, 2, 4];
    for (let i = 0; i < ACCESSES; i++) {
      const size = sizes[Math.floor(rand() * 3)]!;
      const value = Math.floor(rand() * 2 ** 32);
      const useMmio = rand() < 0.4;
      const ranges = useMmio ? mmios : ports;
      const r = ranges[Math.floor(rand() * ranges.length)]!;
      const addr = r.base + Math.floor(rand() * r.length);
      const bus = useMmio ? machine.mmio : machine.pio;
      try {
        if (rand() < 0.5) {
          const v = bus.read(addr, size);
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThan(2 ** (8 * size));
        } else {
          bus.write(addr, size, value);
        }
        if (rand() < 0.05) {
          clock.now += Math.floor(rand() * 5e6);
          machine.timers.runDue(clock.now);
        }
        if (rand() < 0.02 && lapic!.hasInterrupt()) lapic!.acknowledge();
      } catch (e) {
        throw new Error(`access ${i} (seed ${seed}) to ${r.name} at 0x${addr.toString(16)}: ${(e as Error).message}`, { cause: e });
      }
      // a stop request (reset, poweroff, debug-exit) is a legitimate outcome; keep going
      machine.stopReason = undefined;
    }
    expect(machine.timers.nextDeadline()).toBeGreaterThan(-Infinity);
  });
});

import { describe, expect, it } from 'vitest';
import { Bus } from '../../../machine/bus.js';
import { PORT_PVPANIC } from '../../../machine/layout.js';
import { PVPANIC_CRASH_LOADED, PVPANIC_PANICKED, PvPanic, type PvPanicEvent } from './pvpanic.js';

describe('PvPanic', () => {
  it('advertises both events and reports what the guest writes', () => {
    const seen: PvPanicEvent[] = [];
    const pio = new Bus('pio');
    const dev = new PvPanic((e) => seen.push(e));
    pio.insert(PORT_PVPANIC, 1, dev, 'pvpanic');
    expect(pio.read(PORT_PVPANIC, 1)).toBe(PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
    pio.write(PORT_PVPANIC, 1, 0);
    expect(seen).toEqual([]);
    pio.write(PORT_PVPANIC, 1, PVPANIC_CRASH_LOADED);
    pio.write(PORT_PVPANIC, 1, PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
    pio.write(PORT_PVPANIC, 1, 0xfc); // unknown bits only: ignored
    expect(seen).toEqual(['crash-loaded', 'panicked']);
    expect(dev.events).toBe(PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
  });
});

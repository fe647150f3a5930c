import { describe, it, expect } from 'vitest';
import { Bus } from '../../../machine/bus.js';
import { exitStatus } from '../../../machine/machine.js';
import { PORT_DEBUG_EXIT } from '../../../machine/layout.js';
import { DebugExit, DEBUG_EXIT_PORTS } from './debug-exit.js';

describe('DebugExit', () => {
  it('reports the written value, masked to the access size', () => {
    const values: number[] = [];
    const pio = new Bus('pio');
    pio.insert(PORT_DEBUG_EXIT, DEBUG_EXIT_PORTS, new DebugExit((v) => values.push(v)), 'debug-exit');
    pio.write(PORT_DEBUG_EXIT, 1, 0x131);
    pio.write(PORT_DEBUG_EXIT + 2, 2, 0x12345);
    pio.write(PORT_DEBUG_EXIT, 4, 0xffff_ffff);
    expect(values).toEqual([0x31, 0x2345, 0xffff_ffff]);
    expect(exitStatus({ kind: 'debug-exit', value: 0x31 })).toBe(0x63);
    expect(pio.read(PORT_DEBUG_EXIT, 1)).toBe(0);
  });
});
